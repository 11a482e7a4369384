package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evident-dev/evident/agent/identity"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// fakeClock is the agent's clock in tests: time moves only when the test
// says, and the watchdog looks only when the test ticks.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	ticks chan time.Time
}

func newFakeClock(t0 time.Time) *fakeClock { return &fakeClock{t: t0, ticks: make(chan time.Time)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Tick(time.Duration) (<-chan time.Time, func()) { return c.ticks, func() {} }

func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// tick makes the watchdog look once. It returns false when the watchdog is
// no longer looking (it stopped, having sent a hang).
func (c *fakeClock) tick() bool {
	select {
	case c.ticks <- c.Now():
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// hangingCollector ignores its context on its first run and blocks until the
// test releases it (a read stuck in the kernel); later runs return at once.
type hangingCollector struct {
	name    string
	release chan struct{}
	started chan struct{}
	runs    atomic.Int32
	once    sync.Once
}

func newHangingCollector(t *testing.T, name string) *hangingCollector {
	h := &hangingCollector{name: name, release: make(chan struct{}), started: make(chan struct{}, 16)}
	t.Cleanup(h.unblock)
	return h
}

func (h *hangingCollector) Name() string { return h.name }

func (h *hangingCollector) Collect(context.Context, platform.Host) (collectors.Result, error) {
	n := h.runs.Add(1)
	h.started <- struct{}{}
	if n == 1 {
		<-h.release
	}
	return collectors.Result{Payload: map[string]int32{"run": n}}, nil
}

func (h *hangingCollector) unblock() { h.once.Do(func() { close(h.release) }) }

func (h *hangingCollector) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-h.started:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never started", h.name)
	}
}

// logRecords keeps what the agent logs.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// find returns the attributes of the first record at level whose message
// contains msg.
func (l *logRecords) find(level slog.Level, msg string) (map[string]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if r.Level == level && strings.Contains(r.Message, msg) {
			attrs := map[string]string{}
			r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
			return attrs, true
		}
	}
	return nil, false
}

// writeIdentity enrolls dataDir with a self-signed device certificate and a
// server nobody answers on.
func writeIdentity(t *testing.T, dataDir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dev-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := identity.Dir(dataDir)
	state, _ := json.Marshal(identity.Identity{DeviceID: "dev-1", Server: "127.0.0.1:1"})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, b := range map[string][]byte{
		"enrollment.json": state,
		"device.crt":      certPEM,
		"device.key":      pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		"ca.pem":          certPEM,
	} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

var t0 = time.Date(2026, 6, 7, 8, 9, 10, 0, time.FixedZone("CEST", 2*3600))

// newTestAgent opens an agent on a fresh data directory with cfg's
// collectors and limits, a fake clock at t0 and a log the test can read.
func newTestAgent(t *testing.T, cfg Config, cs ...collectors.Collector) (*Agent, *fakeClock, *logRecords) {
	t.Helper()
	// The status socket path must fit sun_path: t.TempDir() may be too long.
	dir := cfg.DataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "ag"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	writeIdentity(t, dir)
	reg, err := collectors.NewRegistry(cs...)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logRecords{}
	cfg.DataDir, cfg.Registry, cfg.Log, cfg.Host = dir, reg, slog.New(logs), &platform.Live{Root: t.TempDir()}
	if cfg.Interval == 0 {
		cfg.Interval = 24 * time.Hour
	}
	a, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk := newFakeClock(t0)
	a.clock = clk
	t.Cleanup(func() { _ = a.Close() })
	return a, clk, logs
}

// lastObservations returns the latest cycle's observations by collector.
func lastObservations(t *testing.T, a *Agent) map[string]*evidentv1.Observation {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]*evidentv1.Observation{}
	for _, o := range a.lastBatch.GetObservations() {
		out[o.GetCollector()] = o
	}
	return out
}

// waitNotInFlight waits (bounded) until the watchdog knows no run of name:
// its goroutine has returned.
func waitNotInFlight(t *testing.T, a *Agent, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		found := false
		for _, r := range a.watchdog.Inflight() {
			found = found || r.Collector == name
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still in flight after it was released", name)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitCycleDone waits (bounded) until no cycle holds the cycle lock, so no
// goroutine of the test outlives it.
func waitCycleDone(t *testing.T, a *Agent) {
	t.Helper()
	done := make(chan struct{})
	go func() { a.cycleMu.Lock(); a.cycleMu.Unlock(); close(done) }() //nolint:staticcheck // a barrier
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cycle never finished after its collector was released")
	}
}

func TestCycleSkipsHungCollector(t *testing.T) {
	hung := newHangingCollector(t, "hung")
	a, clk, _ := newTestAgent(t, Config{CollectorTimeout: 20 * time.Millisecond}, hung, fakeCollector{name: "ok"})
	ctx := context.Background()
	since := "2026-06-07T06:09:10Z" // t0 in UTC
	cycles := []struct {
		name       string
		before     func()
		hungStatus evidentv1.Observation_Status
		hungErr    string // substring; "" means none
		runs       int32
		status     []HungCollector
	}{
		{
			name: "abandoned after its timeout", hungStatus: evidentv1.Observation_STATUS_ERROR, hungErr: "did not finish", runs: 1,
			status: []HungCollector{{Name: "hung", Since: t0.UTC(), AbandonedAfter: "20ms"}},
		},
		{
			name: "not started again while stuck", before: func() { clk.advance(time.Hour) },
			hungStatus: evidentv1.Observation_STATUS_ERROR, runs: 1,
			hungErr: "still hung since " + since + " (previous run abandoned after 20ms); not started again",
			status:  []HungCollector{{Name: "hung", Since: t0.UTC(), AbandonedAfter: "20ms"}},
		},
		{
			name: "runs again once released", before: func() { hung.unblock(); waitNotInFlight(t, a, "hung") },
			hungStatus: evidentv1.Observation_STATUS_OK, runs: 2,
		},
	}
	for i, c := range cycles {
		if c.before != nil {
			c.before()
		}
		if err := a.cycle(ctx, nil); err != nil {
			t.Fatalf("cycle %d (%s): %v", i, c.name, err)
		}
		obs := lastObservations(t, a)
		h, ok := obs["hung"], obs["ok"]
		if h.GetStatus() != c.hungStatus || (c.hungErr == "") != (h.GetError() == "") || !strings.Contains(h.GetError(), c.hungErr) {
			t.Errorf("cycle %d (%s): hung = %s %q, want %s %q", i, c.name, h.GetStatus(), h.GetError(), c.hungStatus, c.hungErr)
		}
		if !h.GetCollectedAt().AsTime().Equal(clk.Now()) {
			t.Errorf("cycle %d (%s): hung collected at %v, want %v", i, c.name, h.GetCollectedAt().AsTime(), clk.Now())
		}
		if ok.GetStatus() != evidentv1.Observation_STATUS_OK {
			t.Errorf("cycle %d (%s): ok = %s %q: a hung collector affected another", i, c.name, ok.GetStatus(), ok.GetError())
		}
		if got := hung.runs.Load(); got != c.runs {
			t.Errorf("cycle %d (%s): hung started %d times, want %d", i, c.name, got, c.runs)
		}
		st := a.Status()
		if len(st.HungCollectors) != len(c.status) {
			t.Fatalf("cycle %d (%s): status hung collectors %+v, want %+v", i, c.name, st.HungCollectors, c.status)
		}
		for k := range c.status {
			g, w := st.HungCollectors[k], c.status[k]
			if g.Name != w.Name || !g.Since.Equal(w.Since) || g.AbandonedAfter != w.AbandonedAfter {
				t.Errorf("cycle %d (%s): status hung collector %+v, want %+v", i, c.name, g, w)
			}
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		var js struct {
			Hung []map[string]any `json:"hung_collectors"`
		}
		if err := json.Unmarshal(b, &js); err != nil {
			t.Fatal(err)
		}
		if len(js.Hung) != len(c.status) {
			t.Errorf("cycle %d (%s): status JSON hung_collectors = %v, want %d", i, c.name, js.Hung, len(c.status))
		}
		if len(c.status) > 0 && (js.Hung[0]["name"] != "hung" || js.Hung[0]["since"] != since || js.Hung[0]["abandoned_after"] != "20ms") {
			t.Errorf("cycle %d (%s): status JSON hung_collectors = %v", i, c.name, js.Hung)
		}
	}
}

func TestHangErr(t *testing.T) {
	a := &Agent{watchdog: collectors.NewWatchdog()}
	a.cfg.CollectorTimeout = time.Minute
	a.cfg.HungCollectorLimit = 15 * time.Minute
	a.cfg.fill()
	if a.cfg.CycleLimit != 3*time.Minute {
		t.Fatalf("derived cycle limit %s, want 2×1m + 1m", a.cfg.CycleLimit)
	}
	// A run of "slow" in flight since t0, within its (long) timeout.
	slow := newHangingCollector(t, "slow")
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		a.watchdog.Run(context.Background(), slow, nil, time.Hour, func() time.Time { return t0 })
	}()
	t.Cleanup(func() { slow.unblock(); <-ran })
	slow.waitStarted(t)

	for _, tc := range []struct {
		name          string
		cycleStart    time.Time
		at            time.Time
		want          error
		wantCollector string
		wantMsg       []string
	}{
		{name: "collector just under the limit", at: t0.Add(15 * time.Minute)},
		{name: "collector over the limit", at: t0.Add(15*time.Minute + time.Second), want: ErrCollectorHung, wantCollector: "slow",
			wantMsg: []string{`"slow"`, "stuck for 15m1s", "since 2026-06-07T06:09:10Z", "limit 15m0s"}},
		{name: "cycle under its limit", cycleStart: t0.Add(10 * time.Minute), at: t0.Add(13 * time.Minute)},
		{name: "cycle over its limit", cycleStart: t0.Add(10 * time.Minute), at: t0.Add(13*time.Minute + time.Second), want: ErrCycleHung,
			wantMsg: []string{"started 2026-06-07T06:19:10Z", "after 3m1s", "limit 3m0s"}},
		{name: "collector before the cycle", cycleStart: t0, at: t0.Add(time.Hour), want: ErrCollectorHung, wantCollector: "slow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a.cycleStart = tc.cycleStart
			collector, err := a.hangErr(tc.at)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("hangErr = %v, want %v", err, tc.want)
			}
			if collector != tc.wantCollector {
				t.Errorf("collector = %q, want %q", collector, tc.wantCollector)
			}
			if tc.want == ErrCycleHung && errors.Is(err, ErrCollectorHung) {
				t.Errorf("cycle hang %v also matches ErrCollectorHung", err)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
		})
	}
}

func TestConfigHungLimits(t *testing.T) {
	for _, tc := range []struct {
		name                string
		cfg                 Config
		wantHung, wantCycle time.Duration
	}{
		{"defaults", Config{}, 15 * time.Minute, 3 * time.Minute},
		{"derived from the timeout", Config{CollectorTimeout: 5 * time.Minute}, 15 * time.Minute, 11 * time.Minute},
		{"set", Config{HungCollectorLimit: time.Hour, CycleLimit: 2 * time.Minute}, time.Hour, 2 * time.Minute},
		{"never below the timeout", Config{CollectorTimeout: 20 * time.Minute, HungCollectorLimit: time.Minute}, 20 * time.Minute, 41 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.Host = &platform.Live{Root: t.TempDir()}
			c.fill()
			if c.HungCollectorLimit != tc.wantHung || c.CycleLimit != tc.wantCycle {
				t.Errorf("limits %s, %s; want %s, %s", c.HungCollectorLimit, c.CycleLimit, tc.wantHung, tc.wantCycle)
			}
		})
	}
}

