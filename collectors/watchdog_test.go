package collectors_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
)

// hanging is a collector whose first run ignores its context and blocks until
// the test releases it (a read stuck in the kernel); later runs return at
// once. Each run is counted and announced on started.
type hanging struct {
	name    string
	release chan struct{}
	started chan struct{}
	runs    atomic.Int32

	unblockOnce sync.Once
}

func newHanging(t *testing.T, name string) *hanging {
	h := &hanging{name: name, release: make(chan struct{}), started: make(chan struct{}, 16)}
	t.Cleanup(h.unblock)
	return h
}

func (h *hanging) Name() string { return h.name }

func (h *hanging) Collect(context.Context, platform.Host) (collectors.Result, error) {
	n := h.runs.Add(1)
	h.started <- struct{}{}
	if n == 1 {
		<-h.release
	}
	return collectors.Result{Payload: map[string]int32{"run": n}}, nil
}

// unblock lets the stuck run return; safe to call twice.
func (h *hanging) unblock() { h.unblockOnce.Do(func() { close(h.release) }) }

// waitStarted waits for one more run to start.
func (h *hanging) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-h.started:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never started", h.name)
	}
}

// waitReturned waits (bounded) until the watchdog knows no run of name.
func waitReturned(t *testing.T, w *collectors.Watchdog, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		found := false
		for _, r := range w.Inflight() {
			found = found || r.Collector == name
		}
		if !found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still in flight after it was released: %+v", name, w.Inflight())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWatchdogHungCollector(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	hung := newHanging(t, "hung")
	var okRuns atomic.Int32
	reg := mustRegistry(t, hung, fake{name: "ok", collect: func(context.Context, platform.Host) (collectors.Result, error) {
		return collectors.Result{Payload: okRuns.Add(1)}, nil
	}})
	w := collectors.NewWatchdog()
	const timeout = 20 * time.Millisecond
	wantHung := "still hung since 2026-03-04T04:06:07Z (previous run abandoned after 20ms); not started again"

	type want struct {
		status collectors.Status
		err    string // substring of Observation.Error; "" means none
	}
	cycles := []struct {
		name     string
		before   func()
		hung, ok want
		hungRuns int32 // runs of hung started so far
		inflight []collectors.Inflight
	}{
		{
			name:     "first run abandoned after its timeout",
			hung:     want{collectors.StatusError, "did not finish"},
			ok:       want{collectors.StatusOK, ""},
			hungRuns: 1,
			inflight: []collectors.Inflight{{Collector: "hung", Since: t0, Timeout: timeout, Abandoned: true}},
		},
		{
			name:     "not started again while stuck",
			before:   func() { advance(time.Hour) },
			hung:     want{collectors.StatusError, wantHung},
			ok:       want{collectors.StatusOK, ""},
			hungRuns: 1,
			inflight: []collectors.Inflight{{Collector: "hung", Since: t0, Timeout: timeout, Abandoned: true}},
		},
		{
			name:     "still not started a cycle later",
			before:   func() { advance(time.Hour) },
			hung:     want{collectors.StatusError, wantHung},
			ok:       want{collectors.StatusOK, ""},
			hungRuns: 1,
			inflight: []collectors.Inflight{{Collector: "hung", Since: t0, Timeout: timeout, Abandoned: true}},
		},
		{
			name: "runs again once the stuck goroutine returned",
			before: func() {
				hung.unblock()
				waitReturned(t, w, "hung")
			},
			hung:     want{collectors.StatusOK, ""},
			ok:       want{collectors.StatusOK, ""},
			hungRuns: 2,
			inflight: []collectors.Inflight{},
		},
	}
	for i, c := range cycles {
		if c.before != nil {
			c.before()
		}
		obs := w.RunAll(context.Background(), reg, nil, timeout, clock)
		if len(obs) != 2 || obs[0].Collector != "hung" || obs[1].Collector != "ok" {
			t.Fatalf("cycle %d (%s): observations %+v", i, c.name, obs)
		}
		for j, wt := range []want{c.hung, c.ok} {
			o := obs[j]
			if o.Status != wt.status || (wt.err == "") != (o.Error == "") || !strings.Contains(o.Error, wt.err) {
				t.Errorf("cycle %d (%s): %s = %s %q, want %s %q", i, c.name, o.Collector, o.Status, o.Error, wt.status, wt.err)
			}
			if !o.CollectedAt.Equal(clock()) {
				t.Errorf("cycle %d (%s): %s collected at %v, want %v", i, c.name, o.Collector, o.CollectedAt, clock())
			}
		}
		if got := hung.runs.Load(); got != c.hungRuns {
			t.Errorf("cycle %d (%s): hung started %d times, want %d", i, c.name, got, c.hungRuns)
		}
		if got := okRuns.Load(); got != int32(i+1) {
			t.Errorf("cycle %d (%s): ok ran %d times, want %d: one hung collector held up another", i, c.name, got, i+1)
		}
		got := w.Inflight()
		if len(got) != len(c.inflight) {
			t.Fatalf("cycle %d (%s): in flight %+v, want %+v", i, c.name, got, c.inflight)
		}
		for k := range got {
			g, wt := got[k], c.inflight[k]
			if g.Collector != wt.Collector || !g.Since.Equal(wt.Since) || g.Timeout != wt.Timeout || g.Abandoned != wt.Abandoned {
				t.Errorf("cycle %d (%s): in flight %+v, want %+v", i, c.name, g, wt)
			}
		}
		if h := w.Hung(); len(h) != len(c.inflight) {
			t.Errorf("cycle %d (%s): Hung = %+v, want the abandoned runs %+v", i, c.name, h, c.inflight)
		}
	}
}

