package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/shirou/gopsutil/v4/host"

	gattest "github.com/google/go-attestation/attest"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/agent/statusapi"
	"github.com/evident-dev/evident/agent/tpm"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/snapshot"
)

const usage = `evident-agent: collects device-compliance evidence and streams it to evident-server.

Usage:
  evident-agent collect [--json]        run every collector once and print what it found (no server needed)
  evident-agent enroll --server HOST:PORT --token TOKEN
                                        enroll this device (the token comes from "evident-server secret create")
  evident-agent run [--once]            run the daemon; --once collects, delivers, and exits 0 when the
                                        server has acknowledged everything (for MDM scripts)
  evident-agent status [--json]         ask the running agent for its state
  evident-agent tpm [--tpm SPEC]        show this device's TPM endorsement key hash and certificate issuer
                                        (what the server's --ek-allowlist or --ek-roots must hold)
  evident-agent snapshot --out DIR      record what the collectors read on this host (a support bundle;
                                        no secrets); replay it anywhere with --host-snapshot DIR
  evident-agent version

Settings come from flags, then the environment: EVIDENT_DATA_DIR, EVIDENT_SERVER, EVIDENT_ENROLL_TOKEN,
EVIDENT_TPM, EVIDENT_TPM_EVENT_LOG.
Run "evident-agent COMMAND -h" for a command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "collect":
		err = cmdCollect(args[1:], stdout, stderr)
	case "tpm":
		err = cmdTPM(args[1:], stdout, stderr)
	case "enroll":
		err = cmdEnroll(args[1:], stdout, stderr)
	case "run":
		err = cmdRun(args[1:], stderr)
	case "status":
		err = cmdStatus(args[1:], stdout, stderr)
	case "snapshot":
		err = cmdSnapshot(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "evident-agent", version.Version, runtime.GOOS+"/"+runtime.GOARCH)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cli.ExitCode("evident-agent", err, stderr)
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func newFlags(name string, stderr io.Writer, help string) (*flag.FlagSet, *string) {
	fs := cli.NewFlagSet(name, stderr, help)
	dir := fs.String("data-dir", env("EVIDENT_DATA_DIR", platform.DefaultAgentDataDir()), "agent data directory: identity, outbox, status socket (env EVIDENT_DATA_DIR)")
	return fs, dir
}

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

func logger(w io.Writer, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}

func cmdCollect(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("collect", stderr, "evident-agent collect: run every collector once on this machine and print the results.\nNothing is stored or sent.")
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
	return f
}

func cmdEnroll(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("enroll", stderr, "evident-agent enroll: enroll this device with evident-server. The token (from\n`evident-server secret create`) carries the enrollment secret and the server CA's pin,\nso the first connection is verified too.")
	server := fs.String("server", os.Getenv("EVIDENT_SERVER"), "server address HOST:PORT (env EVIDENT_SERVER)")
	token := fs.String("token", "", "enrollment token evt1.… (env EVIDENT_ENROLL_TOKEN; prefer the environment: flags show in ps)")
	force := fs.Bool("force", false, "enroll again even if this data directory is already enrolled")
	snap := fs.String("host-snapshot", "", "enroll as the host recorded in this snapshot (hostname, OS, architecture), for a lab device that will `run --host-snapshot` it")
	machineID := fs.String("machine-id", os.Getenv("EVIDENT_MACHINE_ID"), "hardware identity the server uses to link a re-imaged device to its earlier record\n(default: the SMBIOS UUID or machine id; set it for cloned VMs that share one; env EVIDENT_MACHINE_ID)")
	tpmSpec := fs.String("tpm", envOr("EVIDENT_TPM", agent.TPMAuto), "TPM to bind this device's identity to: auto (the platform TPM if there is one), none,\na device path (/dev/tpmrm0), swtpm:HOST:PORT or unix:PATH (an swtpm emulator; env EVIDENT_TPM)")
	eventLog := fs.String("tpm-event-log", os.Getenv("EVIDENT_TPM_EVENT_LOG"), "TCG firmware event log to send with quotes (default: the platform's,\n/sys/kernel/security/tpm0/binary_bios_measurements on Linux; env EVIDENT_TPM_EVENT_LOG)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("EVIDENT_ENROLL_TOKEN")
	}
	if *server == "" || *token == "" {
		fmt.Fprintln(stderr, "enroll needs --server and --token (or EVIDENT_SERVER and EVIDENT_ENROLL_TOKEN)")
		return cli.ErrUsage
	}
	idDir := identity.Dir(*dir)
	if id, err := identity.Load(idDir); err == nil && !*force {
		fmt.Fprintf(stdout, "already enrolled as %s with %s (use --force to enroll again)\n", id.DeviceID, id.Server)
		return nil
	}
	facts := hostFacts()
	if *snap != "" {
		h, err := snapshot.Open(*snap)
		if err != nil {
			return err
		}
		m := h.Manifest()
		facts = &identity.HostFacts{Hostname: m.Hostname, Goos: m.GOOS, Goarch: m.GOARCH, AgentVersion: version.Version}
	}
	if *machineID != "" {
		facts.MachineId = *machineID
	}
	if err := os.MkdirAll(idDir, 0o700); err != nil {
		return err
	}
	sess, err := agent.OpenTPM(*tpmSpec, *eventLog, identity.AKPath(idDir))
	if err != nil {
		return fmt.Errorf("TPM %q: %w (use --tpm none to enroll without a TPM)", *tpmSpec, err)
	}
	opts := identity.EnrollOptions{TPMEventLog: *eventLog}
	if sess != nil {
		defer sess.Close()
		opts.TPM, opts.TPMSpec = sess, sess.Spec
	}
	id, err := identity.Enroll(context.Background(), idDir, *server, *token, facts, opts)
	if err != nil {
		return err
	}
	bound := "without a TPM"
	if id.TPM != "" {
		bound = "bound to TPM " + id.TPM
	}
	fmt.Fprintf(stdout, "enrolled as %s with %s, %s\n", id.DeviceID, id.Server, bound)
	return nil
}

func cmdRun(args []string, stderr io.Writer) error {
	fs, dir := newFlags("run", stderr, "evident-agent run: collect on a schedule, keep observations in the outbox, and stream them\nto the server. Stops cleanly on SIGINT/SIGTERM; anything unacknowledged is resent on the next start.")
	server := fs.String("server", os.Getenv("EVIDENT_SERVER"), "server address HOST:PORT, overriding the one recorded at enrollment (env EVIDENT_SERVER)")
	once := fs.Bool("once", false, "collect once, deliver, exit 0 when the server has acknowledged everything")
	onceTimeout := fs.Duration("once-timeout", 2*time.Minute, "with --once: give up (exit 1) after this long")
	interval := fs.Duration("interval", agent.DefaultInterval, "time between collection cycles (±10% jitter)")
	only := collectorsFlag(fs)
	snap := snapshotFlag(fs)
	timeout := fs.Duration("collector-timeout", agent.DefaultCollectorTimeout, "per-collector timeout")
	maxBytes := fs.Int64("outbox-max-bytes", agent.DefaultOutboxMaxBytes, "outbox size bound; when full the oldest unsent observations are dropped and the drop is reported")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	tpmSpec := fs.String("tpm", os.Getenv("EVIDENT_TPM"), "TPM to quote with, overriding the one recorded at enrollment (env EVIDENT_TPM)")
	eventLog := fs.String("tpm-event-log", os.Getenv("EVIDENT_TPM_EVENT_LOG"), "TCG event log to send with quotes, overriding the one recorded at enrollment (env EVIDENT_TPM_EVENT_LOG)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *interval <= 0 || *onceTimeout <= 0 || *timeout <= 0 {
		return errors.New("--interval, --once-timeout and --collector-timeout must be positive")
	}
	log, err := logger(stderr, *logLevel)
	if err != nil {
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
	a, err := agent.Open(agent.Config{DataDir: *dir, Server: *server, Interval: *interval, CollectorTimeout: *timeout,
		OutboxMaxBytes: *maxBytes, Version: version.Version, Log: log, Registry: reg, Host: h, TPM: *tpmSpec, TPMEventLog: *eventLog})
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx, *once, *onceTimeout)
}

func cmdSnapshot(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("snapshot", stderr, "evident-agent snapshot: run every collector once and record what they read (files, commands and\ntheir outputs, WMI queries, registry values) into a directory: a support bundle to attach when a result\nlooks wrong, and a fixture that `collect --host-snapshot DIR` replays on any OS. Key material and home\ndirectories are never recorded.")
	out := fs.String("out", "", "directory to write (must not exist or be empty)")
	only := collectorsFlag(fs)
	timeout := fs.Duration("timeout", agent.DefaultCollectorTimeout, "per-collector timeout")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "snapshot needs --out DIR")
		return cli.ErrUsage
	}
	reg, err := registry(*only)
	if err != nil {
		return err
	}
	rec := snapshot.NewRecorder(platform.NewLive())
	obs := agent.Collect(context.Background(), agent.Config{Registry: reg, CollectorTimeout: *timeout, Host: rec})
	hostname, _ := os.Hostname()
	m, err := rec.Write(*out, hostname, version.Version, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "snapshot of %s (%s/%s) written to %s: %d observations; %d commands, %d WMI queries, %d registry values recorded\n",
		m.Hostname, m.GOOS, m.GOARCH, *out, len(obs), len(m.Commands), len(m.WMI), len(m.Registry))
	return nil
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("status", stderr, "evident-agent status: ask the running agent (over its local socket) for its state:\nlast collection, outbox depth, last ack, connection errors.")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	b, err := statusapi.Get(context.Background(), statusapi.SocketPath(*dir))
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(b)
		return err
	}
	var st agent.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	conn := "disconnected"
	if st.Uplink.Connected {
		conn = "connected"
	}
	rows := [][2]string{
		{"device", st.DeviceID},
		{"server", st.Server + " (" + conn + ")"},
		{"version", st.Version},
		{"running since", st.StartedAt.Format(time.RFC3339)},
		{"last collection", fmt.Sprintf("%s (%d cycles, every %s)", st.LastCycleAt.Format(time.RFC3339), st.Cycles, st.Interval)},
		{"outbox", fmt.Sprintf("%d pending (%d bytes), next seq %d, dropped %d", st.Outbox.Depth, st.Outbox.Bytes, st.Outbox.NextSeq, st.Outbox.Dropped)},
		{"last ack", fmt.Sprintf("seq %d at %s", st.Uplink.LastAckSeq, st.Uplink.LastAckAt.Format(time.RFC3339))},
		{"certificate expires", st.CertExpires.Format(time.RFC3339)},
	}
	if st.TPM != "" {
		att := "none yet"
		if !st.LastAttestationAt.IsZero() {
			att = "refused"
			if st.LastAttestationOK {
				att = "verified"
			}
			att += " at " + st.LastAttestationAt.Format(time.RFC3339)
		}
		rows = append(rows, [2]string{"TPM", st.TPM}, [2]string{"last attestation", att})
	}
	if st.Uplink.LastError != "" {
		rows = append(rows, [2]string{"last error", st.Uplink.LastError + " at " + st.Uplink.LastErrorAt.Format(time.RFC3339)})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

// envOr returns the environment variable's value, or def when unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func cmdTPM(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("tpm", stderr, "evident-agent tpm: show the TPM this device would enroll with: its endorsement key's SHA-256 (what\n`evident-server run --ek-allowlist` lists) and its EK certificate's subject and issuer (what --ek-roots must chain to).")
	spec := fs.String("tpm", envOr("EVIDENT_TPM", ""), "TPM: empty for the platform TPM, a device path, swtpm:HOST:PORT or unix:PATH (env EVIDENT_TPM)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	dev, err := tpm.Open(*spec, "")
	if err != nil {
		return err
	}
	defer dev.Close()
	pub, certDER, err := dev.EK()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(pub)
	fmt.Fprintf(stdout, "ek_sha256: %x\n", sum)
	if certDER == nil {
		fmt.Fprintln(stdout, "ek_certificate: none (the server must allowlist this EK)")
		return nil
	}
	cert, err := gattest.ParseEKCertificate(certDER)
	if err != nil {
		fmt.Fprintf(stdout, "ek_certificate: unreadable: %v\n", err)
		return nil
	}
	fmt.Fprintf(stdout, "ek_certificate_subject: %s\nek_certificate_issuer: %s\nek_certificate_serial: %s\n", cert.Subject, cert.Issuer, cert.SerialNumber)
	return nil
}
