// Package agent wires the Evident agent together: the scheduler that runs
// collectors, the bbolt outbox that keeps their observations durably, the
// uplink that streams them to the server, and the local status endpoint.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/agent/statusapi"
	"github.com/evident-dev/evident/agent/uplink"
	"github.com/evident-dev/evident/collectors"
	wall "github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/platform"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Config is the agent's configuration after flags and environment.
type Config struct {
	DataDir string
	// Server overrides the server addresses recorded at enrollment (a
	// server that moved, replicas added): HOST:PORT, or several
	// comma-separated. Empty keeps them.
	Server           string
	Interval         time.Duration // between collection cycles; jittered ±10%
	CollectorTimeout time.Duration // per collector
	OutboxMaxBytes   int64
	Version          string
	// Facts is what the agent says of its host in each Hello.
	Facts    *evidentv1.HostFacts
	Log      *slog.Logger
	Host     platform.Host
	Registry *collectors.Registry
	// TPM and TPMEventLog override the TPM recorded at enrollment (a TPM
	// spec as tpm.Open takes, and an event log path).
	TPM         string
	TPMEventLog string
	// HungCollectorLimit is how long a collector run may stay stuck (its
	// goroutine not returned, counted from its start) before Run fails with
	// ErrCollectorHung, so the service manager restarts the agent with a
	// fresh process. Never below CollectorTimeout. Default 15 minutes.
	HungCollectorLimit time.Duration
	// CycleLimit is how long one collection cycle (collect and outbox
	// write) may take before Run fails with ErrCycleHung. Default twice
	// CollectorTimeout plus a minute.
	CycleLimit time.Duration
	// MetricsListen serves Prometheus metrics, /healthz and /readyz on
	// this loopback address when set (port 0 picks one, written to
	// DATA_DIR/metrics.url).
	MetricsListen string
}

// Defaults.
const (
	DefaultInterval         = time.Hour
	DefaultCollectorTimeout = time.Minute
	DefaultOutboxMaxBytes   = 64 << 20
	// DefaultHungCollectorLimit is Config.HungCollectorLimit's default.
	DefaultHungCollectorLimit = 15 * time.Minute
)

func (c *Config) fill() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.CollectorTimeout <= 0 {
		c.CollectorTimeout = DefaultCollectorTimeout
	}
	if c.HungCollectorLimit <= 0 {
		c.HungCollectorLimit = DefaultHungCollectorLimit
	}
	// A run is abandoned only at its timeout: a lower limit would restart
	// the agent for a collector that is merely slow.
	c.HungCollectorLimit = max(c.HungCollectorLimit, c.CollectorTimeout)
	if c.CycleLimit <= 0 {
		c.CycleLimit = 2*c.CollectorTimeout + time.Minute
	}
	if c.OutboxMaxBytes <= 0 {
		c.OutboxMaxBytes = DefaultOutboxMaxBytes
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Host == nil {
		c.Host = platform.NewLive()
	}
}

// OutboxPath is the outbox file under a data directory.
func OutboxPath(dataDir string) string { return filepath.Join(dataDir, "outbox.db") }

// Collect runs every collector once and returns the observations, without a
// server: what `evident-agent collect` prints. They are dated on the host's
// clock: a replayed snapshot's evidence at the instant it was recorded.
func Collect(ctx context.Context, cfg Config) []collectors.Observation {
	cfg.fill()
	return cfg.Registry.RunAll(ctx, cfg.Host, cfg.CollectorTimeout, func() time.Time { return platform.Now(cfg.Host) })
}

// hostOffset is how far the host's clock is ahead of the agent's clock
// reading now: zero for the live machine; for a replayed snapshot, the
// (negative) distance back to the instant it was recorded. A cycle dates its
// observations on the host's clock, while its own timing and the watchdog
// keep to the agent's.
func hostOffset(h platform.Host, now time.Time) time.Duration {
	if _, ok := h.(platform.Clock); !ok {
		return 0
	}
	return platform.Now(h).Sub(now)
}