func TestWatchdogRun(t *testing.T) {
	t.Run("a run that returns in time leaves nothing behind", func(t *testing.T) {
		for _, c := range []collectors.Collector{
			fake{name: "ok"},
			fake{name: "panics", collect: func(context.Context, platform.Host) (collectors.Result, error) { panic("no") }},
		} {
			w := collectors.NewWatchdog()
			for i := range 3 {
				obs := w.Run(context.Background(), c, nil, time.Minute, time.Now)
				if strings.Contains(obs.Error, "not started again") {
					t.Fatalf("%s run %d: %q", c.Name(), i, obs.Error)
				}
				if got := w.Inflight(); len(got) != 0 {
					t.Fatalf("%s run %d: in flight %+v after it returned", c.Name(), i, got)
				}
			}
		}
	})

	t.Run("a run still within its timeout is not started twice", func(t *testing.T) {
		w := collectors.NewWatchdog()
		h := newHanging(t, "slow")
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		first := make(chan collectors.Observation, 1)
		go func() { first <- w.Run(context.Background(), h, nil, time.Hour, func() time.Time { return at }) }()
		h.waitStarted(t)
		obs := w.Run(context.Background(), h, nil, time.Hour, func() time.Time { return at })
		if want := "still running since 2026-01-02T03:04:05Z (another run, timeout 1h0m0s); not started again"; obs.Status != collectors.StatusError || obs.Error != want {
			t.Errorf("second run = %s %q, want error %q", obs.Status, obs.Error, want)
		}
		if got := w.Hung(); len(got) != 0 {
			t.Errorf("Hung = %+v: a run within its timeout is not hung", got)
		}
		h.unblock()
		select {
		case o := <-first:
			if o.Status != collectors.StatusOK {
				t.Errorf("first run = %s %q", o.Status, o.Error)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("first run did not return")
		}
		if got := h.runs.Load(); got != 1 {
			t.Errorf("started %d times, want 1", got)
		}
		if got := w.Inflight(); len(got) != 0 {
			t.Errorf("in flight %+v after the run returned", got)
		}
	})

	t.Run("watchdogs and plain runs do not share state", func(t *testing.T) {
		h := newHanging(t, "hung")
		w := collectors.NewWatchdog()
		if obs := w.Run(context.Background(), h, nil, 10*time.Millisecond, time.Now); !strings.Contains(obs.Error, "did not finish") {
			t.Fatalf("first run: %q", obs.Error)
		}
		// Another watchdog (another agent) and the plain Run know nothing
		// of it.
		if obs := collectors.NewWatchdog().Run(context.Background(), h, nil, 10*time.Millisecond, time.Now); strings.Contains(obs.Error, "not started again") {
			t.Errorf("a fresh watchdog refused: %q", obs.Error)
		}
		if obs := collectors.Run(context.Background(), h, nil, 10*time.Millisecond, time.Now); strings.Contains(obs.Error, "not started again") {
			t.Errorf("plain Run refused: %q", obs.Error)
		}
		if obs := w.Run(context.Background(), h, nil, 10*time.Millisecond, time.Now); !strings.Contains(obs.Error, "still hung since") {
			t.Errorf("the watchdog that saw it hang: %q, want still hung", obs.Error)
		}
	})
}
