package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/internal/enrolltoken"
	"github.com/evident-dev/evident/internal/version"
	"github.com/evident-dev/evident/server"
	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/attest"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/ingest"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/web"
	"github.com/evident-dev/evident/server/webhook"
)

const usage = `evident-server: enrolls devices, stores their evidence, scores SOC 2 device controls.

Usage:
  evident-server run            serve enrollment and evidence (gRPC over mTLS)
  evident-server secret create  create an enrollment secret; prints the token agents enroll with
  evident-server report         print the fleet posture report (--json for machines)
  evident-server report period --from DATE --to DATE [--format text|json|csv|summary-csv|oscal]
                                the SOC 2 Type II period report: device-time compliant, exceptions, sample
  evident-server attest verify  verify a TPM2_Quote made with tpm2-tools (tpm2_quote)
  evident-server token create --role auditor|admin
                                a login token for the web UI and the read-only API (shown once)
  evident-server token revoke TOKEN_ID
                                revoke a token at once and end its web sessions
  evident-server export bundle --out FILE [--from T --to T]
                                a signed, hash-chained evidence bundle an auditor verifies offline
  evident-server verify BUNDLE  check a bundle offline: signature, file hashes, every device's hash chain
  evident-server policy check FILE
                                validate a control pack (CEL expressions, groups, grace) and show what it changes
  evident-server inventory import FILE.csv
                                the device inventory (MDM/HR/IdP export) period reports reconcile against
  evident-server waiver add|list|revoke
                                exceptions with reason, approver and expiry, shown in every period report
  evident-server device allow-tpm-change DEVICE
                                let a device's next enrollment change its TPM (EK) or attestation key (AK)
  evident-server device revoke|retire --reason TEXT DEVICE
                                cut a device's credentials at once (revoke: lost or stolen; retire: disposed of)
  evident-server device collect [--collectors a,b] DEVICE
                                ask a connected device to collect now; the new evidence arrives within seconds
  evident-server ca show | ca rotate [--overlap 720h]
                                the CAs trusted now; replace the CA, the new one trusted alongside during the overlap
  evident-server backup --out FILE
                                an online backup: the SQLite database (a consistent snapshot) and the CA
  evident-server restore --from FILE
                                restore a backup into --data-dir (the server stopped)
  evident-server version        print the version

Every command takes --data-dir (env EVIDENT_DATA_DIR, default /var/lib/evident-server).

The admin commands (secret create, token create|revoke, inventory import, waiver add|revoke,
device allow-tpm-change|revoke|retire|collect) go through the same admin service as the web UI: the same checks, and
one audit-log entry each, done or refused (ACTION.denied), that names who did it. The actor is
cli:USER@HOST (the OS user and host); with --as NAME it is cli:NAME (os user USER@HOST).

Run "evident-server COMMAND -h" for a command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stderr)
	case "secret":
		sub := map[string]func([]string, io.Writer, io.Writer) error{"create": cmdSecretCreate, "list": cmdSecretList, "revoke": cmdSecretRevoke}
		if len(args) < 2 || sub[args[1]] == nil {
			fmt.Fprintln(stderr, "usage: evident-server secret create [--label L] [--single-use] [--expires 720h]")
			fmt.Fprintln(stderr, "       evident-server secret list | secret revoke SECRET_ID")
			return 2
		}
		err = sub[args[1]](args[2:], stdout, stderr)
	case "report":
		if len(args) > 1 && args[1] == "period" {
			err = cmdReportPeriod(args[2:], stdout, stderr)
		} else {
			err = cmdReport(args[1:], stdout, stderr)
		}
	case "attest":
		if len(args) < 2 || args[1] != "verify" {
			fmt.Fprintln(stderr, "usage: evident-server attest verify --ak-pub FILE --msg FILE --sig FILE --pcrs FILE --nonce HEX [--pcr-list sha256:0,1,2,3,4,5,6,7]")
			return 2
		}
		err = cmdAttestVerify(args[2:], stdout, stderr)
	case "token":
		sub := map[string]func([]string, io.Writer, io.Writer) error{"create": cmdTokenCreate, "revoke": cmdTokenRevoke, "list": cmdTokenList}
		if len(args) < 2 || sub[args[1]] == nil {
			fmt.Fprintln(stderr, tokenCreateUsage)
			fmt.Fprintln(stderr, tokenRevokeUsage)
			return 2
		}
		err = sub[args[1]](args[2:], stdout, stderr)
	case "export":
		if len(args) < 2 || args[1] != "bundle" {
			fmt.Fprintln(stderr, "usage: evident-server export bundle --out FILE [--from T --to T] [--device ID]")
			return 2
		}
		err = cmdExportBundle(args[2:], stdout, stderr)
	case "verify":
		err = cmdVerify(args[1:], stdout, stderr)
	case "policy":
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprintln(stderr, "usage: evident-server policy check FILE")
			return 2
		}
		err = cmdPolicyCheck(args[2:], stdout, stderr)
	case "inventory":
		if len(args) < 2 || args[1] != "import" {
			fmt.Fprintln(stderr, "usage: evident-server inventory import [--source TEXT] FILE.csv")
			return 2
		}
		err = cmdInventoryImport(args[2:], stdout, stderr)
	case "waiver":
		sub := map[string]func([]string, io.Writer, io.Writer) error{"add": cmdWaiverAdd, "list": cmdWaiverList, "revoke": cmdWaiverRevoke}
		if len(args) < 2 || sub[args[1]] == nil {
			fmt.Fprintln(stderr, "usage: evident-server waiver add|list|revoke (see evident-server waiver add -h)")
			return 2
		}
		err = sub[args[1]](args[2:], stdout, stderr)
	case "device":
		sub := map[string]func([]string, io.Writer, io.Writer) error{"allow-tpm-change": cmdAllowTPMChange,
			"revoke":  func(a []string, o, e io.Writer) error { return cmdRevokeDevice(a, o, e, false) },
			"retire":  func(a []string, o, e io.Writer) error { return cmdRevokeDevice(a, o, e, true) },
			"collect": cmdCollect}
		if len(args) < 2 || sub[args[1]] == nil {
			fmt.Fprintln(stderr, "usage: evident-server device allow-tpm-change [--for 24h] DEVICE_ID")
			fmt.Fprintln(stderr, "       evident-server device revoke|retire --reason TEXT DEVICE_ID")
			fmt.Fprintln(stderr, "       evident-server device collect [--collectors a,b] DEVICE_ID")
			return 2
		}
		err = sub[args[1]](args[2:], stdout, stderr)
	case "ca":
		sub := map[string]func([]string, io.Writer, io.Writer) error{"rotate": cmdCARotate, "show": cmdCAShow}
		if len(args) < 2 || sub[args[1]] == nil {
			fmt.Fprintln(stderr, "usage: evident-server ca show | ca rotate [--overlap 720h]")
			return 2
		}
		err = sub[args[1]](args[2:], stdout, stderr)
	case "backup":
		err = cmdBackup(args[1:], stdout, stderr)
	case "restore":
		err = cmdRestore(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "evident-server", version.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cli.ExitCode("evident-server", err, stderr)
}

func defaultDataDir() string {
	if d := os.Getenv("EVIDENT_DATA_DIR"); d != "" {
		return d
	}
	return "/var/lib/evident-server"
}

// place is where a command finds the server's state: the data directory
// (CA, certificates, TPM trust) and the store.
type place struct {
	dir   string
	store string
}

func newFlags(name string, stderr io.Writer, help string) (*flag.FlagSet, *place) {
	fs := cli.NewFlagSet(name, stderr, help)
	p := &place{}
	fs.StringVar(&p.dir, "data-dir", defaultDataDir(), "server data directory: CA, certificates and the SQLite database (env EVIDENT_DATA_DIR)")
	fs.StringVar(&p.store, "store", os.Getenv("EVIDENT_STORE"), "the store: empty for SQLite under --data-dir (the default), sqlite:///PATH, or\npostgres://USER@HOST:PORT/DB for one database several server replicas share (env EVIDENT_STORE;\nprefer the environment or a ~/.pgpass file for a password: arguments are visible to other users)")
	return fs, p
}

func dbPath(dir string) string { return server.DBPath(dir) }

// open opens the store, creating and migrating it (run, and the commands
// that write to it).
func (p *place) open() (store.Store, error) { return server.OpenStore(p.store, p.dir, false) }

// openExisting opens a store that must already exist (commands other than
// run never create it), read-only or not.
func openExisting(p *place, readOnly bool) (store.Store, error) {
	kind, path, err := server.ParseStoreSpec(p.store, p.dir)
	if err != nil {
		return nil, err
	}
	if kind == "sqlite" {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no database at %s: start `evident-server run --data-dir %s` first", path, p.dir)
		}
	}
	return server.OpenStore(p.store, p.dir, readOnly)
}

func loadPolicy(path string) (*controls.Policy, error) {
	if path == "" {
		return controls.Default(), nil
	}
	return controls.Load(path)
}

func cmdRun(args []string, stderr io.Writer) error {
	fs, dir := newFlags("run", stderr, "evident-server run: serve enrollment and evidence over gRPC with mutual TLS.")
	listen := fs.String("listen", ":8443", "address to listen on (host:port; port 0 picks a free port, written to DATA_DIR/listen.addr)")
	sans := fs.String("san", "", "extra comma-separated DNS names or IPs agents use to reach this server (localhost, 127.0.0.1, ::1 and the hostname are always included)")
	policyPath := fs.String("policy", "", "control pack JSON file (default: the built-in SOC 2 device pack)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text, or json (one JSON object a line, for a SIEM)")
	webCert := fs.String("web-cert", "", "the organisation's certificate for the web UI (PEM, with its chain), so browsers trust it;\nread again when it changes (a renewal needs no restart). Needs --web-key. Without them a web UI off\nloopback serves the server's own certificate, from Evident's private CA")
	webKey := fs.String("web-key", "", "the private key of --web-cert (PEM)")
	rescore := fs.Duration("rescore-interval", 5*time.Minute, "how often every device is re-evaluated with the server clock, so silent devices go stale")
	ekRoots := fs.String("ek-roots", "", "directory of TPM manufacturer root and intermediate CA certificates (PEM or DER) that EK certificates\nmust chain to (default: DATA_DIR/ek-roots when it exists; without roots or an allowlist TPM enrollments are refused)")
	ekAllow := fs.String("ek-allowlist", "", "file of allowed EK public key SHA-256 hashes, one hex per line, for TPMs without a trusted EK certificate\n(default: DATA_DIR/ek-allowlist when it exists)")
	attestEvery := fs.Duration("attest-interval", ingest.DefaultAttestEvery, "how often a connected TPM device is asked for a fresh quote (it is also asked on every connect)")
	nonceTTL := fs.Duration("nonce-ttl", ingest.DefaultNonceTTL, "how long an attestation nonce stays valid")
	maxInFlight := fs.Int("max-in-flight", ingest.DefaultMaxInFlight, "reports stored and scored at once; more wait their turn")
	queueWait := fs.Duration("queue-wait", ingest.DefaultQueueWait, "how long a report may wait for its turn before it is refused as overloaded\n(a retryable status: the agent keeps the report and resends it after a backoff)")
	busyRetry := fs.Duration("busy-retry", ingest.DefaultBusyRetry, "how long an agent refused as overloaded is asked to pause before it resends on the same stream\n(plus up to half as much again, so a fleet does not return in step; agents older than Busy reconnect instead)")
	webListen := fs.String("web-listen", "", "serve the web UI and read-only API on this address (empty: off). On a loopback address\n(127.0.0.1:8080) it is plain HTTP; anywhere else HTTPS with the server certificate. Log in with a token\nfrom `evident-server token create`.")
	retain := controls.Duration{Duration: server.DefaultRetainRaw}
	fs.Var(&durationFlag{&retain}, "retain-raw", "how long observations' content and attestations' raw messages are kept (\"400d\", \"9600h\"; 0 keeps\nthem forever). Older ones keep their row, times, status and chain hash, so reports, intervals and bundles\nstill verify; each collector's latest observation is kept whole")
	quotaObs := fs.Int("quota-observations", ingest.DefaultQuotaObservations, "observations one device may send in an hour; a report over it is refused (retryable) and audited once an hour")
	quotaBytes := fs.Int("quota-bytes", ingest.DefaultQuotaBytes, "bytes of reports one device may send in an hour")
	perSource := fs.Int("handshakes-per-source", ingest.DefaultHalfOpenPerSource, "connections one source address may have in their TLS handshake at once; more are closed at once\n(raise it for many agents behind one NAT address; each handshake is cut after 10 s)")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics (/metrics), /healthz and /readyz on this address, e.g. :9464 (empty: off)")
	debugListen := fs.String("debug-listen", "", "serve Go runtime profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060 (empty: off)")
	configPath := fs.String("config", "", "read settings from this YAML file (the packages install /etc/evident/server.yaml): any flag\nabove by name, plus webhooks, thresholds, public_url (docs/webhooks.md) and oidc (docs/server.md).\nA flag on the command line wins over the file")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	var webhooks *webhook.Config
	var sso *web.OIDCConfig
	if *configPath != "" {
		// A bad file exits 78 (EX_CONFIG): the unit does not restart it.
		rf, err := readRunFile(*configPath, fs)
		if err != nil {
			return cli.WithCode(78, err)
		}
		if err := rf.apply(fs); err != nil {
			return cli.WithCode(78, err)
		}
		webhooks, sso = rf.webhooks, rf.oidc
	}
	if *rescore <= 0 || *attestEvery <= 0 || *nonceTTL <= 0 {
		return errors.New("--rescore-interval, --attest-interval and --nonce-ttl must be positive")
	}
	if *maxInFlight < 1 || *maxInFlight > 4096 || *queueWait <= 0 || *busyRetry <= 0 || *busyRetry > ingest.MaxBusyRetry {
		return fmt.Errorf("--max-in-flight must be from 1 to 4096, --queue-wait positive and --busy-retry positive, at most %s", ingest.MaxBusyRetry)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	if *logFormat != "text" && *logFormat != "json" {
		return fmt.Errorf("--log-format %q: want text or json", *logFormat)
	}
	log := slog.New(cli.LogHandler(stderr, *logFormat, lvl))
	policy, err := loadPolicy(*policyPath)
	if err != nil {
		return err
	}
	var names []string
	for _, s := range strings.Split(*sans, ",") {
		if s = strings.TrimSpace(s); s != "" {
			names = append(names, s)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, server.Config{DataDir: dir.dir, Store: dir.store, Listen: *listen, SANs: names, Policy: policy, Log: log,
		RescoreEvery: *rescore, EKRoots: *ekRoots, EKAllowlist: *ekAllow, AttestEvery: *attestEvery, NonceTTL: *nonceTTL,
		WebListen: *webListen, WebCert: *webCert, WebKey: *webKey, MaxInFlight: *maxInFlight, QueueWait: *queueWait, BusyRetry: *busyRetry, DebugListen: *debugListen, MetricsListen: *metricsListen, RetainRaw: retain.Duration, HandshakesPerSource: *perSource,
		QuotaObservations: *quotaObs, QuotaBytes: *quotaBytes, Webhooks: webhooks, OIDC: sso})
}

func cmdSecretCreate(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("secret create", stderr, "evident-server secret create: make an enrollment secret and print the token\n(evt1.<secret>.<CA SHA-256>) that agents pass to `evident-agent enroll --token`.\nOnly its hash is stored: the token is shown once. Audited (secret.create).")
	label := fs.String("label", "", "a note to recognise this secret by (e.g. \"jamf-2026\")")
	single := fs.Bool("single-use", false, "the secret enrolls one device only")
	expires := fs.Duration("expires", 0, "the secret stops working after this long (e.g. 720h; 0 = never)")
	as := asFlag(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	actor, err := cliActor(*as, stderr)
	if err != nil {
		return err
	}
	ca, err := pki.LoadOrCreateWithClock(filepath.Join(dir.dir, "pki"), clock.Now)
	if err != nil {
		return err
	}
	st, err := dir.open()
	if err != nil {
		return err
	}
	defer st.Close()
	svc := adminService(st)
	secret, rec, err := svc.CreateEnrollSecret(context.Background(), actor, admin.SecretRequest{Label: *label, SingleUse: *single, TTL: *expires})
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintln(stdout, enrolltoken.Token{Secret: secret, CAPin: ca.Fingerprint()}.String())
	fmt.Fprintf(stderr, "created enrollment secret %s; the token above is shown once\n", rec.ID)
	return err
}

func cmdReport(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("report", stderr, "evident-server report: print each device's posture against the control pack, as the server\nlast evaluated it (the recorded control intervals, the same the web pages and period reports\nread), with the evidence that decided each control and its SOC 2 criteria. Reads the\ndatabase read-only, so it is safe while the server runs.")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	device := fs.String("device", "", "only this device (id or hostname)")
	policyPath := fs.String("policy", "", "control pack JSON file the server runs with: its controls, titles and groups (default: the built-in pack); statuses are the recorded ones")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	policy, err := loadPolicy(*policyPath)
	if err != nil {
		return err
	}
	st, err := openExisting(dir, true)
	if err != nil {
		return err
	}
	defer st.Close()
	f, err := report.Build(context.Background(), st, policy, report.Options{Device: *device, Now: clock.Now()})
	if err != nil {
		return err
	}
	if *asJSON {
		return report.WriteJSON(stdout, f)
	}
	return report.WriteText(stdout, f)
}

func cmdAttestVerify(args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlags("attest verify", stderr, "evident-server attest verify: verify a TPM2_Quote in the formats tpm2-tools 5.x writes\n"+
		"(tpm2_createak -f pem -u ak.pem; tpm2_quote -m quote.msg -s quote.sig -o quote.pcrs).\n"+
		"Exits 0 and prints \"quote verified: ...\" when the signature, nonce, PCR selection and\n"+
		"PCR digest all check out; exits 1 with the reason otherwise. --data-dir is not used.")
	akPath := fs.String("ak-pub", "", "AK public key, PEM (tpm2_createak -f pem -u FILE)")
	msgPath := fs.String("msg", "", "quoted TPMS_ATTEST (tpm2_quote -m FILE)")
	sigPath := fs.String("sig", "", "TPMT_SIGNATURE (tpm2_quote -s FILE)")
	pcrsPath := fs.String("pcrs", "", "PCR values (tpm2_quote -o FILE, default serialized format)")
	nonceHex := fs.String("nonce", "", fmt.Sprintf("nonce the quote must carry as extraData, hex, at least %d bytes (tpm2_quote -q)", attest.MinNonceLen))
	pcrList := fs.String("pcr-list", attest.DefaultSelection.String(), "PCR selection the quote must cover exactly (tpm2-tools syntax, banks joined by +)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	for _, f := range []struct{ name, val string }{{"ak-pub", *akPath}, {"msg", *msgPath}, {"sig", *sigPath}, {"pcrs", *pcrsPath}, {"nonce", *nonceHex}} {
		if f.val == "" {
			fmt.Fprintf(stderr, "--%s is required\n", f.name)
			return cli.ErrUsage
		}
	}
	want, err := attest.ParseSelection(*pcrList)
	if err != nil {
		return fmt.Errorf("--pcr-list: %w", err)
	}
	nonce, err := attest.ParseNonce(*nonceHex)
	if err != nil {
		return fmt.Errorf("--nonce: %w", err)
	}
	read := func(flagName, path string) ([]byte, error) {
		b, err := attest.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagName, err)
		}
		return b, nil
	}
	akPEM, err := read("ak-pub", *akPath)
	if err != nil {
		return err
	}
	ak, err := attest.ParseAKPublic(akPEM)
	if err != nil {
		return fmt.Errorf("--ak-pub %s: %w", *akPath, err)
	}
	msg, err := read("msg", *msgPath)
	if err != nil {
		return err
	}
	sig, err := read("sig", *sigPath)
	if err != nil {
		return err
	}
	pcrsFile, err := read("pcrs", *pcrsPath)
	if err != nil {
		return err
	}
	pcrs, _, err := attest.ParsePCRFile(pcrsFile)
	if err != nil {
		return fmt.Errorf("--pcrs %s: %w", *pcrsPath, err)
	}
	res, err := attest.VerifyQuote(ak, msg, sig, pcrs, nonce, want)
	if err != nil {
		return fmt.Errorf("quote rejected: %w", err)
	}
	fmt.Fprintln(stdout, "quote verified:", res)
	return nil
}

func cmdAllowTPMChange(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("device allow-tpm-change", stderr, "evident-server device allow-tpm-change DEVICE_ID: let this device's next enrollment change its TPM\n(EK: new mainboard or TPM cleared) or attestation key (AK: agent reinstalled). Without it such\nan enrollment is refused, so a stolen enrollment token cannot take over a known device's identity.\nAudited (tpm-change).")
	valid := fs.Duration("for", 24*time.Hour, "how long the permission lasts (at most 168h); it is used up by one enrollment")
	as := asFlag(fs)
	// The id may come before or after the flags.
	id, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintln(stderr, "usage: evident-server device allow-tpm-change [--for 24h] [--as NAME] DEVICE_ID")
		return cli.ErrUsage
	}
	svc, actor, done, err := adminCLI(dir, *as, stderr)
	if err != nil {
		return err
	}
	defer done()
	until, err := svc.AllowTPMChange(context.Background(), actor, id, *valid)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintf(stdout, "device %s may change its TPM or attestation key at its next enrollment until %s\n", id, until.Format(time.RFC3339))
	return err
}

func cmdRevokeDevice(args []string, stdout, stderr io.Writer, retire bool) error {
	name, what := "device revoke", "revoke a lost or stolen device's credentials"
	if retire {
		name, what = "device retire", "retire a device that left the fleet (disposed of, returned)"
	}
	fs, dir := newFlags(name, stderr, "evident-server "+name+" --reason TEXT DEVICE_ID: "+what+".\n"+
		"Its open evidence streams are closed within seconds on every server replica, and it can no longer\n"+
		"connect, renew its certificate or enroll again with its key. Its evidence stays, marked from this\n"+
		"moment. A device that should report again enrolls anew with a new enrollment secret.\n"+
		"Audited ("+strings.ReplaceAll(name, " ", ".")+").")
	reason := fs.String("reason", "", "why (required): shown to the device, in the audit log and in reports")
	as := asFlag(fs)
	id, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintf(stderr, "usage: evident-server %s --reason TEXT [--as NAME] DEVICE_ID\n", name)
		return cli.ErrUsage
	}
	svc, actor, done, err := adminCLI(dir, *as, stderr)
	if err != nil {
		return err
	}
	defer done()
	err = svc.RevokeDevice(context.Background(), actor, id, *reason, retire)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	verb := "revoked"
	if retire {
		verb = "retired"
	}
	fmt.Fprintf(stdout, "device %s %s: its streams close within %s on every server replica\n", id, verb, ingest.DefaultCredentialCheck)
	return err
}

func cmdBackup(args []string, stdout, stderr io.Writer) error {
	fs, p := newFlags("backup", stderr, "evident-server backup --out FILE: write a backup of this server while it runs: a gzipped tar of\n"+
		"the SQLite database (a consistent snapshot of the last commit, SQLite's VACUUM INTO) and the pki\n"+
		"directory (the CA, whose key it holds: keep the file like the key; created 0600). With a PostgreSQL\n"+
		"store it holds the pki directory only: back the database up with pg_dump (docs/deploy.md).")
	out := fs.String("out", "", "backup file to write (required; must not exist)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stderr, "--out is required")
		return cli.ErrUsage
	}
	m, err := server.Backup(context.Background(), p.store, p.dir, *out, clock.Now())
	if err != nil {
		return err
	}
	what := "the SQLite database (schema " + fmt.Sprint(m.SchemaVersion) + ") and the CA"
	if m.Store != "sqlite" {
		what = "the CA only: back the PostgreSQL database up with pg_dump"
	}
	fmt.Fprintf(stdout, "backup written to %s: %s, %s\n", *out, what, m.CreatedAt.Format(time.RFC3339))
	return nil
}

func cmdRestore(args []string, stdout, stderr io.Writer) error {
	fs, p := newFlags("restore", stderr, "evident-server restore --from FILE: restore a backup into --data-dir. Every file is checked (the\n"+
		"manifest's SHA-256s, SQLite's integrity check) before anything is written. It refuses to replace an\n"+
		"existing database or another CA unless --force; stop the server first.")
	from := fs.String("from", "", "backup file (required)")
	force := fs.Bool("force", false, "replace an existing database and CA (the server must be stopped)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *from == "" {
		fmt.Fprintln(stderr, "--from is required")
		return cli.ErrUsage
	}
	m, err := server.Restore(context.Background(), p.store, *from, p.dir, *force)
	if err != nil {
		return err
	}
	what := "the database and the CA"
	if m.Store != "sqlite" {
		what = "the CA (restore the PostgreSQL database with pg_restore)"
	}
	fmt.Fprintf(stdout, "restored %s from the backup of %s into %s\n", what, m.CreatedAt.Format(time.RFC3339), p.dir)
	return nil
}

func cmdCollect(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("device collect", stderr, "evident-server device collect DEVICE_ID: ask the device to run its collectors now. The server\n"+
		"replica holding its stream sends the request within a second; the observations arrive as soon as the\n"+
		"agent has collected (evident-server report --device ID shows them). A device that is not connected\n"+
		"gets it when it connects within 10 minutes. Audited (device.collect).")
	only := fs.String("collectors", "", "comma-separated collectors to run (default: all)")
	as := asFlag(fs)
	id, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintln(stderr, "usage: evident-server device collect [--collectors a,b] [--as NAME] DEVICE_ID")
		return cli.ErrUsage
	}
	var names []string
	for _, c := range strings.Split(*only, ",") {
		if c = strings.TrimSpace(c); c != "" {
			names = append(names, c)
		}
	}
	svc, actor, done, err := adminCLI(dir, *as, stderr)
	if err != nil {
		return err
	}
	defer done()
	req, err := svc.RequestCollection(context.Background(), actor, id, names)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintf(stdout, "collect-now request %d for device %s recorded; the server sends it within %s while the device is connected\n", req, id, ingest.DefaultCommandCheck)
	return err
}

func cmdCARotate(args []string, stdout, stderr io.Writer) error {
	fs, p := newFlags("ca rotate", stderr, "evident-server ca rotate: start a CA rollover. A new CA is created and trusted at once beside the\n"+
		"current one: running servers push the two-CA bundle to every agent within seconds. After --overlap the\n"+
		"new CA takes over (the server's certificate and every device certificate from then on), and the old one\n"+
		"stays trusted until the last device certificate it issued has expired (90 days and a day later).\n"+
		"An agent offline for the whole overlap must be enrolled again, and enrollment tokens made before the\n"+
		"takeover pin the old CA: create new ones then (secret create). With several replicas, run it on one and\n"+
		"copy its pki directory's ca-next.* and rollover.json to the others before the takeover.")
	overlap := fs.Duration("overlap", 30*24*time.Hour, "how long both CAs are trusted before the new one takes over")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	c, r, err := pki.Rotate(filepath.Join(p.dir, "pki"), clock.Now(), *overlap)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "new CA %s (SHA-256 %s) trusted from now; it takes over at %s\n", c.Subject.CommonName, pki.Fingerprint(c.Raw), r.ActivateAt.Format(time.RFC3339))
	fmt.Fprintf(stdout, "after that, create new enrollment tokens (evident-server secret create): they pin the new CA\n")
	return nil
}

func cmdCAShow(args []string, stdout, stderr io.Writer) error {
	fs, p := newFlags("ca show", stderr, "evident-server ca show: the CAs this server trusts and the rollover in progress.")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	ca, err := pki.LoadOrCreateWithClock(filepath.Join(p.dir, "pki"), clock.Now)
	if err != nil {
		return err
	}
	for i, c := range ca.Trusted() {
		role := "issuing"
		if i > 0 && !ca.Rollover.ActivateAt.IsZero() {
			role = "next, takes over " + ca.Rollover.ActivateAt.Format(time.RFC3339)
		} else if i > 0 {
			role = "previous, trusted until " + ca.Rollover.RetireAt.Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%s  %s  valid to %s  (%s)\n", pki.Fingerprint(c.Raw), c.Subject.CommonName, c.NotAfter.Format(time.DateOnly), role)
	}
	return nil
}

// fmtWhen is a table cell for an optional time.
func fmtWhen(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}

func cmdSecretList(args []string, stdout, stderr io.Writer) error {
	return listTable(args, stdout, stderr, "secret list", "evident-server secret list: every enrollment secret (only their hashes are kept: a secret is shown\nonce, by secret create), with its uses, expiry and revocation. Read-only.",
		"ID\tLABEL\tCREATED\tUSES\tSINGLE-USE\tEXPIRES\tREVOKED", func(st store.Store) ([]string, error) {
			secrets, err := st.EnrollSecrets(context.Background())
			var rows []string
			for _, e := range secrets {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%d\t%v\t%s\t%s", e.ID, e.Label, e.CreatedAt.Format(time.RFC3339), e.Uses, e.SingleUse, fmtWhen(e.ExpiresAt, "never"), fmtWhen(e.RevokedAt, "-")))
			}
			return rows, err
		})
}

// listTable prints a read-only listing as an aligned table.
func listTable(args []string, stdout, stderr io.Writer, name, help, header string, rows func(store.Store) ([]string, error)) error {
	fs, p := newFlags(name, stderr, help)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	st, err := openExisting(p, true)
	if err != nil {
		return err
	}
	defer st.Close()
	lines, err := rows(st)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, l := range lines {
		fmt.Fprintln(tw, l)
	}
	return tw.Flush()
}

func cmdSecretRevoke(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("secret revoke", stderr, "evident-server secret revoke SECRET_ID: revoke an enrollment secret at once (an MDM token that leaked):\nno device enrolls with it from then on; the devices it enrolled keep their identity. Audited (secret.revoke).")
	as := asFlag(fs)
	id, err := cli.ParseOne(fs, args)
	if err != nil {
		return err
	}
	if id == "" {
		fmt.Fprintln(stderr, "usage: evident-server secret revoke [--as NAME] SECRET_ID")
		return cli.ErrUsage
	}
	svc, actor, done, err := adminCLI(dir, *as, stderr)
	if err != nil {
		return err
	}
	defer done()
	err = svc.RevokeSecret(context.Background(), actor, id)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		return err
	}
	fmt.Fprintf(stdout, "enrollment secret %s revoked: it enrolls no device from now on\n", id)
	return err
}

func cmdTokenList(args []string, stdout, stderr io.Writer) error {
	return listTable(args, stdout, stderr, "token list", "evident-server token list: every web/API token (only their hashes are kept), with its role,\nexpiry and revocation. Read-only.",
		"ID\tROLE\tLABEL\tCREATED\tEXPIRES\tREVOKED", func(st store.Store) ([]string, error) {
			tokens, err := st.Tokens(context.Background())
			var rows []string
			for _, t := range tokens {
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", t.ID, t.Role, t.Label, t.CreatedAt.Format(time.RFC3339), fmtWhen(t.ExpiresAt, "never"), fmtWhen(t.RevokedAt, "-")))
			}
			return rows, err
		})
}
