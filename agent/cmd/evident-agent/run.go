package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/config"
	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/service"
	"github.com/evident-dev/evident/platform/snapshot"
)

// enrollSettings are the settings enrollment reads.
var enrollSettings = []string{config.Server, config.EnrollSecret, config.DataDir, config.TPM, config.TPMEventLog, config.MachineID}

func (a app) cmdEnroll(args []string) error {
	fs := cli.NewFlagSet("enroll", a.stderr, "evident-agent enroll: enroll this device with evident-server. The enrollment secret (the token\n`evident-server secret create` prints) carries the secret and the server CA's pin, so the first\nconnection is verified too. `run` enrolls by itself when server and enroll_secret are configured.")
	st := a.settings(fs, enrollSettings...)
	token := fs.String("token", "", "the enrollment token (older name of --enroll-secret; prefer the environment or the config file: flags show in ps)")
	force := fs.Bool("force", false, "enroll again even if this data directory is already enrolled")
	snap := fs.String("host-snapshot", "", "enroll as the host recorded in this snapshot (hostname, OS, architecture), for a lab device that will `run --host-snapshot` it")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *token != "" && *st.flags[config.EnrollSecret] == "" {
		if err := fs.Set("enroll-secret", *token); err != nil {
			return err
		}
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	if ok, why := cfg.Configured(); !ok {
		fmt.Fprintf(a.stderr, "enroll needs --server and --enroll-secret (or EVIDENT_SERVER and EVIDENT_ENROLL_SECRET, or the config file): %s\n", why)
		return cli.ErrUsage
	}
	idDir := identity.Dir(cfg.Get(config.DataDir))
	if id, err := identity.Load(idDir); err == nil && !*force {
		fmt.Fprintf(a.stdout, "already enrolled as %s with %s (use --force to enroll again)\n", id.DeviceID, id.Server)
		return nil
	}
	facts := hostFacts()
	if *snap != "" {
		h, err := snapshot.Open(*snap)
		if err != nil {
			return err
		}
		facts = runFacts(h)
	}
	id, err := enroll(context.Background(), cfg, facts)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "enrolled as %s with %s, %s\n", id.DeviceID, id.Server, boundTo(id))
	return nil
}

func boundTo(id *identity.Identity) string {
	if id.TPM != "" {
		return "bound to TPM " + id.TPM
	}
	return "without a TPM"
}

// enroll enrolls with the configured server and secret, binding the identity
// to the configured TPM (auto by default).
func enroll(ctx context.Context, cfg *config.Config, facts *identity.HostFacts) (*identity.Identity, error) {
	if m := cfg.Get(config.MachineID); m != "" {
		facts.MachineId = m
	}
	// On Windows this also takes the directory from %ProgramData%'s
	// readable-by-Users ACL to SYSTEM and Administrators only.
	if err := config.SecureDir(cfg.Get(config.DataDir)); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	idDir := identity.Dir(cfg.Get(config.DataDir))
	if err := os.MkdirAll(idDir, 0o700); err != nil {
		return nil, err
	}
	spec := cfg.Get(config.TPM)
	if spec == "" {
		spec = agent.TPMAuto
	}
	eventLog := cfg.Get(config.TPMEventLog)
	sess, err := agent.OpenTPM(spec, eventLog, identity.AKPath(idDir))
	if err != nil {
		return nil, fmt.Errorf("TPM %q: %w (set tpm to none to enroll without a TPM)", spec, err)
	}
	opts := identity.EnrollOptions{TPMEventLog: eventLog}
	if sess != nil {
		defer sess.Close()
		opts.TPM, opts.TPMSpec = sess, sess.Spec
	}
	return identity.Enroll(ctx, idDir, cfg.Get(config.Server), cfg.Get(config.EnrollSecret), facts, opts)
}

