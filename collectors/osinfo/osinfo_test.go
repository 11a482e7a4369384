package osinfo

import (
	"context"
	"runtime"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestCollectTree(t *testing.T) {
	res, err := New().Collect(context.Background(), &platform.Live{Root: "testdata/vm"})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Hostname != "vm" || p.MachineID == "" || p.KernelVersion == "" {
		t.Errorf("payload = %+v", p)
	}
	if runtime.GOOS == "linux" && (p.Platform != "debian" || p.PlatformVersion == "" || p.BootTime.IsZero()) {
		t.Errorf("gopsutil over the tree: %+v", p)
	}
	if len(res.Sources) == 0 {
		t.Error("no sources")
	}
}

func TestCollectNonLiveHost(t *testing.T) {
	res, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/vm"}})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Payload.(Payload)
	if p.Hostname != "vm" || p.Platform != "debian" || p.PlatformVersion != "12" || p.PlatformFamily != "debian" || p.OS != runtime.GOOS {
		t.Errorf("payload = %+v", p)
	}
}

func TestCollectEmptyTree(t *testing.T) {
	res, _ := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}})
	if p := res.Payload.(Payload); p.Hostname != "" || p.MachineID != "" {
		t.Errorf("payload = %+v", p)
	}
}

func TestParseOSRelease(t *testing.T) {
	kv := parseOSRelease([]byte("# c\nID=fedora\nVERSION_ID=40\nID_LIKE=\"rhel centos\"\ngarbage\n"))
	if kv["ID"] != "fedora" || kv["VERSION_ID"] != "40" || kv["ID_LIKE"] != "rhel centos" {
		t.Errorf("%v", kv)
	}
}
