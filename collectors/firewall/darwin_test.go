package firewall

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func darwinRead(t testing.TB, name string) []byte {
	return platformtest.ReadFixture(t, filepath.Join("darwin", name))
}

func TestParseALF(t *testing.T) {
	for file, want := range map[string]int{
		"alf-globalstate-off.txt": 0, "alf-globalstate-on.txt": 1, "alf-globalstate-blockall.txt": 2,
	} {
		got, err := parseALFGlobalState(darwinRead(t, file))
		if err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", file, got, err, want)
		}
	}
	for _, bad := range []string{"", "garbage", "Firewall is enabled.", "(State = 7)", "(State = 99999999999999999999)"} {
		if n, err := parseALFGlobalState([]byte(bad)); err == nil {
			t.Errorf("parseALFGlobalState(%q) = %d, want error", bad, n)
		}
	}
	for file, want := range map[string]bool{
		"alf-blockall-enabled.txt": true, "alf-blockall-disabled.txt": false, "alf-blockall-disabled-old.txt": false,
		"alf-stealth-on.txt": true, "alf-stealth-disabled-old.txt": false,
	} {
		got, err := parseALFOnOff(darwinRead(t, file))
		if err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", file, got, err, want)
		}
	}
	for _, bad := range []string{"", " \n", "garbage"} {
		if _, err := parseALFOnOff([]byte(bad)); err == nil {
			t.Errorf("parseALFOnOff(%q): want error", bad)
		}
	}
}

func TestParsePfctlInfo(t *testing.T) {
	on, status, err := parsePfctlInfo(darwinRead(t, "pfctl-info-enabled.txt"))
	if err != nil || !on || status != "Enabled for 0 days 02:14:07" {
		t.Errorf("enabled: %v %q %v", on, status, err)
	}
	on, status, err = parsePfctlInfo(darwinRead(t, "pfctl-info-disabled.txt"))
	if err != nil || on || status != "Disabled" {
		t.Errorf("disabled: %v %q %v", on, status, err)
	}
	for _, bad := range []string{"", "garbage", "Status: Sideways", string(darwinRead(t, "pfctl-permission-denied.txt"))} {
		if _, _, err := parsePfctlInfo([]byte(bad)); err == nil {
			t.Errorf("parsePfctlInfo(%q): want error", bad)
		}
	}
}

func FuzzParseALF(f *testing.F) {
	for _, n := range []string{"alf-globalstate-on.txt", "alf-globalstate-blockall.txt", "alf-blockall-enabled.txt", "alf-stealth-disabled-old.txt", "pfctl-info-enabled.txt"} {
		f.Add(darwinRead(f, n))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseALFGlobalState(b); err == nil && (n < 0 || n > 2) {
			t.Errorf("state %d", n)
		}
		_, _ = parseALFOnOff(b)
		_, _, _ = parsePfctlInfo(b)
	})
}

func TestCollectDarwin(t *testing.T) {
	out := func(file string) platform.Result { return platform.Result{Stdout: darwinRead(t, file)} }
	denied := platform.Result{Stderr: darwinRead(t, "pfctl-permission-denied.txt"), ExitCode: 1}
	tests := []struct {
		name                   string
		cmds                   map[string]platform.Result
		enabled, deny, wantErr bool
		backends               int
	}{
		{name: "on, block all", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    out("alf-blockall-enabled.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-on.txt"),
			"pfctl -s info":                   out("pfctl-info-enabled.txt"),
		}, enabled: true, deny: true, backends: 2},
		{name: "state 2", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-blockall.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-on.txt"),
		}, enabled: true, deny: true, backends: 1},
		{name: "on, apps allowed", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    out("alf-blockall-disabled-old.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-disabled-old.txt"),
			"pfctl -s info":                   denied,
		}, enabled: true, backends: 1},
		{name: "on, block all unreadable", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    {Stdout: []byte("garbage")},
		}, enabled: true, backends: 1},
		{name: "off, pf enabled does not decide", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-off.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-disabled-old.txt"),
			"pfctl -s info":                   out("pfctl-info-enabled.txt"),
		}, backends: 2},
		{name: "missing", cmds: nil, wantErr: true},
		{name: "garbage", cmds: map[string]platform.Result{"socketfilterfw --getglobalstate": {Stdout: []byte("garbage")}}, wantErr: true},
		{name: "exit 1", cmds: map[string]platform.Result{"socketfilterfw --getglobalstate": {ExitCode: 1}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: tt.cmds}
			res, err := New().Collect(context.Background(), h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			p := res.Payload.(Payload)
			if p.Enabled != tt.enabled || p.InboundDefaultDeny != tt.deny || len(p.Backends) != tt.backends {
				t.Errorf("got %+v", p)
			}
			if !tt.wantErr && p.DecidedBy != "alf" {
				t.Errorf("decided by %q", p.DecidedBy)
			}
		})
	}
}
