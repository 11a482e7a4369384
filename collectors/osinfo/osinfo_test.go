package osinfo

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

// testdata/vm holds copies of this development VM's files (see
// testdata/README.md).
var vm = Payload{
	Hostname: "vm", OS: "linux", Platform: "debian", PlatformFamily: "debian", PlatformVersion: "12.11",
	KernelVersion: "6.18.44-fc-v657", KernelArch: "x86_64", BootTime: time.Date(2026, 11, 24, 3, 32, 54, 0, time.UTC),
	MachineID: "3d1219c7c4c5404aaa1f6d2a48adfda4",
}

func TestCollectLinux(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    platform.Host
		want    Payload
		wantErr string
	}{
		// The same tree read by a rooted live host and by a replay host
		// must give the same facts: nothing on Linux bypasses the Host.
		{name: "rooted live host", host: &platform.Live{Root: "testdata/vm"}, want: vm},
		{name: "replay host", host: platformtest.Replay{Live: &platform.Live{Root: "testdata/vm"}, OS: "linux"}, want: vm},
		{name: "empty tree", host: platformtest.Replay{Live: &platform.Live{Root: "testdata/empty-does-not-exist"}, OS: "linux"},
			want: Payload{OS: "linux"}, wantErr: "neither a hostname nor /etc/os-release"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, ok := tc.host.(*platform.Live); ok && l.GOOS() != "linux" {
				t.Skip("a rooted live host reports the GOOS of the machine running the test")
			}
			res, err := New().Collect(context.Background(), tc.host)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got := res.Payload.(Payload); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("payload\n got %+v\nwant %+v", got, tc.want)
			}
			if tc.wantErr == "" && len(res.Sources) < 5 {
				t.Errorf("sources = %+v; want every file read recorded", res.Sources)
			}
		})
	}
}

func TestCollectOtherOSReplayIsUnsupported(t *testing.T) {
	_, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/vm"}, OS: "plan9"})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

func TestParseBootTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"cpu  1 2 3\nbtime 1700000000\nprocesses 5\n", time.Unix(1700000000, 0).UTC()},
		{"btime notanumber\n", time.Time{}},
		{"", time.Time{}},
	} {
		if got, _ := parseBootTime(tc.in); !got.Equal(tc.want) {
			t.Errorf("parseBootTime(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseOSRelease(t *testing.T) {
	kv := parseOSRelease([]byte("# c\nID=fedora\nVERSION_ID=40\nID_LIKE=\"rhel centos\"\ngarbage\n"))
	if kv["ID"] != "fedora" || kv["VERSION_ID"] != "40" || kv["ID_LIKE"] != "rhel centos" {
		t.Errorf("%v", kv)
	}
}