// runSettings are the settings the daemon reads.
var runSettings = []string{config.Server, config.EnrollSecret, config.DataDir, config.TPM, config.TPMEventLog,
	config.Interval, config.CollectorTimeout, config.LogLevel, config.LogFormat, config.OutboxMaxBytes, config.MachineID, config.MetricsListen}

// runOptions are run's own flags.
type runOptions struct {
	once        bool
	onceTimeout time.Duration
	only, snap  string
}

func (a app) cmdRun(args []string) error {
	fs := cli.NewFlagSet("run", a.stderr, "evident-agent run: collect on a schedule, keep observations in the outbox, and stream them\nto the server; what the service runs. Not yet enrolled, it enrolls with the configured server and\nenrollment secret; as a service without them, it waits, re-reading its settings every 30 s.\nStops cleanly on SIGINT/SIGTERM (or a service stop); anything unacknowledged is resent on the next start.\nExit status: 0 stopped, 1 failed (the service manager restarts it), 78 invalid configuration (in the\nforeground; as a service it logs the error and re-reads the settings every 30 s until they are fixed).")
	st := a.settings(fs, runSettings...)
	var o runOptions
	fs.BoolVar(&o.once, "once", false, "collect once, deliver, exit 0 when the server has acknowledged everything")
	fs.DurationVar(&o.onceTimeout, "once-timeout", 2*time.Minute, "with --once: give up (exit 1) after this long")
	only := collectorsFlag(fs)
	snap := snapshotFlag(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	o.only, o.snap = *only, *snap
	if o.onceTimeout <= 0 {
		return errors.New("--once-timeout must be positive")
	}
	if !o.once && service.Managed() {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		return service.RunManaged(exe, a.stderr, func(ctx context.Context, log io.Writer) error {
			a := a
			a.stderr = log
			if err := service.SetRecovery(); err != nil {
				fmt.Fprintf(log, "level=WARN msg=%q err=%q\n", "cannot set the service's recovery actions", err)
			}
			err := a.daemon(ctx, st, o, true)
			if err != nil && ctx.Err() == nil {
				fmt.Fprintf(log, "level=ERROR msg=%q err=%q\n", "agent failed; exiting for the service manager to restart it", err)
			}
			return err
		}, func(err error) {
			os.Exit(cli.ExitCode("evident-agent", err, a.stderr))
		})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.daemon(ctx, st, o, false)
}

// configPoll is how often an unconfigured service re-reads its settings.
const configPoll = 30 * time.Second

// daemon enrolls when needed, then runs the agent until ctx ends. As a
// service (wait), an unconfigured agent waits for its settings instead of
// failing, so an MDM may push the package before the profile.
func (a app) daemon(ctx context.Context, st *settings, o runOptions, wait bool) error {
	wait = wait && !o.once
	cfg, err := a.loadSettings(ctx, st, wait)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting
		}
		return err
	}
	log, err := logger(a.stderr, cfg.Get(config.LogLevel), cfg.Get(config.LogFormat))
	if err != nil {
		return cli.WithCode(exConfig, err)
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	cfg, err = a.ensureEnrolled(ctx, st, cfg, log, wait)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting
		}
		return err
	}
	reg, err := registry(o.only)
	if err != nil {
		return err
	}
	h, err := hostFor(o.snap)
	if err != nil {
		return err
	}
	if err := config.SecureDir(cfg.Get(config.DataDir)); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	ag, err := agent.Open(agent.Config{
		DataDir:          cfg.Get(config.DataDir),
		Server:           cfg.Get(config.Server), // "": the one recorded at enrollment
		Interval:         cfg.Duration(config.Interval, agent.DefaultInterval),
		CollectorTimeout: cfg.Duration(config.CollectorTimeout, agent.DefaultCollectorTimeout),
		OutboxMaxBytes:   cfg.Int64(config.OutboxMaxBytes, agent.DefaultOutboxMaxBytes),
		Version:          version.Version,
		Facts:            runFacts(h),
		Log:              log,
		Registry:         reg,
		Host:             h,
		TPM:              cfg.Get(config.TPM),
		TPMEventLog:      cfg.Get(config.TPMEventLog),
		MetricsListen:    cfg.Get(config.MetricsListen),
	})
	if err != nil {
		return err
	}
	defer ag.Close()
	err = ag.Run(ctx, o.once, o.onceTimeout)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// ensureEnrolled returns once the data directory holds an identity,
