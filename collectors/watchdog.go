package collectors

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/evident-dev/evident/platform"
)

// Watchdog remembers, across collection cycles, which collector runs have not
// returned. A collector abandoned after its timeout (stuck in a read that
// ignores its context: a hung NFS or /sys file) is not started again while
// its goroutine is still stuck, so abandoned goroutines never pile up; each
// run it skips is reported as an error observation, so the gap is evidence.
// Once the stuck goroutine returns, the collector runs normally again.
//
// The agent owns one Watchdog for its lifetime; the zero value is not
// usable, use NewWatchdog.
type Watchdog struct {
	mu      sync.Mutex
	running map[string]*inflight
}

// inflight is one collector run that has not returned.
type inflight struct {
	since     time.Time
	timeout   time.Duration
	abandoned bool
}

// Inflight describes a collector run that has not returned.
type Inflight struct {
	Collector string
	// Since is when the run started.
	Since time.Time
	// Timeout is the run's timeout.
	Timeout time.Duration
	// Abandoned is true once the run outlived its timeout (or its cycle was
	// cancelled) and the cycle went on without it: the collector is hung.
	Abandoned bool
}

// NewWatchdog returns a watchdog that knows of no runs.
func NewWatchdog() *Watchdog { return &Watchdog{running: map[string]*inflight{}} }

// Run is collectors.Run under the watchdog: a collector whose previous run
// has not returned is not started again.
func (w *Watchdog) Run(ctx context.Context, c Collector, host platform.Host, timeout time.Duration, now func() time.Time) Observation {
	return run(ctx, c, host, timeout, now, w)
}

// RunAll is Registry.RunAll under the watchdog.
func (w *Watchdog) RunAll(ctx context.Context, r *Registry, host platform.Host, timeout time.Duration, now func() time.Time) []Observation {
	return r.runAll(ctx, host, timeout, now, w)
}

// Inflight lists the runs that have not returned, by collector name.
func (w *Watchdog) Inflight() []Inflight {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Inflight, 0, len(w.running))
	for name, r := range w.running {
		out = append(out, Inflight{Collector: name, Since: r.since, Timeout: r.timeout, Abandoned: r.abandoned})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Collector < out[j].Collector })
	return out
}

// Hung lists the abandoned runs that have not returned, by collector name.
func (w *Watchdog) Hung() []Inflight {
	var out []Inflight
	for _, r := range w.Inflight() {
		if r.Abandoned {
			out = append(out, r)
		}
	}
	return out
}

// begin records a run of name starting at since. When a previous run of
// name has not returned, it records nothing and returns why the collector
// is not started again. A nil Watchdog records nothing and allows all.
func (w *Watchdog) begin(name string, since time.Time, timeout time.Duration) (*inflight, string) {
	if w == nil {
		return nil, ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if prev, ok := w.running[name]; ok {
		at := prev.since.UTC().Format(time.RFC3339)
		if prev.abandoned {
			return nil, fmt.Sprintf("still hung since %s (previous run abandoned after %s); not started again", at, prev.timeout)
		}
		return nil, fmt.Sprintf("still running since %s (another run, timeout %s); not started again", at, prev.timeout)
	}
	r := &inflight{since: since, timeout: timeout}
	w.running[name] = r
	return r, ""
}

// abandon marks r as left behind by its cycle, unless it has returned.
func (w *Watchdog) abandon(name string, r *inflight) {
	if w == nil || r == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[name] == r {
		r.abandoned = true
	}
}

// end forgets r: its goroutine returned.
func (w *Watchdog) end(name string, r *inflight) {
	if w == nil || r == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running[name] == r {
		delete(w.running, name)
	}
}
