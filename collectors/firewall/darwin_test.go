package firewall

import (
	"context"
	"path/filepath"
	"strings"
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
	for _, bad := range []string{"", "garbage", "Firewall is enabled.", "(State = 7)", "(State = 99999999999999999999)",
		"Firewall is disabled. (State = 1)", "Firewall is disabled. (State = 2)"} {
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
	on, off := true, false
	tests := []struct {
		name              string
		cmds              map[string]platform.Result
		verdict, reason   string
		blockAll, stealth *bool
		backends          int
		wantErr           bool
	}{
		{name: "state 1, block all off, stealth on (managed Mac)", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    out("alf-blockall-disabled.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-on.txt"),
			"pfctl -s info":                   out("pfctl-info-disabled.txt"),
		}, verdict: VerdictDeny, reason: "Application Firewall on (state 1); block all incoming off; stealth mode on",
			blockAll: &off, stealth: &on, backends: 2},
		{name: "state 1, older wording, pf unreadable", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    out("alf-blockall-disabled-old.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-disabled-old.txt"),
			"pfctl -s info":                   denied,
		}, verdict: VerdictDeny, reason: "Application Firewall on (state 1); block all incoming off; stealth mode off",
			blockAll: &off, stealth: &off, backends: 1},
		{name: "state 1, block all unreadable, stealth not answered", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    {Stdout: []byte("garbage")},
		}, verdict: VerdictDeny, reason: "Application Firewall on (state 1); block all incoming unknown; stealth mode unknown", backends: 1},
		{name: "state 1, block all exits 1, stealth garbage", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    {ExitCode: 1},
			"socketfilterfw --getstealthmode": {Stdout: []byte("garbage")},
		}, verdict: VerdictDeny, reason: "Application Firewall on (state 1); block all incoming unknown; stealth mode unknown", backends: 1},
		{name: "state 1 with block all reported on (a race between the two calls)", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-on.txt"),
			"socketfilterfw --getblockall":    out("alf-blockall-enabled.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-on.txt"),
		}, verdict: VerdictDeny, reason: "Application Firewall on (state 1); block all incoming on; stealth mode on",
			blockAll: &on, stealth: &on, backends: 1},
		{name: "state 2: block all is the state, --getblockall not asked", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-blockall.txt"),
			"socketfilterfw --getblockall":    out("alf-blockall-disabled.txt"), // must not be read
			"socketfilterfw --getstealthmode": out("alf-stealth-on.txt"),
		}, verdict: VerdictDeny, reason: "Application Firewall on (state 2); block all incoming on; stealth mode on",
			blockAll: &on, stealth: &on, backends: 1},
		{name: "state 0, pf enabled does not decide", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": out("alf-globalstate-off.txt"),
			"socketfilterfw --getstealthmode": out("alf-stealth-disabled-old.txt"),
			"pfctl -s info":                   out("pfctl-info-enabled.txt"),
		}, verdict: VerdictOpen, reason: "Application Firewall off (state 0)", blockAll: &off, stealth: &off, backends: 2},
		{name: "socketfilterfw missing", cmds: nil, wantErr: true},
		{name: "state garbage", cmds: map[string]platform.Result{"socketfilterfw --getglobalstate": {Stdout: []byte("garbage")}}, wantErr: true},
		{name: "state exits 1", cmds: map[string]platform.Result{"socketfilterfw --getglobalstate": {ExitCode: 1}}, wantErr: true},
		{name: "state contradicts its sentence", cmds: map[string]platform.Result{
			"socketfilterfw --getglobalstate": {Stdout: []byte("Firewall is disabled. (State = 1)\n")},
			"socketfilterfw --getblockall":    out("alf-blockall-enabled.txt"),
		}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: tt.cmds}
			res, err := New().Collect(context.Background(), h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			p := res.Payload.(Payload)
			if tt.wantErr {
				if p.Verdict != VerdictUnknown || p.InboundDefaultDeny || p.Enabled || !strings.HasPrefix(p.Reason, "cannot read the Application Firewall state: ") {
					t.Errorf("an unread state must not pass: %+v", p)
				}
				return
			}
			if p.Verdict != tt.verdict || p.Reason != tt.reason {
				t.Errorf("verdict %q %q, want %q %q", p.Verdict, p.Reason, tt.verdict, tt.reason)
			}
			deny := tt.verdict == VerdictDeny
			if p.Enabled != deny || p.InboundDefaultDeny != deny || p.DecidedBy != "alf" || len(p.Backends) != tt.backends {
				t.Errorf("got %+v", p)
			}
			if a := p.Backends[0]; a.Name != "alf" || a.Active != deny || a.InboundDefaultDeny != deny {
				t.Errorf("alf backend %+v", a)
			}
			if !sameBool(p.BlockAll, tt.blockAll) || !sameBool(p.Stealth, tt.stealth) {
				t.Errorf("block all %v stealth %v, want %v %v", onOff(p.BlockAll), onOff(p.Stealth), onOff(tt.blockAll), onOff(tt.stealth))
			}
			for _, s := range res.Sources {
				if s.Ref == "socketfilterfw --getblockall" && strings.Contains(tt.reason, "(state 2)") {
					t.Errorf("--getblockall read in state 2")
				}
			}
		})
	}
}

func sameBool(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