// runAgent runs a in the background; the returned channel yields Run's
// error.
func runAgent(t *testing.T, a *Agent) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- a.Run(context.Background(), false, 0) }()
	return errc
}

// notReturned fails the test if Run has returned: after two ticks the
// watchdog has finished one look and found nothing.
func notReturned(t *testing.T, clk *fakeClock, errc <-chan error, when string) {
	t.Helper()
	if !clk.tick() || !clk.tick() {
		t.Fatalf("%s: the watchdog stopped looking", when)
	}
	select {
	case err := <-errc:
		t.Fatalf("%s: Run returned %v", when, err)
	default:
	}
}

func returned(t *testing.T, clk *fakeClock, errc <-chan error) error {
	t.Helper()
	clk.tick()
	select {
	case err := <-errc:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func TestRunFailsOnHungCollector(t *testing.T) {
	hung := newHangingCollector(t, "hung")
	a, clk, logs := newTestAgent(t, Config{CollectorTimeout: 10 * time.Millisecond, CycleLimit: 24 * time.Hour}, hung, fakeCollector{name: "ok"})
	errc := runAgent(t, a)
	hung.waitStarted(t)
	// The cycle abandons the collector after its timeout and finishes: the
	// agent is idle, waiting for the next cycle, when the limit passes.
	waitCycleDone(t, a)
	clk.advance(15 * time.Minute)
	notReturned(t, clk, errc, "at the limit")
	clk.advance(time.Second)
	err := returned(t, clk, errc)
	if !errors.Is(err, ErrCollectorHung) || !strings.Contains(err.Error(), `"hung"`) || !strings.Contains(err.Error(), "15m1s") {
		t.Fatalf("Run = %v, want ErrCollectorHung naming hung and how long", err)
	}
	attrs, ok := logs.find(slog.LevelError, "collector hung")
	if !ok || attrs["collector"] != "hung" {
		t.Errorf("error log = %v, %v; want one naming the collector", attrs, ok)
	}
	// What the cycle collected is in the outbox, and it closes cleanly.
	st, err := a.outbox.Stats()
	if err != nil || st.Depth < 2 {
		t.Errorf("outbox depth %d (%v): the first cycle's observations were not kept", st.Depth, err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestRunFailsOnHungCycle(t *testing.T) {
	// The collector's timeout is long, so the cycle itself hangs.
	hung := newHangingCollector(t, "hung")
	a, clk, logs := newTestAgent(t, Config{CollectorTimeout: time.Hour, HungCollectorLimit: 2 * time.Hour, CycleLimit: time.Minute}, hung)
	errc := runAgent(t, a)
	hung.waitStarted(t)
	clk.advance(time.Minute)
	notReturned(t, clk, errc, "at the limit")
	clk.advance(time.Second)
	err := returned(t, clk, errc)
	if !errors.Is(err, ErrCycleHung) || errors.Is(err, ErrCollectorHung) || !strings.Contains(err.Error(), "1m1s") {
		t.Fatalf("Run = %v, want ErrCycleHung saying how long", err)
	}
	attrs, ok := logs.find(slog.LevelError, "cycle hung")
	if !ok || attrs["collectors_in_flight"] != "[hung]" {
		t.Errorf("error log = %v, %v; want one naming the collectors in flight", attrs, ok)
	}
	// The stuck cycle holds no outbox transaction: Close does not wait.
	if err := a.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	hung.unblock()
	waitCycleDone(t, a)
}