// clock is the time source of collection cycles and the watchdog; tests
// replace it so nothing waits on the wall clock.
type clock interface {
	Now() time.Time
	// Tick returns a channel receiving every d, and a function stopping it.
	Tick(d time.Duration) (<-chan time.Time, func())
}

type wallClock struct{}

func (wallClock) Now() time.Time { return wall.Now() }

func (wallClock) Tick(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// Agent is a running daemon.
type Agent struct {
	cfg    Config
	id     *identity.Identity
	outbox *outbox.Outbox
	up     *uplink.Uplink
	clock  clock
	// watchdog keeps hung collectors from being started again while stuck
	// and tells Run how long they have been.
	watchdog *collectors.Watchdog

	mu          sync.Mutex
	startedAt   time.Time
	lastCycle   time.Time
	lastResults map[string]string
	cycles      int
	// lastBatch is the latest cycle's observations with their seqs: what
	// the next attestation covers.
	lastBatch *evidentv1.Report
	// lastAttestation is when the server last answered an attestation.
	lastAttestation   time.Time
	lastAttestationOK bool
	// posture is the server's latest verdict (setPosture).
	posture *Posture
	// cycleStart is when the collection cycle in progress started (zero
	// between cycles): what the cycle watchdog measures.
	cycleStart time.Time
	// cycleMu serializes collection cycles (the schedule and attestation).
	cycleMu sync.Mutex
	// attestations receives what the server concluded of each attestation.
	attestations chan *evidentv1.AttestationResult
	// renewErr is the last certificate renewal's failure ("" after a
	// success); expiredLogged says the expiry was logged.
	renewErr      string
	expiredLogged bool
	metrics       *agentMetrics
	// sched is the collection schedule (the server's, when it pushed one).
	sched schedule
	// missed is what the outbox could not store since the last stored
	// cycle (written under cycleMu and mu, read under either).
	missed unrecorded
}

// MinOutboxBytes is the smallest outbox bound: the outbox refuses items over
// a quarter of its bound, so it must hold four of the largest observations.
const MinOutboxBytes = 4 * MaxObservationBytes

// MaxObservationBytes bounds one encoded observation (the server refuses
// payloads over 512 KiB; batches are 1 MiB), so one runaway collector can
// never produce a report the server must refuse.
const MaxObservationBytes = 256 << 10

// EncodeObservation turns a collector observation into an outbox entry: the
// protobuf Observation without its seq (the outbox key is the seq). An
// observation over MaxObservationBytes is replaced by an error observation
// that says so, keeping the source references but not the excerpts.
func EncodeObservation(o collectors.Observation) ([]byte, error) {
	b, err := encodeObservation(o)
	if err != nil || len(b) <= MaxObservationBytes {
		return b, err
	}
	small := o
	small.Status = collectors.StatusError
	small.Error = fmt.Sprintf("observation of %d bytes exceeds the %d byte bound; payload dropped", len(b), MaxObservationBytes)
	small.Payload = nil
	small.Sources = make([]collectors.Source, 0, len(o.Sources))
	for _, s := range o.Sources {
		s.Excerpt = ""
		if len(s.Ref) > 1024 {
			s.Ref = s.Ref[:1024]
		}
		small.Sources = append(small.Sources, s)
	}
	if len(small.Sources) > 64 {
		small.Sources = small.Sources[:64]
	}
	return encodeObservation(small)
}

func encodeObservation(o collectors.Observation) ([]byte, error) {
	st := map[collectors.Status]evidentv1.Observation_Status{
		collectors.StatusOK:          evidentv1.Observation_STATUS_OK,
		collectors.StatusError:       evidentv1.Observation_STATUS_ERROR,
		collectors.StatusUnsupported: evidentv1.Observation_STATUS_UNSUPPORTED,
	}[o.Status]
	p := &evidentv1.Observation{
		Collector: utf8Safe(o.Collector), CollectedAt: timestamppb.New(o.CollectedAt), Status: st, Error: utf8Safe(o.Error),
		ParserVersion: uint32(o.ParserVersion), PayloadJson: o.Payload, DurationMs: uint32(max(o.DurationMS, 0)),
	}
	for _, s := range o.Sources {
		ps := &evidentv1.Source{Kind: utf8Safe(s.Kind), Ref: utf8Safe(s.Ref), Excerpt: utf8Safe(s.Excerpt), Error: utf8Safe(s.Error)}
		if s.ExitCode != nil {
			c := int32(*s.ExitCode)
			ps.ExitCode = &c
		}
		p.Sources = append(p.Sources, ps)
	}
	return proto.Marshal(p)
}

// utf8Safe replaces invalid UTF-8 (a command printing Latin-1 or binary
// bytes) with U+FFFD: proto3 refuses to marshal such strings, and one bad
// excerpt must not fail a whole collection cycle.
func utf8Safe(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// gapCollector names the evidence an outbox drop leaves behind.
const gapCollector = "agent.outbox"

func encodeGap(g outbox.Gap) []byte {
	payload, _ := json.Marshal(map[string]any{
		"event": "dropped", "first_seq": g.FirstSeq, "last_seq": g.LastSeq, "count": g.Count, "bytes": g.Bytes,
		"reason": "outbox full: oldest unacknowledged observations dropped to stay within the size bound",
	})
	b, _ := encodeGapRecord(g.At, payload)
	return b
}

// encodeGapRecord is the agent.outbox observation that records a loss.
func encodeGapRecord(at time.Time, payload []byte) ([]byte, error) {
	return EncodeObservation(collectors.Observation{Collector: gapCollector, CollectedAt: at, Status: collectors.StatusOK, Payload: payload})
}

// unrecorded is what the outbox could not store: collection cycles whose
// write failed (a full disk, an I/O error). The next cycle that is stored
// carries it as a gap record, so the server learns of the loss as evidence.
// It is kept in memory: the disk that refused the cycles cannot take it.
type unrecorded struct {
	Cycles       int       `json:"cycles"`
	Observations int       `json:"observations"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	Reason       string    `json:"reason"`
}

func (u *unrecorded) add(at time.Time, observations int, err error) {
	if u.Cycles == 0 {
		u.From = at
	}
	u.Cycles++
	u.Observations += observations
	u.To = at
	u.Reason = "outbox write failed: " + err.Error()
}

func encodeUnrecorded(u unrecorded, at time.Time) ([]byte, error) {
	payload, err := json.Marshal(struct {
		Event string `json:"event"`
		unrecorded
	}{"not_recorded", u})
	if err != nil {
		return nil, err
	}
	return encodeGapRecord(at, payload)
}

// Open loads the identity and opens the outbox of cfg.DataDir.
func Open(cfg Config) (*Agent, error) {
	cfg.fill()
	id, err := identity.Load(identity.Dir(cfg.DataDir))
	if err != nil {
		return nil, err
	}
	if cfg.Server != "" {
		id.Server = cfg.Server
	}
	if _, err := id.TLSConfig(); err != nil { // a malformed server address fails here, not silently later
		return nil, err
	}
	if cfg.OutboxMaxBytes < MinOutboxBytes {
		return nil, fmt.Errorf("outbox bound %d bytes is below the minimum %d (four of the largest observations)", cfg.OutboxMaxBytes, MinOutboxBytes)
	}
	ob, err := outbox.Open(OutboxPath(cfg.DataDir), outbox.Options{MaxBytes: cfg.OutboxMaxBytes, Gap: encodeGap, Now: wall.Now})
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, id: id, outbox: ob, clock: wallClock{}, watchdog: collectors.NewWatchdog(), startedAt: wall.Now(), metrics: newAgentMetrics()}
	a.up = &uplink.Uplink{Outbox: ob, Server: id.Server, TLS: id.TLSConfig, AgentVersion: cfg.Version, Facts: cfg.Facts, Posture: a.setPosture, Log: cfg.Log,
		TrustHash: id.TrustHash, TrustBundle: func(b []byte) {
			switch changed, err := id.SetTrust(b); {
			case err != nil:
				cfg.Log.Warn("the server's CA bundle was refused; keeping the current one", "err", err)
			case changed:
				cfg.Log.Info("CA bundle updated from the server (CA rollover)", "cas", bytes.Count(b, []byte("BEGIN CERTIFICATE")))
				// The connection's TLS configuration holds the CAs it was
				// made with: connect again with the new bundle, so a
				// reconnect after the takeover verifies the new CA.
				a.up.Redial()
			}
		}}
	return a, nil
}

// closeWait bounds Close.
const closeWait = 10 * time.Second

// Close closes the outbox. After Run failed on a hung cycle, a write may be
// stuck inside the outbox (a dead disk) and closing would wait for it
// forever: Close gives up after closeWait and says so. The process exit then
// releases the file lock; bbolt needs no clean close to stay consistent.
func (a *Agent) Close() error {
	done := make(chan error, 1)
	go func() { done <- a.outbox.Close() }()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("outbox close did not finish within %s: a write is stuck", closeWait)
	}
}

// cycle runs the collectors once and appends their observations in one
// transaction.
func (a *Agent) cycle(ctx context.Context, only []string) error {
	a.cycleMu.Lock()
	defer a.cycleMu.Unlock()
	start := a.clock.Now()
	a.mu.Lock()
	a.cycleStart = start
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.cycleStart = time.Time{}
		a.mu.Unlock()
	}()
	reg := a.cfg.Registry
	if len(only) > 0 {
		if r, err := reg.Select(only); err == nil {
			reg = r
		} else {
			a.cfg.Log.Warn("server asked for unknown collectors", "err", err)
		}
	}
	obs := a.watchdog.RunAll(ctx, reg, a.cfg.Host, a.cfg.CollectorTimeout, a.clock.Now)
	a.ran(start, reg.Names())
	if off := hostOffset(a.cfg.Host, a.clock.Now()); off != 0 {
		for i := range obs {
			obs[i].CollectedAt = obs[i].CollectedAt.Add(off)
		}
	}
	entries := make([][]byte, 0, len(obs))
	results := map[string]string{}
	for _, o := range obs {
		b, err := EncodeObservation(o)
		if err != nil {
			return err
		}
		entries = append(entries, b)
		results[o.Collector] = string(o.Status)
		if a.metrics != nil {
			a.metrics.runs.WithLabelValues(o.Collector, string(o.Status)).Inc()
			a.metrics.seconds.WithLabelValues(o.Collector).Set(float64(o.DurationMS) / 1000)
		}
		if o.Status == collectors.StatusError {
			a.cfg.Log.Warn("collector failed", "collector", o.Collector, "err", o.Error)
		}
	}
	collected := len(entries)
	if a.missed.Cycles > 0 {
		b, err := encodeUnrecorded(a.missed, a.clock.Now())
		if err != nil {
			return err
		}
		entries = append(entries, b)
	}
	first, last, err := a.outbox.Append(entries...)
	if err != nil {
		a.mu.Lock()
		a.missed.add(start, collected, err)
		missed := a.missed.Cycles
		a.mu.Unlock()
		if a.metrics != nil {
			a.metrics.unrecorded.Inc()
		}
		return fmt.Errorf("outbox: %w (%d cycles not stored; the next stored cycle reports them)", err, missed)
	}
	if a.missed.Cycles > 0 {
		a.cfg.Log.Warn("collection cycles the outbox could not store are reported to the server as a gap",
			"cycles", a.missed.Cycles, "observations", a.missed.Observations, "from", a.missed.From, "to", a.missed.To, "reason", a.missed.Reason)
		a.mu.Lock()
		a.missed = unrecorded{}
		a.mu.Unlock()
	}
	batch := &evidentv1.Report{Observations: make([]*evidentv1.Observation, 0, len(entries))}
	for i, e := range entries {
		var o evidentv1.Observation
		if err := proto.Unmarshal(e, &o); err == nil {
			o.Seq = first + uint64(i)
			batch.Observations = append(batch.Observations, &o)
		}
	}
	a.mu.Lock()
	a.lastCycle, a.lastResults, a.lastBatch = start, results, batch
	a.cycles++
	a.mu.Unlock()
	a.cfg.Log.Info("collected", "observations", len(entries), "first_seq", first, "last_seq", last, "took", a.clock.Now().Sub(start).Round(time.Millisecond))
	a.up.Wake()
	// bbolt never shrinks its file; Compact rewrites it only when at least
	// 1 MiB and half the file are free (after a long outage has drained).
	if err := a.outbox.Compact(); err != nil {
		a.cfg.Log.Warn("outbox compaction failed", "err", err)
	}
	return nil
}

// Status is what `evident-agent status` shows.
type Status struct {
	Version   string    `json:"version"`
	DeviceID  string    `json:"device_id"`
	Server    string    `json:"server"`
	StartedAt time.Time `json:"started_at"`
	Interval  string    `json:"interval"`
	// CollectorIntervals are the per-collector intervals the server set;
	// ScheduleFromServer says the schedule is the server policy's.
	CollectorIntervals map[string]string `json:"collector_intervals,omitempty"`
	ScheduleFromServer bool              `json:"schedule_from_server,omitempty"`
	Cycles             int               `json:"collection_cycles"`
	LastCycleAt        time.Time         `json:"last_collection_at,omitzero"`
	LastResults        map[string]string `json:"last_results,omitempty"`
	Outbox             outbox.Stats      `json:"outbox"`
	Uplink             uplink.State      `json:"uplink"`
	CertExpires        time.Time         `json:"device_certificate_expires"`
	// CertRenewAt is when the agent renews the certificate (two thirds of
	// its lifetime).
	CertRenewAt time.Time `json:"device_certificate_renew_at"`
	// CertError says why the certificate cannot be used or renewed: its
	// expiry, with what to do, or the last failed renewal.
	CertError string `json:"device_certificate_error,omitempty"`
	// TPM is the TPM the device is bound to ("" without one).
	TPM               string    `json:"tpm,omitempty"`
	LastAttestationAt time.Time `json:"last_attestation_at,omitzero"`
	LastAttestationOK bool      `json:"last_attestation_verified"`
	// HungCollectors are the collectors whose abandoned run has not
	// returned: they are not started again until it does.
	HungCollectors []HungCollector `json:"hung_collectors,omitempty"`
	// UnrecordedCycles counts the cycles since the last stored one whose
	// observations the outbox could not store (disk full): the next stored
	// cycle reports them to the server.
	UnrecordedCycles int `json:"unrecorded_cycles,omitempty"`
	// Posture is the server's latest verdict on this device, as it sent
	// it after a report (nil until then, or from an older server).
	Posture *Posture `json:"posture,omitempty"`
}

// Posture is what the server told the device of its compliance: the
// controls that need attention, why, and how to fix them.
type Posture struct {
	Compliant   bool            `json:"compliant"`
	EvaluatedAt time.Time       `json:"evaluated_at"`
	Attention   []ControlStatus `json:"attention,omitempty"`
}

// ControlStatus is one control that fails or is unknown on this device.
type ControlStatus struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Status      string `json:"status"`
	Reason      string `json:"reason"`
	Remediation string `json:"remediation,omitempty"`
}

// maxPostureText bounds each text of a Posture the agent keeps: it is shown
// in a terminal, and a server is not trusted to bound it.
const maxPostureText = 4096

// setPosture keeps the server's posture for Status.
func (a *Agent) setPosture(p *evidentv1.Posture) {
	cut := func(s string) string {
		if len(s) <= maxPostureText {
			return s
		}
		n := maxPostureText
		for n > 0 && !utf8.RuneStart(s[n]) { // not in the middle of a character
			n--
		}
		return s[:n] + "…"
	}
	ps := &Posture{Compliant: p.GetCompliant(), EvaluatedAt: p.GetEvaluatedAt().AsTime().UTC()}
	for i, c := range p.GetAttention() {
		if i == 64 {
			break
		}
		ps.Attention = append(ps.Attention, ControlStatus{ID: cut(c.GetId()), Title: cut(c.GetTitle()), Status: cut(c.GetStatus()),
			Reason: cut(c.GetReason()), Remediation: cut(c.GetRemediation())})
	}
	a.mu.Lock()
	a.posture = ps
	a.mu.Unlock()
}

// HungCollector is a collector stuck in a run that outlived its timeout.
type HungCollector struct {
	Name string `json:"name"`
	// Since is when the stuck run started.
	Since time.Time `json:"since"`
	// AbandonedAfter is the run's timeout ("1m0s").
	AbandonedAfter string `json:"abandoned_after"`
}

// Status returns the agent's current status.
func (a *Agent) Status() Status {
	st, _ := a.outbox.Stats()
	var hung []HungCollector
	for _, h := range a.watchdog.Hung() {
		hung = append(hung, HungCollector{Name: h.Collector, Since: h.Since.UTC(), AbandonedAfter: h.Timeout.String()})
	}
	interval, perCollector, fromServer := a.scheduleStatus()
	certErr := ""
	if err := a.id.Expired(a.clock.Now()); err != nil {
		certErr = err.Error()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if certErr == "" && a.renewErr != "" {
		certErr = "renewal failed: " + a.renewErr
	}
	return Status{
		CertRenewAt: a.id.RenewAt(), CertError: certErr,
		Version: a.cfg.Version, DeviceID: a.id.DeviceID, Server: a.id.Server, StartedAt: a.startedAt,
		Interval: interval, CollectorIntervals: perCollector, ScheduleFromServer: fromServer, Cycles: a.cycles, LastCycleAt: a.lastCycle, LastResults: a.lastResults,
		Outbox: st, Uplink: a.up.State(), CertExpires: a.id.CertExpiry(),
		TPM: a.id.TPM, LastAttestationAt: a.lastAttestation, LastAttestationOK: a.lastAttestationOK,
		HungCollectors: hung, UnrecordedCycles: a.missed.Cycles, Posture: a.posture,
	}
}

// ErrNotDelivered is returned by Run in once mode when the server did not
// acknowledge everything in time.
var ErrNotDelivered = errors.New("not everything was acknowledged by the server")

// ErrCollectorHung is returned (wrapped) by Run when a collector run has
// been stuck longer than Config.HungCollectorLimit, and ErrCycleHung when a
// whole collection cycle has outlived Config.CycleLimit. Neither heals in
// this process: the agent exits non-zero so the service manager (systemd
// Restart=on-failure, launchd KeepAlive SuccessfulExit=false, Windows
// recovery actions) starts a fresh one.
var (
	ErrCollectorHung = errors.New("collector hung")
	ErrCycleHung     = errors.New("collection cycle hung")
)

// isHang reports whether err is the watchdog's.
func isHang(err error) bool { return errors.Is(err, ErrCollectorHung) || errors.Is(err, ErrCycleHung) }

// hangErr says what, at now, has been stuck past its limit: the longest
// stuck collector run (named), else the cycle in progress.
func (a *Agent) hangErr(now time.Time) (collector string, err error) {
	var worst collectors.Inflight
	for _, r := range a.watchdog.Inflight() {
		if worst.Since.IsZero() || r.Since.Before(worst.Since) {
			worst = r
		}
	}
	if d := now.Sub(worst.Since); !worst.Since.IsZero() && d > a.cfg.HungCollectorLimit {
		return worst.Collector, fmt.Errorf("%w: collector %q stuck for %s since %s (timeout %s; limit %s)", ErrCollectorHung,
			worst.Collector, d.Round(time.Second), worst.Since.UTC().Format(time.RFC3339), worst.Timeout, a.cfg.HungCollectorLimit)
	}
	a.mu.Lock()
	start := a.cycleStart
	a.mu.Unlock()
	if d := now.Sub(start); !start.IsZero() && d > a.cfg.CycleLimit {
		return "", fmt.Errorf("%w: the collection cycle started %s has not finished after %s (limit %s)", ErrCycleHung,
			start.UTC().Format(time.RFC3339), d.Round(time.Second), a.cfg.CycleLimit)
	}
	return "", nil
}

// watchEvery is how often the watchdog looks: a tenth of the tighter limit,
// between a second and a minute.
func (a *Agent) watchEvery() time.Duration {
	return min(max(min(a.cfg.HungCollectorLimit, a.cfg.CycleLimit)/10, time.Second), time.Minute)
}

// watch checks for hangs until stop is closed, and sends the first one on
// hung.
func (a *Agent) watch(stop <-chan struct{}, hung chan<- error) {
	tick, stopTick := a.clock.Tick(a.watchEvery())
	defer stopTick()
	for {
		select {
		case <-stop:
			return
		case <-tick:
			collector, err := a.hangErr(a.clock.Now())
			if err == nil {
				continue
			}
			if collector != "" {
				a.cfg.Log.Error("collector hung past the limit; exiting so the service manager restarts the agent",
					"collector", collector, "err", err)
			} else {
				var inFlight []string
				for _, r := range a.watchdog.Inflight() {
					inFlight = append(inFlight, r.Collector)
				}
				a.cfg.Log.Error("collection cycle hung past the limit; exiting so the service manager restarts the agent",
					"collectors_in_flight", inFlight, "err", err)
			}
			hung <- err
			return
		}
	}
}

// runCycle runs a cycle in its own goroutine and waits for it or for the
// watchdog: a cycle stuck where no context reaches (a collector past its
// timeout never holds it up, but an outbox write on a dead disk can) must
// not keep Run from failing.
func (a *Agent) runCycle(ctx context.Context, only []string, hung <-chan error) error {
	done := make(chan error, 1)
	go func() { done <- a.cycle(ctx, only) }()
	select {
	case err := <-done:
		return err
	case err := <-hung:
		return err
	}
}

// stopWait bounds how long Run, failing on a hang, waits for its other
// goroutines: one may be waiting on the stuck cycle.
const stopWait = 10 * time.Second

// Run runs the daemon until ctx ends. With once, it collects once, waits
// until the server has acknowledged the whole outbox (or onceTimeout
// passes), and returns. A collector or cycle stuck past its limit makes Run
// return an error wrapping ErrCollectorHung or ErrCycleHung.
func (a *Agent) Run(ctx context.Context, once bool, onceTimeout time.Duration) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stopWatch := make(chan struct{})
	defer func() {
		close(stopWatch)
		cancel() // stop the uplink and status endpoint, then wait for them
		if !isHang(err) {
			wg.Wait()
			return
		}
		stopped := make(chan struct{})
		go func() { wg.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(stopWait):
			a.cfg.Log.Error("exiting with goroutines still waiting on the hung cycle")
		}
	}()
	hung := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watch(stopWatch, hung)
	}()
	collectNow := make(chan []string, 1)
	a.up.CollectNow = collectNow
	configs := make(chan *evidentv1.Config, 1)
	a.up.Configs = configs
	challenges := make(chan *evidentv1.AttestationChallenge, 1)
	if a.id.TPM != "" {
		a.up.Challenges = challenges
	}
	a.attestations = make(chan *evidentv1.AttestationResult, 1)
	results := make(chan *evidentv1.AttestationResult, 4)
	a.up.AttestationResults = results
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case ch := <-challenges:
				a.attest(ctx, ch)
			case r := <-results:
				if r.GetVerified() {
					a.cfg.Log.Info("server verified this device's attestation")
				} else {
					a.cfg.Log.Warn("server refused this device's attestation", "reasons", r.GetReasons())
				}
				a.mu.Lock()
				a.lastAttestation = a.clock.Now()
				a.lastAttestationOK = r.GetVerified()
				a.mu.Unlock()
				select {
				case a.attestations <- r:
				default:
				}
			}
		}
	}()
	if a.cfg.MetricsListen != "" {
		stop, err := a.serveMetrics(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	renewCheck := make(chan struct{}, 1)
	if once {
		// One pass, before the stream opens: a run that exits as soon as
		// everything is delivered must not cut a renewal short.
		if _, err := a.renewOnce(ctx); err != nil {
			a.cfg.Log.Warn("continuing with the current device certificate", "expires", a.id.CertExpiry().UTC())
		}
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.renewLoop(ctx, renewCheck)
		}()
	}
	checkRenewal := func() {
		select {
		case renewCheck <- struct{}{}:
		default:
		}
	}
	acked := a.up.AckNotify()
	upErr := make(chan error, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := a.up.Run(ctx); err != nil && ctx.Err() == nil {
			a.cfg.Log.Error("evidence uplink stopped; nothing can be delivered", "server", a.id.Server, "err", err)
			upErr <- err
		}
	}()
	go func() {
		defer wg.Done()
		if err := statusapi.Serve(ctx, statusapi.SocketPath(a.cfg.DataDir), func() any { return a.Status() }); err != nil {
			a.cfg.Log.Warn("status endpoint unavailable", "err", err)
		}
	}()
	a.cfg.Log.Info("evident-agent started", "device", a.id.DeviceID, "server", a.id.Server, "interval", a.cfg.Interval,
		"collectors", a.cfg.Registry.Names(), "once", once)
	if err := a.runCycle(ctx, nil, hung); err != nil && (once || isHang(err)) {
		return err
	} else if err != nil {
		// A daemon that exits on a full disk would lose the count of
		// what it could not store; it keeps its schedule instead.
		a.cfg.Log.Error("collection failed", "err", err)
	}
	if once {
		deadline := time.Now().Add(onceTimeout)
		if err := a.waitDelivered(ctx, acked, upErr, onceTimeout); err != nil {
			return err
		}
		if a.up.Challenges != nil {
			return a.waitAttested(ctx, upErr, time.Until(deadline))
		}
		return nil
	}
	var t *time.Timer
	for {
		// ±10% jitter so a fleet started together does not report in step.
		if t == nil {
			iv := a.nextWait()
			t = time.NewTimer(iv - iv/10 + rand.N(iv/5+1))
		}
		select {
		case <-ctx.Done():
			t.Stop()
			a.cfg.Log.Info("evident-agent stopping")
			return nil
		case c := <-configs:
			// Sent after every Hello: only a changed schedule moves the
			// next cycle (an agent that reconnects often would otherwise
			// never reach one).
			if a.applyConfig(c) {
				t.Stop()
				t = nil
			}
			continue
		case err := <-upErr:
			t.Stop()
			return fmt.Errorf("evidence uplink: %w", err)
		case err := <-hung:
			t.Stop()
			return err
		case only := <-collectNow:
			t.Stop()
			t = nil
			a.cfg.Log.Info("server asked to collect now", "collectors", only)
			if err := a.runCycle(ctx, only, hung); isHang(err) {
				return err
			} else if err != nil {
				a.cfg.Log.Error("collection failed", "err", err)
			}
		case <-t.C:
			// A scheduled cycle runs the collectors whose own interval
			// has passed (the server's schedule may set some apart).
			t = nil
			due := a.due(a.clock.Now(), a.cfg.Registry.Names())
			if due != nil && len(due) == 0 {
				continue
			}
			if err := a.runCycle(ctx, due, hung); isHang(err) {
				return err
			} else if err != nil {
				a.cfg.Log.Error("collection failed", "err", err)
			}
			checkRenewal()
		}
	}
}

// waitAttested waits, in once mode, for the server's verdict on one
// attestation (it challenges a TPM device as soon as it connects).
func (a *Agent) waitAttested(ctx context.Context, upErr <-chan error, timeout time.Duration) error {
	select {
	case r := <-a.attestations:
		if !r.GetVerified() {
			return fmt.Errorf("the server refused this device's TPM attestation: %s", strings.Join(r.GetReasons(), "; "))
		}
		return nil
	case err := <-upErr:
		return fmt.Errorf("evidence uplink: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(max(timeout, 0)):
		return fmt.Errorf("%w: no attestation verdict from the server within the timeout", ErrNotDelivered)
	}
}

func (a *Agent) waitDelivered(ctx context.Context, acked <-chan struct{}, upErr <-chan error, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		st, err := a.outbox.Stats()
		if err != nil {
			return err
		}
		if st.Depth == 0 {
			a.cfg.Log.Info("everything delivered and acknowledged", "last_acked_seq", st.LastAcked)
			return nil
		}
		select {
		case <-acked:
		case err := <-upErr:
			return fmt.Errorf("%w: %d observations pending: %w", ErrNotDelivered, st.Depth, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			us := a.up.State()
			return fmt.Errorf("%w: %d observations still pending after %s (last error: %s)", ErrNotDelivered, st.Depth, timeout, us.LastError)
		}
	}
}
