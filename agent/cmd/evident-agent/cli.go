package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/shirou/gopsutil/v4/host"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/config"
	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/collectors/osinfo"
	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/snapshot"
)

const usage = `evident-agent: collects device-compliance evidence and streams it to evident-server.

Usage:
  evident-agent collect [--json]        run every collector once and print what it found (no server needed)
  evident-agent install --server HOST:PORT --enroll-secret TOKEN
                                        write the config and install and start the system service
                                        (systemd, launchd, Windows service); the agent enrolls itself.
                                        Server replicas: --server a.example:8443,b.example:8443
  evident-agent uninstall [--purge]     stop and remove the service (--purge: also its config and data)
  evident-agent start | stop | restart  control the installed service
  evident-agent status [--json]         the service's state and the running agent's: last report,
                                        outbox depth, last ack, errors
  evident-agent config show [--json]    the effective settings and where each came from (secrets redacted)
  evident-agent config check            exit 0 when the agent can run (enrolled, or server and secret set)
  evident-agent config write --server HOST:PORT --enroll-secret TOKEN
                                        set settings in the config file (0600; SYSTEM/Administrators on Windows)
  evident-agent enroll [--server HOST:PORT --enroll-secret TOKEN]
                                        enroll this device now (run does it by itself when configured)
  evident-agent run [--once]            run the agent in the foreground (what the service runs); --once
                                        collects, delivers, and exits 0 when the server has acknowledged
                                        everything (for MDM scripts)
  evident-agent tpm [--tpm SPEC]        show this device's TPM endorsement key hash and certificate issuer
                                        (what the server's --ek-allowlist or --ek-roots must hold)
  evident-agent snapshot --out DIR      record what the collectors read on this host (a support bundle;
                                        no secrets); replay it anywhere with --host-snapshot DIR
  evident-agent version

Settings, per setting, come from the first of: a flag; the environment (EVIDENT_SERVER,
EVIDENT_ENROLL_SECRET, EVIDENT_DATA_DIR, ...); MDM-managed settings (macOS managed preferences domain
com.evident.agent; Windows HKLM\SOFTWARE\Policies\Evident\Agent); the config file (agent.yaml).
"evident-agent config show" lists them all. Run "evident-agent COMMAND -h" for a command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	return app{stdin: os.Stdin, stdout: stdout, stderr: stderr, env: config.System(defaults())}.run(args)
}

// defaults are the built-in values `config show` reports for unset settings.
func defaults() map[string]string {
	return map[string]string{
		config.DataDir:          platform.DefaultAgentDataDir(),
		config.Interval:         agent.DefaultInterval.String(),
		config.CollectorTimeout: agent.DefaultCollectorTimeout.String(),
		config.LogLevel:         "info",
		config.LogFormat:        "text",
		config.OutboxMaxBytes:   strconv.FormatInt(agent.DefaultOutboxMaxBytes, 10),
	}
}

// app is one invocation: where it writes and the environment its settings
// come from (the real one, or a test's).
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	env            config.Environment
}

func (a app) run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "collect":
		err = a.cmdCollect(args[1:])
	case "tpm":
		err = a.cmdTPM(args[1:])
	case "enroll":
		err = a.cmdEnroll(args[1:])
	case "run":
		err = a.cmdRun(args[1:])
	case "status":
		err = a.cmdStatus(args[1:])
	case "snapshot":
		err = a.cmdSnapshot(args[1:])
	case "config":
		err = a.cmdConfig(args[1:])
	case "install":
		err = a.cmdInstall(args[1:])
	case "uninstall":
		err = a.cmdUninstall(args[1:])
	case "start", "stop", "restart":
		err = a.cmdControl(args[0], args[1:])
	case "version", "--version":
		fmt.Fprintln(a.stdout, "evident-agent", version.Version, runtime.GOOS+"/"+runtime.GOARCH)
	case "help", "-h", "--help":
		fmt.Fprint(a.stdout, usage)
	default:
		fmt.Fprintf(a.stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cli.ExitCode("evident-agent", err, a.stderr)
}

// settings registers flags for the named settings (and --config) on a
// command's flag set; load resolves them with the other sources.
type settings struct {
	fs         *flag.FlagSet
	file       *string
	flags      map[string]*string
	secretFile *string
	env        config.Environment
	stdin      io.Reader
	// given caches what set read: the secret file may be standard input,
	// which reads only once, and load runs again while a service waits.
	given    map[string]string
	givenErr error
	read     bool
}

func (a app) settings(fs *flag.FlagSet, names ...string) *settings {
	s := &settings{fs: fs, flags: map[string]*string{}, env: a.env, stdin: a.stdin}
	s.file = fs.String("config", "", "config file (default "+a.env.DefaultFile+"; env "+config.EnvConfigFile+")")
	for _, n := range names {
		k, _ := config.Lookup(n)
		help := k.Help + " (env " + k.Env + ")"
		if d := a.env.Defaults[n]; d != "" {
			help += "; default " + d
		}
		s.flags[n] = fs.String(k.Flag(), "", help)
		if n == config.EnrollSecret {
			s.secretFile = fs.String("enroll-secret-file", "", "read the enrollment secret from this file, or from standard input with -\n(keeps it out of the process list and shell history)")
		}
	}
	return s
}

// maxSecretFile bounds --enroll-secret-file.
const maxSecretFile = 4 << 10

// set reports the settings given as flags (the secret file included). It
// reads them once; later calls return the same.
func (s *settings) set() (map[string]string, error) {
	if !s.read {
		s.given, s.givenErr = s.readFlags()
		s.read = true
	}
	return s.given, s.givenErr
}

func (s *settings) readFlags() (map[string]string, error) {
	out := map[string]string{}
	s.fs.Visit(func(f *flag.Flag) {
		for n, p := range s.flags {
			if k, _ := config.Lookup(n); k.Flag() == f.Name {
				out[n] = *p
			}
		}
	})
	if s.secretFile != nil && *s.secretFile != "" {
		if _, both := out[config.EnrollSecret]; both {
			return nil, cli.WithCode(2, errors.New("give --enroll-secret or --enroll-secret-file, not both"))
		}
		r := s.stdin
		if *s.secretFile != "-" {
			f, err := os.Open(*s.secretFile)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			r = f
		}
		b, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
		if err != nil {
			return nil, fmt.Errorf("--enroll-secret-file: %w", err)
		}
		if len(b) > maxSecretFile {
			return nil, fmt.Errorf("--enroll-secret-file: larger than %d bytes", maxSecretFile)
		}
		out[config.EnrollSecret] = strings.TrimSpace(string(b))
	}
	return out, nil
}

func (s *settings) load() (*config.Config, error) {
	set, err := s.set()
	if err != nil {
		return nil, err
	}
	c, err := config.Load(config.Inputs{Env: s.env, File: *s.file, Flags: set})
	if errors.Is(err, config.ErrInvalid) {
		return nil, cli.WithCode(exConfig, err)
	}
	return c, err
}

// path is the config file load reads: --config, else EVIDENT_CONFIG, else
// the platform's.
func (s *settings) path() string {
	if *s.file != "" {
		return *s.file
	}
	if s.env.LookupEnv != nil {
		if p, ok := s.env.LookupEnv(config.EnvConfigFile); ok && p != "" {
			return p
		}
	}
	return s.env.DefaultFile
}

// exConfig is EX_CONFIG: a configuration the agent cannot use. The systemd
// unit lists it in RestartPreventExitStatus, so a bad setting does not loop.
const exConfig = 78

func registry(only string) (*collectors.Registry, error) {
	reg, err := collectors.NewRegistry(all.Default()...)
	if err != nil {
		return nil, err
	}
	if only == "" {
		return reg, nil
	}
	return reg.Select(strings.Split(only, ","))
}

func collectorsFlag(fs *flag.FlagSet) *string {
	return fs.String("collectors", "", "comma-separated collectors to run (default: all)")
}

func snapshotFlag(fs *flag.FlagSet) *string {
	return fs.String("host-snapshot", "", "read a recorded host snapshot directory instead of this machine (any OS's snapshot replays anywhere)")
}

// host is the machine itself, or the snapshot at dir.
func hostFor(dir string) (platform.Host, error) {
	if dir == "" {
		return platform.NewLive(), nil
	}
	return snapshot.Open(dir)
}

func logger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(cli.LogHandler(w, format, lvl)), nil
}

func (a app) cmdCollect(args []string) error {
	stdout := a.stdout
	fs := cli.NewFlagSet("collect", a.stderr, "evident-agent collect: run every collector once on this machine and print the results.\nNothing is stored or sent.")
	asJSON := fs.Bool("json", false, "print the observations as JSON")
	only := collectorsFlag(fs)
	snap := snapshotFlag(fs)
	timeout := fs.Duration("timeout", agent.DefaultCollectorTimeout, "per-collector timeout")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	reg, err := registry(*only)
	if err != nil {
		return err
	}
	h, err := hostFor(*snap)
	if err != nil {
		return err
	}
	obs := agent.Collect(context.Background(), agent.Config{Registry: reg, CollectorTimeout: *timeout, Host: h})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(obs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COLLECTOR\tSTATUS\tTOOK\tRESULT")
	for _, o := range obs {
		res := string(o.Payload)
		if o.Error != "" {
			res = o.Error
		}
		if len(res) > 120 {
			res = res[:119] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%dms\t%s\n", o.Collector, o.Status, o.DurationMS, res)
	}
	return tw.Flush()
}

func hostFacts() *identity.HostFacts {
	f := &identity.HostFacts{Goos: runtime.GOOS, Goarch: runtime.GOARCH, AgentVersion: version.Version}
	f.Hostname, _ = os.Hostname()
	if info, err := host.Info(); err == nil {
		f.OsVersion = strings.TrimSpace(info.Platform + " " + info.PlatformVersion)
		f.MachineId = info.HostID
	}
	f.SerialNumber = serialNumber(platform.NewLive())
	return f
}

// serialNumber is the hardware serial number the osinfo collector reads on
// h ("" when the firmware has none): what IT's inventory knows the
// machine by, sent at enrollment and in every Hello.
func serialNumber(h platform.Host) string {
	ctx, cancel := context.WithTimeout(context.Background(), agent.DefaultCollectorTimeout)
	defer cancel()
	res, _ := osinfo.New().Collect(ctx, h)
	if p, ok := res.Payload.(osinfo.Payload); ok {
		return p.SerialNumber
	}
	return ""
}

func (a app) cmdSnapshot(args []string) error {
	stdout := a.stdout
	fs := cli.NewFlagSet("snapshot", a.stderr, "evident-agent snapshot: run every collector once and record what they read (files, commands and\ntheir outputs, WMI queries, registry values) into a directory: a support bundle to attach when a result\nlooks wrong, and a fixture that `collect --host-snapshot DIR` replays on any OS. Key material and home\ndirectories are never recorded.")
	out := fs.String("out", "", "directory to write (must not exist or be empty)")
	only := collectorsFlag(fs)
	timeout := fs.Duration("timeout", agent.DefaultCollectorTimeout, "per-collector timeout")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(a.stderr, "snapshot needs --out DIR")
		return cli.ErrUsage
	}
	reg, err := registry(*only)
	if err != nil {
		return err
	}
	rec := snapshot.NewRecorder(platform.NewLive())
	obs := agent.Collect(context.Background(), agent.Config{Registry: reg, CollectorTimeout: *timeout, Host: rec})
	hostname, _ := os.Hostname()
	m, err := rec.Write(*out, hostname, version.Version, clock.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "snapshot of %s (%s/%s) written to %s: %d observations; %d commands, %d WMI queries, %d registry values recorded\n",
		m.Hostname, m.GOOS, m.GOARCH, *out, len(obs), len(m.Commands), len(m.WMI), len(m.Registry))
	return nil
}
