package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/evident-dev/evident/agent/config"
	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/platform/service"
)

func manager() (*service.Manager, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return service.NewManager(exe)
}

func (a app) cmdInstall(args []string) error {
	fs := cli.NewFlagSet("install", a.stderr, "evident-agent install: write the given settings to the config file (0600), install the system\nservice (systemd unit, launchd daemon or Windows service) running this binary, and start it when it\nis configured. Where a package (deb, rpm, pkg, MSI) already installed the service, only the settings\nare written and the service enabled and started. The agent enrolls itself on its first start.")
	st := a.settings(fs, allSettings()...)
	noStart := fs.Bool("no-start", false, "install without starting (e.g. in an image build)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if set := st.set(); len(set) > 0 {
		if err := a.writeSettings(st, set); err != nil {
			return err
		}
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	m, err := manager()
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
	} else if err := m.Uninstall(); err != nil {
		return fmt.Errorf("uninstall the %s service: %w", m.System(), err)
	} else {
		fmt.Fprintf(a.stdout, "removed the %s service %s\n", m.System(), service.Name)
	}
	if *purge {
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
