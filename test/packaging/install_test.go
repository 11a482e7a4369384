//go:build linux

package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/evident-dev/evident/installers"
)

// fakeSystemctl is a systemctl that records its arguments and keeps just
// enough state for the agent's service manager (kardianos/service) to ask
// whether the unit is installed and active: PID 1 cannot be systemd here.
const fakeSystemctl = `#!/bin/sh
echo "$*" >> /tmp/systemctl.log
case "$1" in
is-active)
	if [ -f /tmp/unit-active ]; then echo active; exit 0; fi
	if [ -f /tmp/unit-failed ]; then echo failed; exit 3; fi
	echo inactive; exit 3 ;;
reset-failed) rm -f /tmp/unit-failed ;;
list-unit-files)
	for d in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
		if [ -f "$d/$4" ]; then echo "$4 enabled enabled"; exit 0; fi
	done
	exit 1 ;;
start|restart) touch /tmp/unit-active ;;
stop) rm -f /tmp/unit-active ;;
esac
exit 0
`

// systemdRoot is a fresh Debian root that looks like a running systemd to
// the agent: /run/systemd/system exists and systemctl records calls.
func systemdRoot(t *testing.T) (root string, calls func() []string) {
	t.Helper()
	root = debianRoot(t)
	// The agent finds its own path (for the unit's ExecStart) in /proc.
	run(t, "", "mount", "-t", "proc", "proc", filepath.Join(root, "proc"))
	t.Cleanup(func() { _ = exec.Command("umount", "-l", filepath.Join(root, "proc")).Run() })
	calls = fakeSystemd(t, root)
	writeIn(t, root, "/usr/bin/systemctl", fakeSystemctl, 0o755)
	return root, calls
}

const testSecret = "evt1.PACKAGINGTESTSECRET0000.1111111111111111111111111111111111111111111111111111111111111111"

