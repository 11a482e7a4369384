package secureboot

import (
	"context"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseCsrutilStatus(t *testing.T) {
	tests := []struct {
		file            string
		enabled, custom bool
		disabled        int
	}{
		{"csrutil-enabled.txt", true, false, 0},
		{"csrutil-disabled.txt", false, false, 0},
		{"csrutil-custom.txt", false, true, 2},
	}
	for _, tt := range tests {
		s, err := parseCsrutilStatus(platformtest.ReadFixture(t, "darwin", tt.file))
		if err != nil || s.Enabled != tt.enabled || s.Custom != tt.custom || len(s.Disabled) != tt.disabled {
			t.Errorf("%s: %+v %v", tt.file, s, err)
		}
	}
	for _, bad := range []string{"", "garbage", "System Integrity Protection status: sideways.", "csrutil: failed to read"} {
		if _, err := parseCsrutilStatus([]byte(bad)); err == nil {
			t.Errorf("parseCsrutilStatus(%q): want error", bad)
		}
	}
}

func TestParseSecureBootLine(t *testing.T) {
	for file, want := range map[string]string{
		"spibridge-t2-full.txt": "full", "spibridge-t2-medium.txt": "medium", "spibridge-t2-none.txt": "none", "spibridge-no-t2.txt": "",
	} {
		line := parseSecureBootLine(platformtest.ReadFixture(t, "darwin", file))
		lvl, ok := t2Level(line)
		if lvl != want || ok != (want != "") {
			t.Errorf("%s: %q -> %q %v", file, line, lvl, ok)
		}
	}
}

func FuzzParseCsrutilStatus(f *testing.F) {
	for _, n := range []string{"csrutil-enabled.txt", "csrutil-custom.txt", "spibridge-t2-full.txt"} {
		f.Add(platformtest.ReadFixture(f, "darwin", n))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := parseCsrutilStatus(b); err == nil && s.Enabled && s.Custom {
			t.Errorf("enabled and custom: %+v", s)
		}
		_, _ = t2Level(parseSecureBootLine(b))
	})
}

func TestCollectDarwin(t *testing.T) {
	out := func(file string) platform.Result {
		return platform.Result{Stdout: platformtest.ReadFixture(t, "darwin", file)}
	}
	arm := platform.Result{Stdout: []byte("1\n")}
	intel := platform.Result{Stderr: platformtest.ReadFixture(t, "darwin", "sysctl-arm64-unknown.txt"), ExitCode: 1}
	tests := []struct {
		name    string
		cmds    map[string]platform.Result
		level   string
		enabled *bool
		sip     *bool
		wantErr bool
	}{
		{name: "apple silicon", cmds: map[string]platform.Result{"csrutil status": out("csrutil-enabled.txt"), "sysctl": arm},
			level: "full", enabled: darwinPtr(true), sip: darwinPtr(true)},
		{name: "apple silicon SIP custom", cmds: map[string]platform.Result{"csrutil status": out("csrutil-custom.txt"), "sysctl": arm},
			level: "permissive", enabled: darwinPtr(false), sip: darwinPtr(false)},
		{name: "apple silicon SIP off", cmds: map[string]platform.Result{"csrutil status": out("csrutil-disabled.txt"), "sysctl": arm},
			level: "permissive", enabled: darwinPtr(false), sip: darwinPtr(false)},
		{name: "T2 full", cmds: map[string]platform.Result{"csrutil status": out("csrutil-enabled.txt"), "sysctl": intel, "system_profiler": out("spibridge-t2-full.txt")},
			level: "full", enabled: darwinPtr(true), sip: darwinPtr(true)},
		{name: "T2 medium", cmds: map[string]platform.Result{"csrutil status": out("csrutil-enabled.txt"), "sysctl": intel, "system_profiler": out("spibridge-t2-medium.txt")},
			level: "medium", enabled: darwinPtr(true), sip: darwinPtr(true)},
		{name: "T2 none", cmds: map[string]platform.Result{"csrutil status": out("csrutil-enabled.txt"), "sysctl": intel, "system_profiler": out("spibridge-t2-none.txt")},
			level: "none", enabled: darwinPtr(false), sip: darwinPtr(true)},
		{name: "intel no T2", cmds: map[string]platform.Result{"csrutil status": out("csrutil-enabled.txt"), "sysctl": intel, "system_profiler": out("spibridge-no-t2.txt")},
			enabled: darwinPtr(false), sip: darwinPtr(true)},
		{name: "csrutil missing", cmds: map[string]platform.Result{"sysctl": arm}, level: "full", enabled: darwinPtr(true), wantErr: true},
		{name: "csrutil garbage", cmds: map[string]platform.Result{"csrutil status": {Stdout: []byte("garbage")}, "sysctl": arm}, level: "full", enabled: darwinPtr(true), wantErr: true},
		{name: "T2 unknown setting", cmds: map[string]platform.Result{"csrutil status": out("csrutil-enabled.txt"), "sysctl": intel,
			"system_profiler": {Stdout: []byte("Secure Boot: Bogus Security\n")}}, sip: darwinPtr(true), wantErr: true},
		{name: "nothing", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: tt.cmds}
			res, err := New().Collect(context.Background(), h)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			p := res.Payload.(Payload)
			if !p.UEFI || p.Level != tt.level || !eqPtr(p.Enabled, tt.enabled) || !eqPtr(p.SIP, tt.sip) || p.Detail == "" {
				t.Errorf("got %+v enabled %v sip %v", p, deref(p.Enabled), deref(p.SIP))
			}
		})
	}
}

func eqPtr(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func darwinPtr(b bool) *bool { return &b }
