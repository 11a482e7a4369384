package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/evident-dev/evident/agent/config"
	"github.com/evident-dev/evident/installers"
	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/platform/service"
)

// definitions are the service files the packages install: `install` writes
// the same, running this binary.
func definitions() service.Definitions {
	return service.Definitions{
		SystemdUnit: installers.SystemdUnit, LinuxBinary: installers.LinuxBinary,
		LaunchdPlist: installers.LaunchdPlist, DarwinBinary: installers.DarwinBinary,
	}
}

// manager controls the service; args are added to the `run` of a service
// it installs.
func manager(args ...string) (*service.Manager, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return service.NewManager(exe, definitions(), args...)
}

func (a app) cmdInstall(args []string) error {
	fs := cli.NewFlagSet("install", a.stderr, "evident-agent install: write the given settings to the config file (0600), install the system\nservice (systemd unit, launchd daemon or Windows service) running this binary, and start it when it\nis configured. Where a package (deb, rpm, pkg, MSI) already installed the service, only the settings\nare written and the service enabled and started. The agent enrolls itself on its first start.")
	st := a.settings(fs, allSettings()...)
	noStart := fs.Bool("no-start", false, "install without starting (e.g. in an image build)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	set, err := st.set()
	if err != nil {
		return err
	}
	// Check the settings given before changing anything (the file itself
	// is checked when it is written).
	if _, err := config.Load(config.Inputs{Flags: set}); err != nil {
		return cli.WithCode(exConfig, err)
	}
	if len(set) > 0 {
		if err := a.writeSettings(st, set); err != nil {
			return err
		}
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	// A service started by the system has neither this shell's environment
	// nor its flags: it reads the config file, so a non-default one is
	// passed on.
	var runArgs []string
	if p := st.path(); p != a.env.DefaultFile {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		runArgs = []string{"--config", abs}
	}
	m, err := manager(runArgs...)
	if err != nil {
		return err
	}
	installed, err := m.Install()
	if err != nil {
		return fmt.Errorf("install the %s service: %w", m.System(), err)
	}
	if installed {
		fmt.Fprintf(a.stdout, "installed the %s service %s\n", m.System(), service.Name)
	} else {
		if err := m.Enable(); err != nil {
			return fmt.Errorf("enable the service: %w", err)
		}
		fmt.Fprintf(a.stdout, "the %s service %s was already installed; enabled it\n", m.System(), service.Name)
		if runArgs != nil {
			fmt.Fprintf(a.stdout, "warning: the installed service reads %s, not %s; uninstall and install again to change that\n", a.env.DefaultFile, st.path())
		}
	}
	if *noStart {
		return nil
	}
	if ok, why := cfg.Configured(); !ok && !enrolled(cfg) {
		fmt.Fprintf(a.stdout, "not started: %s. Set them (evident-agent config write --server HOST:PORT --enroll-secret TOKEN) and run `evident-agent start`.\n", why)
		return nil
	}
	if m.Status() == service.Running {
		if err := m.Restart(); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		fmt.Fprintln(a.stdout, "restarted the service with the new settings")
		return nil
	}
	if err := m.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	fmt.Fprintln(a.stdout, "started; check with `evident-agent status`")
	return nil
}

func (a app) cmdUninstall(args []string) error {
	fs := cli.NewFlagSet("uninstall", a.stderr, "evident-agent uninstall: stop the service and remove its definition. The config file and the data\ndirectory (identity, outbox) stay unless --purge. A service a package installed is removed with the\npackage manager instead (apt remove, dnf remove, the MSI, the pkg's uninstall script).")
	st := a.settings(fs, config.DataDir)
	purge := fs.Bool("purge", false, "also delete the config file and the data directory (the device must enroll again)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	m, err := manager()
	if err != nil {
		return err
	}
	if st := m.Status(); st == service.NotInstalled {
		fmt.Fprintln(a.stdout, "the service is not installed")
	} else if err := m.Uninstall(); errors.Is(err, service.ErrPackaged) {
		return err
	} else if err != nil {
		return fmt.Errorf("uninstall the %s service: %w", m.System(), err)
	} else {
		fmt.Fprintf(a.stdout, "removed the %s service %s\n", m.System(), service.Name)
	}
	if *purge {
		if err := purgeable(cfg.Get(config.DataDir)); err != nil {
			return err
		}
		for _, p := range []string{cfg.File, cfg.Get(config.DataDir)} {
			if p == "" {
				continue
			}
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "deleted", p)
		}
	}
	return nil
}

func (a app) cmdControl(verb string, args []string) error {
	fs := cli.NewFlagSet(verb, a.stderr, "evident-agent "+verb+": "+verb+" the installed service through the service manager.\nA stopped service stays stopped until started (it is restarted only when it fails).")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	m, err := manager()
	if err != nil {
		return err
	}
	if m.Status() == service.NotInstalled {
		return errors.New("the service is not installed: run `evident-agent install` first")
	}
	switch verb {
	case "start":
		err = m.Start()
	case "stop":
		err = m.Stop()
	default:
		err = m.Restart()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	fmt.Fprintf(a.stdout, "%s: %s\n", verb, m.Status())
	return nil
}

// purgeable refuses to delete a data directory that does not look like one:
// data_dir can come from a flag, the environment or an MDM profile, and
// `uninstall --purge` must never become `rm -rf /var`.
func purgeable(dir string) error {
	if dir == "" {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	parts := strings.Split(strings.Trim(filepath.ToSlash(filepath.Clean(abs)), "/"), "/")
	if len(parts) < 2 || (len(parts) == 2 && strings.HasSuffix(parts[0], ":")) {
		return fmt.Errorf("refusing to delete %s: too close to the file system root for a data directory", abs)
	}
	entries, err := os.ReadDir(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch e.Name() {
		case "identity", "outbox.db", "outbox.db.compact", "agent.sock", ".package-removed":
		default:
			return fmt.Errorf("refusing to delete %s: it holds %q, which the agent did not create (delete it yourself if it is really the agent's)", abs, e.Name())
		}
	}
	return nil
}