// TestAgentInstallCommand runs `evident-agent install|stop|status|uninstall`
// from a plain binary (no package) inside a throwaway Debian root.
func TestAgentInstallCommand(t *testing.T) {
	bin := buildAgent(t, "linux", runtime.GOARCH, "1.2.3")
	const exe = "/usr/local/bin/evident-agent"
	const unitPath = "/etc/systemd/system/evident-agent.service"
	const unit = "evident-agent.service"

	t.Run("configured", func(t *testing.T) {
		root, calls := systemdRoot(t)
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		writeIn(t, root, exe, string(b), 0o755)

		out := mustChroot(t, root, exe, "install", "--server", "evident.example.com:8443", "--enroll-secret", testSecret)
		for _, want := range []string{"wrote 2 setting(s) to /etc/evident/agent.yaml", "installed the linux-systemd service evident-agent", "started"} {
			if !strings.Contains(out, want) {
				t.Errorf("install output lacks %q:\n%s", want, out)
			}
		}
		wantCalls(t, "install", calls(), []string{"enable " + unit, "daemon-reload", "start " + unit}, nil)

		// The unit is the packaged one, running this binary.
		want := strings.Replace(installers.SystemdUnit, "ExecStart="+installers.LinuxBinary+" run", "ExecStart="+exe+` "run"`, 1)
		if got := readIn(t, root, unitPath); got != want {
			t.Errorf("installed unit differs from the packaged unit:\n%s", got)
		}
		// And it passes systemd-analyze verify (ExecStart pointed at the
		// binary outside the root, as in TestUnitVerifies).
		needTool(t, "systemd-analyze")
		copyUnit := filepath.Join(t.TempDir(), "evident-agent.service")
		if err := os.WriteFile(copyUnit, []byte(strings.Replace(want, "ExecStart="+exe, "ExecStart="+filepath.Join(root, exe), 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := verifyUnit(copyUnit); err != nil {
			t.Error(err)
		}

		// The config: 0600, both settings, from the config file.
		wantMode(t, root, confPath, 0o600)
		show := mustChroot(t, root, exe, "config", "show")
		for _, want := range []string{"server             evident.example.com:8443  config file  /etc/evident/agent.yaml", "evt1.<redacted>.…1111"} {
			if !strings.Contains(show, want) {
				t.Errorf("config show lacks %q:\n%s", want, show)
			}
		}
		if strings.Contains(show, "PACKAGINGTESTSECRET") {
			t.Errorf("config show prints the secret:\n%s", show)
		}

		// Installing again: already installed, enabled, restarted.
		out = mustChroot(t, root, exe, "install", "--interval", "30m")
		if !strings.Contains(out, "already installed") || !strings.Contains(out, "restarted") {
			t.Errorf("second install:\n%s", out)
		}
		wantCalls(t, "reinstall", calls(), []string{"enable " + unit, "restart " + unit}, []string{"start " + unit})

		// A manual stop: the service manager is asked to stop, and the
		// status says stopped.
		if out := mustChroot(t, root, exe, "stop"); !strings.Contains(out, "stop: stopped") {
			t.Errorf("stop: %s", out)
		}
		wantCalls(t, "stop", calls(), []string{"stop " + unit}, nil)
		out, code := chroot(t, root, exe, "status")
		if code != 1 || !strings.Contains(out, "service:  stopped (linux-systemd)") || !strings.Contains(out, "agent not reachable") {
			t.Errorf("status of a stopped service: exit %d\n%s", code, out)
		}

		// Uninstall keeps the config and identity; --purge deletes them.
		out = mustChroot(t, root, exe, "uninstall")
		wantCalls(t, "uninstall", calls(), []string{"disable " + unit, "daemon-reload"}, nil)
		if exists(root, unitPath) || !exists(root, confPath) {
			t.Errorf("after uninstall: unit %v, config %v; want the unit gone and the config kept\n%s", exists(root, unitPath), exists(root, confPath), out)
		}
		out = mustChroot(t, root, exe, "uninstall", "--purge")
		if !strings.Contains(out, "not installed") || exists(root, confPath) {
			t.Errorf("uninstall --purge:\n%s", out)
		}
	})

	t.Run("unconfigured is installed but not started", func(t *testing.T) {
		root, calls := systemdRoot(t)
		b, _ := os.ReadFile(bin)
		writeIn(t, root, exe, string(b), 0o755)
		out := mustChroot(t, root, exe, "install")
		if !strings.Contains(out, "not started: server and enroll_secret not set") {
			t.Errorf("install output:\n%s", out)
		}
		wantCalls(t, "install", calls(), []string{"enable " + unit}, []string{"start " + unit})
		if _, code := chroot(t, root, exe, "config", "check"); code != 1 {
			t.Errorf("config check exit %d, want 1", code)
		}
	})

	t.Run("a non-default config file is passed to the service", func(t *testing.T) {
		root, calls := systemdRoot(t)
		b, _ := os.ReadFile(bin)
		writeIn(t, root, exe, string(b), 0o755)
		mustChroot(t, root, exe, "install", "--config", "/opt/evident/agent.yaml", "--server", "evident.example.com:8443", "--enroll-secret", testSecret)
		if u := readIn(t, root, unitPath); !strings.Contains(u, "ExecStart="+exe+` "run" "--config" "/opt/evident/agent.yaml"`+"\n") {
			t.Errorf("unit does not pass the config file on:\n%s", u)
		}
		wantMode(t, root, "/opt/evident/agent.yaml", 0o600)
		if exists(root, confPath) {
			t.Error("the default config file was written too")
		}
		wantCalls(t, "install", calls(), []string{"start " + unit}, nil)
	})

	t.Run("invalid setting is refused before anything is installed", func(t *testing.T) {
		root, calls := systemdRoot(t)
		b, _ := os.ReadFile(bin)
		writeIn(t, root, exe, string(b), 0o755)
		out, code := chroot(t, root, exe, "install", "--server", "no-port", "--enroll-secret", testSecret)
		if code != 78 || !strings.Contains(out, "want HOST:PORT") {
			t.Errorf("exit %d:\n%s", code, out)
		}
		if c := calls(); len(c) != 0 || exists(root, unitPath) || exists(root, confPath) {
			t.Errorf("a refused install changed the system: calls %q", c)
		}
	})
}

// TestAgentInstallAfterPackage: after the deb, `install` only configures,
// enables and starts the packaged unit, editing the shipped conffile in place.
func TestAgentInstallAfterPackage(t *testing.T) {
	deb := buildLinuxPackage(t, "deb", "1.0.0")
	root, calls := systemdRoot(t)
	mustChroot(t, root, "dpkg", "-i", copyInto(t, root, deb))
	// The package enables through deb-systemd-helper (a preset on a first
	// install) and starts nothing unconfigured.
	wantCalls(t, "dpkg -i", calls(), []string{"preset evident-agent.service"}, []string{"start evident-agent.service"})
	shipped := readIn(t, root, confPath)

	out := mustChroot(t, root, binPath, "install", "--server", "evident.example.com:8443", "--enroll-secret", testSecret)
	if !strings.Contains(out, "already installed") || !strings.Contains(out, "started") {
		t.Errorf("install output:\n%s", out)
	}
	wantCalls(t, "install", calls(), []string{"enable evident-agent.service", "start evident-agent.service"}, nil)
	if exists(root, "/etc/systemd/system/evident-agent.service") {
		t.Error("install wrote a second unit over the packaged one")
	}
	got := readIn(t, root, confPath)
	wantMode(t, root, confPath, 0o600)
	if !strings.Contains(got, "\nserver: evident.example.com:8443\n") || !strings.Contains(got, "enroll_secret: "+testSecret) {
		t.Errorf("config after install:\n%s", got)
	}
	// The shipped comments are kept: only the two example lines changed.
	if a, b := strings.Count(shipped, "\n"), strings.Count(got, "\n"); a != b {
		t.Errorf("config has %d lines, shipped %d: comments lost or settings appended\n%s", b, a, got)
	}
	mustChroot(t, root, binPath, "config", "check", "--quiet")

	// A packaged unit in systemd's failed state (say, exit 78 before the
	// settings were fixed): install again must neither write a unit over
	// the packaged one nor trip over the start limit.
	writeIn(t, root, "/tmp/unit-failed", "", 0o644)
	_ = os.Remove(filepath.Join(root, "tmp/unit-active"))
	out = mustChroot(t, root, binPath, "install", "--server", "evident2.example.com:8443")
	if exists(root, "/etc/systemd/system/evident-agent.service") || !strings.Contains(out, "already installed") {
		t.Errorf("install over a failed packaged unit:\n%s", out)
	}
	wantCalls(t, "install after failure", calls(), []string{"reset-failed evident-agent.service", "start evident-agent.service"}, nil)

	// The packaged unit is the package manager's to remove.
	if out, code := chroot(t, root, binPath, "uninstall"); code != 1 || !strings.Contains(out, "installed by a package") {
		t.Errorf("uninstall of the packaged unit: exit %d\n%s", code, out)
	}
	if !exists(root, "/usr/lib/systemd/system/evident-agent.service") {
		t.Error("uninstall removed the packaged unit")
	}
	// The package's removal still works (prerm stops, postrm masks).
	mustChroot(t, root, "dpkg", "-r", "evident-agent")
	wantCalls(t, "remove", calls(), []string{"stop evident-agent.service"}, nil)
	if !masked(root, "evident-agent.service") {
		t.Error("remove did not mask the unit")
	}
}
