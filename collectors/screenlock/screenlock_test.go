package screenlock

import (
	"context"
	"errors"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestCollectLinux(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		tree        string
		applicable  bool
		enabled, on *bool // nil: unknown
		idle        int
		enforced    bool
	}{
		{tree: "server"},
		// gdm.d sets idle-delay 7200 for the login screen only: ignored.
		{tree: "gnome-locked", applicable: true, enabled: &yes, on: &yes, idle: 600, enforced: true},
		{tree: "gnome-unlocked", applicable: true, enabled: &no, on: &no},
		// No policy: GNOME's defaults are not evidence of a control.
		{tree: "gnome-default", applicable: true},
		{tree: "kde", applicable: true},
		// False passes closed in parser v2 (v1 reported each as enabled,
		// 600 s, enforced).
		// lock-delay not locked: a user may set it to hours.
		{tree: "gnome-lockdelay-unlocked", applicable: true, enabled: &yes, on: &yes, idle: 600},
		{tree: "gnome-disable-lock", applicable: true, enabled: &no, on: &no, idle: 600, enforced: true},
		{tree: "gnome-idle-activation-off", applicable: true, enabled: &no, on: &yes, idle: 600, enforced: true},
		// An Xfce session beside GNOME: GNOME's policy does not govern it.
		{tree: "gnome-plus-xfce", applicable: true},
	} {
		t.Run(tc.tree, func(t *testing.T) {
			res, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: "testdata/" + tc.tree}, OS: "linux"})
			if err != nil {
				t.Fatal(err)
			}
			p := res.Payload.(Payload)
			if p.Applicable != tc.applicable || p.Enforced != tc.enforced {
				t.Fatalf("payload %+v", p)
			}
			if deref(p.Enabled) != deref(tc.enabled) || deref(p.PasswordOnWake) != deref(tc.on) {
				t.Errorf("enabled %v password %v, want %v %v (%s)", deref(p.Enabled), deref(p.PasswordOnWake), deref(tc.enabled), deref(tc.on), p.Detail)
			}
			got := 0
			if p.IdleSeconds != nil {
				got = *p.IdleSeconds
			}
			if got != tc.idle {
				t.Errorf("idle %d, want %d", got, tc.idle)
			}
		})
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func TestParseDconfKeyfileErrors(t *testing.T) {
	for _, in := range []string{"[org/gnome/desktop/session\n", "[org/gnome/desktop/session]\nidle-delay\n",
		"[org/gnome/desktop/session]\nidle-delay=uint32 soon\n", "[org/gnome/desktop/screensaver]\nlock-enabled=maybe\n"} {
		var s dconfSettings
		if err := parseDconfKeyfile([]byte(in), &s); err == nil {
			t.Errorf("parseDconfKeyfile(%q) accepted", in)
		}
	}
}

func TestParseSysadminctl(t *testing.T) {
	for _, tc := range []struct {
		in     string
		on     bool
		delay  int
		hasErr bool
	}{
		{"2026-11-20 10:00:00.123 sysadminctl[812:9313] screenLock delay is 300 seconds\n", true, 300, false},
		{"2026-11-20 10:00:00.123 sysadminctl[812:9313] screenLock is immediate\n", true, 0, false},
		{"2026-11-20 10:00:00.123 sysadminctl[812:9313] screenLock is off\n", false, 0, false},
		{"sysadminctl: unknown option\n", false, 0, true},
	} {
		on, d, err := parseSysadminctl([]byte(tc.in))
		if on != tc.on || d != tc.delay || (err != nil) != tc.hasErr {
			t.Errorf("parseSysadminctl(%q) = %v %d %v", tc.in, on, d, err)
		}
	}
}

