package patches

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

// Each case is a host where automatic updates do not really run, which
// parser v2 reported as Enabled (a DC-PATCH-02 pass).
func TestAptAutoUpdatesFalsePass(t *testing.T) {
	const (
		isEnabled = "systemctl is-enabled apt-daily.timer apt-daily-upgrade.timer"
		isActive  = "systemctl is-active apt-daily.timer apt-daily-upgrade.timer"
	)
	fix := func(elem ...string) platform.Result {
		return platform.Result{Stdout: platformtest.ReadFixture(t, elem...)}
	}
	enabled := fix("systemd", "is-enabled-apt-debian12.txt")
	active := platform.Result{Stdout: []byte("active\nactive\n")}
	tests := []struct {
		name           string
		cmds           map[string]platform.Result
		on, unknown    bool
		detailContains string
	}{
		{name: "scheduled", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-unattended.txt"), isEnabled: enabled, isActive: active},
			on: true, detailContains: "enabled and active"},
		{name: "APT::Periodic::Enable 0", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-periodic-disabled.txt"), isEnabled: enabled, isActive: active},
			detailContains: `Enable "0"`},
		{name: "package lists never refreshed", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-unattended-no-lists.txt"), isEnabled: enabled, isActive: active},
			detailContains: `Update-Package-Lists "0"`},
		{name: "apt-daily.timer disabled", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-unattended.txt"),
			isEnabled: {ExitCode: 0, Stdout: platformtest.ReadFixture(t, "systemd", "is-enabled-apt-lists-disabled.txt")}, isActive: active},
			detailContains: "apt-daily.timer is disabled"},
		{name: "apt-daily-upgrade.timer masked", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-unattended.txt"),
			isEnabled: {ExitCode: 1, Stdout: platformtest.ReadFixture(t, "systemd", "is-enabled-apt-upgrade-masked.txt")}, isActive: active},
			detailContains: "apt-daily-upgrade.timer is masked"},
		{name: "apt-daily-upgrade.timer stopped", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-unattended.txt"), isEnabled: enabled,
			isActive: {ExitCode: 3, Stdout: platformtest.ReadFixture(t, "systemd", "is-active-apt-upgrade-stopped.txt")}},
			detailContains: "apt-daily-upgrade.timer is inactive"},
		// Recorded on the Debian 12 VM, which does not boot with systemd:
		// the timers are enabled but nothing runs them.
		{name: "systemd not running", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-unattended.txt"), isEnabled: enabled,
			isActive: {ExitCode: 1, Stderr: platformtest.ReadFixture(t, "systemd", "is-active-no-systemd-debian12.txt")}},
			unknown: true, detailContains: "not been booted with systemd"},
		{name: "no systemctl", cmds: map[string]platform.Result{"apt-config": fix("apt-config-dump-unattended.txt")},
			unknown: true, detailContains: "systemctl not found"},
		// apt.conf.d files are not parsed in apt-config's place: apt's
		// name rules, order, apt.conf and nested scopes decide.
		{name: "apt-config unavailable", cmds: map[string]platform.Result{isEnabled: enabled, isActive: active},
			unknown: true, detailContains: "apt-config dump could not be run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &reader{host: platformtest.Replay{Live: &platform.Live{Root: "testdata/debian12"}, Commands: tt.cmds}}
			au := r.aptAutoUpdates(context.Background())
			if au.Enabled != tt.on || au.Unknown != tt.unknown || !strings.Contains(au.Detail, tt.detailContains) {
				t.Errorf("got %+v", au)
			}
			if len(r.sources) == 0 {
				t.Error("no sources")
			}
		})
	}
}

// dnf inputs are SYNTHETIC (see testdata/README.md): systemctl's one-state
// lines and automatic.conf written from their documentation.
func TestDnfAutoUpdatesFalsePass(t *testing.T) {
	st := func(s string, code int) platform.Result {
		return platform.Result{Stdout: []byte(s + "\n"), ExitCode: code}
	}
	const (
		installEn  = "systemctl is-enabled dnf-automatic-install.timer"
		installAct = "systemctl is-active dnf-automatic-install.timer"
		plainEn    = "systemctl is-enabled dnf-automatic.timer"
		plainAct   = "systemctl is-active dnf-automatic.timer"
	)
	tests := []struct {
		name        string
		conf        string
		cmds        map[string]platform.Result
		on, unknown bool
	}{
		{name: "install timer", cmds: map[string]platform.Result{installEn: st("enabled", 0), installAct: st("active", 0)}, on: true},
		{name: "timer with apply_updates yes", conf: "[commands]\napply_updates = yes\n",
			cmds: map[string]platform.Result{installEn: st("disabled", 1), plainEn: st("enabled", 0), plainAct: st("active", 0)}, on: true},
		// is-enabled exits 0 for "static" and "indirect" too: the timer is
		// not started by them.
		{name: "install timer static", cmds: map[string]platform.Result{installEn: st("static", 0), installAct: st("inactive", 3),
			plainEn: st("disabled", 1)}},
		{name: "install timer enabled but stopped", cmds: map[string]platform.Result{installEn: st("enabled", 0), installAct: st("inactive", 3),
			plainEn: st("disabled", 1)}},
		{name: "apply_updates given twice", conf: "[commands]\napply_updates = yes\napply_updates = no\n",
			cmds: map[string]platform.Result{installEn: st("disabled", 1), plainEn: st("enabled", 0), plainAct: st("active", 0)}},
		{name: "no systemctl", conf: "[commands]\napply_updates = yes\n", unknown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.conf != "" {
				writeFile(t, root, "etc/dnf/automatic.conf", tt.conf)
			}
			r := &reader{host: platformtest.Replay{Live: &platform.Live{Root: root}, Commands: tt.cmds}}
			au := r.dnfAutoUpdates(context.Background())
			if au.Enabled != tt.on || au.Unknown != tt.unknown || au.Detail == "" {
				t.Errorf("got %+v", au)
			}
		})
	}
}

func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
