package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/evident-dev/evident/agent/config"
	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/internal/cli"
)

const configUsage = `evident-agent config: the agent's settings.

  evident-agent config show [--json]   every setting's effective value and where it came from:
                                       flag, environment, managed (MDM) or config file; secrets redacted
  evident-agent config check [--quiet] exit 0 when the agent can run: enrolled already, or server and
                                       enroll_secret set; exit 1 saying what is missing otherwise
  evident-agent config write --server HOST:PORT --enroll-secret TOKEN [--interval 30m ...]
                                       set settings in the config file, keeping the rest; the file is
                                       replaced atomically, readable by root (SYSTEM and Administrators
                                       on Windows) only
`

func (a app) cmdConfig(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, configUsage)
		return cli.ErrUsage
	}
	switch args[0] {
	case "show":
		return a.cmdConfigShow(args[1:])
	case "check":
		return a.cmdConfigCheck(args[1:])
	case "write":
		return a.cmdConfigWrite(args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(a.stdout, configUsage)
		return nil
	}
	fmt.Fprintf(a.stderr, "unknown config command %q\n\n%s", args[0], configUsage)
	return cli.ErrUsage
}

func allSettings() []string {
	var out []string
	for _, k := range config.Keys() {
		out = append(out, k.Name)
	}
	return out
}

// shownValue is one line of `config show --json`.
type shownValue struct {
	Setting string `json:"setting"`
	Value   string `json:"value"`
	Source  string `json:"source"`
	Origin  string `json:"origin"`
	Env     string `json:"env"`
	Managed string `json:"managed"`
}

func (a app) cmdConfigShow(args []string) error {
	fs := cli.NewFlagSet("config show", a.stderr, "evident-agent config show: the effective settings and the source of each (flag > environment >\nmanaged (MDM) > config file > default). Secrets are redacted. Flags given here show their effect.")
	st := a.settings(fs, allSettings()...)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	var rows []shownValue
	for _, v := range cfg.Values() {
		rows = append(rows, shownValue{Setting: v.Key.Name, Value: v.Display(), Source: v.Source.String(), Origin: v.Origin, Env: v.Key.Env, Managed: v.Key.Managed})
	}
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			File     string       `json:"config_file"`
			Managed  string       `json:"managed_store,omitempty"`
			Settings []shownValue `json:"settings"`
			Warnings []string     `json:"warnings,omitempty"`
		}{cfg.File, managedOrigin(a.env), rows, cfg.Warnings})
	}
	fmt.Fprintf(a.stdout, "config file:   %s\n", cfg.File)
	if m := managedOrigin(a.env); m != "" {
		fmt.Fprintf(a.stdout, "managed store: %s\n", m)
	}
	fmt.Fprintln(a.stdout)
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE\tFROM")
	for _, r := range rows {
		val := r.Value
		if val == "" {
			val = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Setting, val, r.Source, r.Origin)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(a.stdout, "warning:", w)
	}
	return nil
}

func managedOrigin(env config.Environment) string {
	if env.Managed == nil {
		return ""
	}
	return env.Managed.Origin()
}

// errNotConfigured is config check's failure.
var errNotConfigured = errors.New("not configured")

func (a app) cmdConfigCheck(args []string) error {
	fs := cli.NewFlagSet("config check", a.stderr, "evident-agent config check: exit 0 when the agent can run (already enrolled, or server and\nenroll_secret configured), 1 otherwise (the reason on stderr), 78 when a setting is invalid.\nPackage scripts use it to start the service only once it is configured.")
	st := a.settings(fs, config.DataDir, config.Server, config.EnrollSecret)
	quiet := fs.Bool("quiet", false, "print nothing on success")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	if id, err := identity.Load(identity.Dir(cfg.Get(config.DataDir))); err == nil {
		if !*quiet {
			fmt.Fprintf(a.stdout, "enrolled as %s with %s\n", id.DeviceID, id.Server)
		}
		return nil
	}
	if ok, why := cfg.Configured(); !ok {
		return fmt.Errorf("%w: %s (set them with `evident-agent config write --server HOST:PORT --enroll-secret TOKEN`, in %s, in the environment or an MDM profile)", errNotConfigured, why, cfg.File)
	}
	if !*quiet {
		fmt.Fprintf(a.stdout, "configured: will enroll with %s\n", cfg.Get(config.Server))
	}
	return nil
}

func (a app) cmdConfigWrite(args []string) error {
	fs := cli.NewFlagSet("config write", a.stderr, "evident-agent config write: set settings in the config file, keeping its other settings and\ncomments. The file is replaced atomically and readable only by root (SYSTEM and Administrators on\nWindows). Installers call it with the server and enrollment secret they were given.")
	st := a.settings(fs, allSettings()...)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	set, err := st.set()
	if err != nil {
		return err
	}
	if len(set) == 0 {
		fmt.Fprintln(a.stderr, "config write needs at least one setting, e.g. --server HOST:PORT --enroll-secret TOKEN")
		return cli.ErrUsage
	}
	return a.writeSettings(st, set)
}

// writeSettings writes set to the config file load reads: --config, else
// EVIDENT_CONFIG, else the platform's.
func (a app) writeSettings(st *settings, set map[string]string) error {
	path := st.path()
	if err := config.WriteFile(path, set); err != nil {
		if errors.Is(err, config.ErrInvalid) {
			return cli.WithCode(exConfig, err)
		}
		return err
	}
	fmt.Fprintf(a.stdout, "wrote %d setting(s) to %s\n", len(set), path)
	return nil
}
