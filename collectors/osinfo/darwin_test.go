package osinfo

import (
	"context"
	"testing"
	"time"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseDarwin(t *testing.T) {
	if bt, ok := parseDarwinBootTime(string(platformtest.ReadFixture(t, "darwin", "sysctl-kern.boottime.txt"))); !ok || !bt.Equal(time.Unix(1763543410, 0)) {
		t.Errorf("boot time %v %v", bt, ok)
	}
	for _, bad := range []string{"", "garbage", "{ sec = x }"} {
		if _, ok := parseDarwinBootTime(bad); ok {
			t.Errorf("parseDarwinBootTime(%q): want failure", bad)
		}
	}
	if u := parseIOPlatformUUID(string(platformtest.ReadFixture(t, "darwin", "ioreg-platformexpert.txt"))); u != "8A3C1F52-6E0B-5D7A-9B41-2F6C0D8E7A13" {
		t.Errorf("uuid %q", u)
	}
	if v := parseSwVersVersion(string(platformtest.ReadFixture(t, "darwin", "sw_vers.txt"))); v != "15.1" {
		t.Errorf("version %q", v)
	}
}

func TestCollectDarwin(t *testing.T) {
	out := func(s string) platform.Result { return platform.Result{Stdout: []byte(s)} }
	full := map[string]platform.Result{
		"sw_vers":                       {Stdout: platformtest.ReadFixture(t, "darwin", "sw_vers.txt")},
		"sysctl -n kern.hostname":       out("mbp-14\n"),
		"sysctl -n kern.osrelease":      out("24.1.0\n"),
		"sysctl -n hw.machine":          out("arm64\n"),
		"sysctl -n kern.boottime":       {Stdout: platformtest.ReadFixture(t, "darwin", "sysctl-kern.boottime.txt")},
		"sysctl -n kern.hv_vmm_present": out("0\n"),
		"ioreg":                         {Stdout: platformtest.ReadFixture(t, "darwin", "ioreg-platformexpert.txt")},
		"stat -f %Su /dev/console":      out("ada\n"),
	}
	want := Payload{Hostname: "mbp-14", OS: "darwin", Platform: "macos", PlatformFamily: "darwin", PlatformVersion: "15.1",
		KernelVersion: "24.1.0", KernelArch: "arm64", BootTime: time.Unix(1763543410, 0).UTC(), MachineID: "8A3C1F52-6E0B-5D7A-9B41-2F6C0D8E7A13",
		SerialNumber: "C02DEMO00001", HardwareVendor: "Apple Inc.", HardwareModel: "MacBookPro18,1", ConsoleUser: "ada"}
	res, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: full})
	if err != nil || res.Payload.(Payload) != want || len(res.Sources) != 8 {
		t.Errorf("got %+v, %v (%d sources)", res.Payload, err, len(res.Sources))
	}
	// At the login window /dev/console belongs to root: nobody is there.
	full["stat -f %Su /dev/console"] = out("root\n")
	res, _ = New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: full})
	if p := res.Payload.(Payload); p.ConsoleUser != "" || p.SerialNumber != "C02DEMO00001" {
		t.Errorf("login window: user %q serial %q", p.ConsoleUser, p.SerialNumber)
	}

	vm := map[string]platform.Result{"sysctl -n kern.hostname": out("ci-runner\n"), "sysctl -n kern.hv_vmm_present": out("1\n"),
		"sysctl -n kern.boottime": out("garbage")}
	res, err = New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: vm})
	if p := res.Payload.(Payload); err != nil || p.Hostname != "ci-runner" || p.Virtualization != "vm guest" || !p.BootTime.IsZero() {
		t.Errorf("vm: %+v %v", p, err)
	}

	if _, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin"}); err == nil {
		t.Error("no commands: want error")
	}
	fail := map[string]platform.Result{"sw_vers": {ExitCode: 1}, "sysctl": {ExitCode: 1, Stderr: []byte("sysctl: unknown oid")}}
	if _, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: fail}); err == nil {
		t.Error("failing commands: want error")
	}
}