// enrolling with the configured server and secret when it does not. With
// wait, it keeps trying (a server not yet reachable at boot, settings not
// yet pushed) until ctx ends; without, it fails at once.
func (a app) ensureEnrolled(ctx context.Context, st *settings, cfg *config.Config, log *slog.Logger, wait bool) (*config.Config, error) {
	backoff := configPoll
	lastWhy, lastTarget := "", ""
	for {
		if _, err := identity.Load(identity.Dir(cfg.Get(config.DataDir))); err == nil {
			return cfg, nil
		} else if !errors.Is(err, identity.ErrNotEnrolled) {
			return nil, err
		}
		delay := configPoll
		if ok, why := cfg.Configured(); !ok {
			if !wait {
				return nil, fmt.Errorf("not enrolled and not configured (%s): run `evident-agent install --server HOST:PORT --enroll-secret TOKEN`, or set them in %s", why, cfg.File)
			}
			if why != lastWhy {
				log.Warn("not configured; waiting for settings", "missing", why, "config_file", cfg.File,
					"hint", "evident-agent install --server HOST:PORT --enroll-secret TOKEN, or an MDM profile; evident-agent config show lists the sources")
				lastWhy = why
			}
		} else {
			if target := cfg.Get(config.Server) + "\x00" + cfg.Get(config.EnrollSecret); target != lastTarget {
				backoff, lastTarget = configPoll, target // new settings: try them at once
			}
			id, err := enroll(ctx, cfg, hostFacts())
			if err == nil {
				log.Info("enrolled", "device", id.DeviceID, "server", id.Server, "tpm", boundTo(id))
				return cfg, nil
			}
			if !wait {
				return nil, err
			}
			log.Error("enrollment failed; will retry", "server", cfg.Get(config.Server), "err", err, "retry_in", backoff)
			delay = backoff
			backoff = min(backoff*2, 30*time.Minute)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		next, err := a.loadSettings(ctx, st, wait)
		if err != nil {
			return nil, err
		}
		cfg = next
	}
}

// loadSettings resolves the settings. As a service (wait), an invalid
// setting (a half-edited profile, a typo in agent.yaml) is logged and the
// settings re-read every 30 s until they are fixed, instead of exiting: a
// service manager would either restart it in a loop or give up on it. In
// the foreground it fails at once (exit 78).
func (a app) loadSettings(ctx context.Context, st *settings, wait bool) (*config.Config, error) {
	last := ""
	for {
		cfg, err := st.load()
		if err == nil || !wait || !errors.Is(err, config.ErrInvalid) {
			return cfg, err
		}
		if err.Error() != last {
			fmt.Fprintf(a.stderr, "level=ERROR msg=%q err=%q retry_in=%s\n", "invalid settings; waiting for them to be fixed", err, configPoll)
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(configPoll):
		}
	}
}

// enrolled reports whether the configured data directory holds an identity.
func enrolled(cfg *config.Config) bool {
	_, err := identity.Load(identity.Dir(cfg.Get(config.DataDir)))
	return err == nil
}

// runFacts is what the agent says of the host it reads: the live
// machine's facts, or a replayed snapshot's.
func runFacts(h platform.Host) *identity.HostFacts {
	if s, ok := h.(*snapshot.Host); ok {
		m := s.Manifest()
		return &identity.HostFacts{Hostname: m.Hostname, Goos: m.GOOS, Goarch: m.GOARCH, AgentVersion: version.Version, SerialNumber: serialNumber(h)}
	}
	return hostFacts()
}