func TestCollectDarwin(t *testing.T) {
	status := func(s string) platform.Result {
		return platform.Result{Stderr: []byte("2026-11-20 10:00:00.123 sysadminctl[812:9313] " + s + "\n")}
	}
	idleKey := "defaults read " + managedScreensaver + " idleTime"
	for _, tc := range []struct {
		name              string
		cmds              map[string]platform.Result
		enabled, enforced any
		idle              int
	}{
		{"managed 600 s, immediate lock", map[string]platform.Result{"sysadminctl -screenLock status": status("screenLock is immediate"), idleKey: {Stdout: []byte("600\n")}}, true, true, 600},
		{"lock off", map[string]platform.Result{"sysadminctl -screenLock status": status("screenLock is off"), idleKey: {Stdout: []byte("600\n")}}, false, true, 600},
		{"unmanaged idle time", map[string]platform.Result{"sysadminctl -screenLock status": status("screenLock delay is 5 seconds"),
			idleKey: {ExitCode: 1, Stderr: []byte("The domain/default pair of (/Library/Managed Preferences/com.apple.screensaver, idleTime) does not exist\n")}}, nil, false, 0},
		{"nothing readable", nil, nil, false, 0},
		{"idle 600 s plus a 3600 s password delay", map[string]platform.Result{"sysadminctl -screenLock status": status("screenLock delay is 3600 seconds"), idleKey: {Stdout: []byte("600\n")}}, true, true, 4200},
		{"managed idle time, lock status unreadable", map[string]platform.Result{idleKey: {Stdout: []byte("600\n")}}, nil, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "darwin", Commands: tc.cmds})
			if err != nil {
				t.Fatal(err)
			}
			p := res.Payload.(Payload)
			if deref(p.Enabled) != tc.enabled || p.Enforced != tc.enforced.(bool) {
				t.Errorf("enabled %v enforced %v, want %v %v (%s)", deref(p.Enabled), p.Enforced, tc.enabled, tc.enforced, p.Detail)
			}
			if tc.idle != 0 && (p.IdleSeconds == nil || *p.IdleSeconds != tc.idle) {
				t.Errorf("idle %v, want %d", p.IdleSeconds, tc.idle)
			}
		})
	}
}

func TestCollectWindows(t *testing.T) {
	key := policyKey + "|" + policyValue
	for _, tc := range []struct {
		name    string
		reg     map[string]platform.RegistryValue
		enabled bool
		idle    int
	}{
		{"900 s policy", map[string]platform.RegistryValue{key: {Type: "DWORD", Int: 900}}, true, 900},
		{"policy 0 disables", map[string]platform.RegistryValue{key: {Type: "DWORD", Int: 0}}, false, 0},
		{"no policy", map[string]platform.RegistryValue{}, false, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows", RegistryValues: tc.reg})
			if err != nil {
				t.Fatal(err)
			}
			p := res.Payload.(Payload)
			if p.Enabled == nil || *p.Enabled != tc.enabled {
				t.Errorf("enabled %v, want %v", deref(p.Enabled), tc.enabled)
			}
			if tc.idle >= 0 && (p.IdleSeconds == nil || *p.IdleSeconds != tc.idle) {
				t.Errorf("idle %v, want %d", p.IdleSeconds, tc.idle)
			}
		})
	}
	// A value of the wrong type says nothing: unknown, not off.
	res, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "windows",
		RegistryValues: map[string]platform.RegistryValue{key: {Type: "SZ", String: "900"}}})
	if p := res.Payload.(Payload); err != nil || p.Enabled != nil {
		t.Errorf("SZ policy value: enabled %v, err %v; want unknown", deref(p.Enabled), err)
	}
	if _, err := New().Collect(context.Background(), platformtest.Replay{Live: &platform.Live{}, OS: "plan9"}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("plan9: %v", err)
	}
}

func FuzzParsers(f *testing.F) {
	f.Add([]byte("[org/gnome/desktop/session]\nidle-delay=uint32 600\n"))
	f.Add([]byte("screenLock delay is 300 seconds"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s dconfSettings
		parseDconfKeyfile(b, &s)
		parseSysadminctl(b)
		lockedKeys(b)
	})
}
