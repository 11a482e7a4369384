package agent

import (
	"maps"
	"slices"
	"time"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Bounds of a schedule the server pushes: anything outside is ignored (the
// server's policy check refuses it too).
const (
	minPushedInterval = time.Second
	maxPushedInterval = 7 * 24 * time.Hour
)

// schedule is the collection schedule: the agent's own interval unless the
// server pushed one, and per-collector intervals the server pushed.
type schedule struct {
	interval   time.Duration // pushed; 0: Config.Interval
	collectors map[string]time.Duration
	lastRun    map[string]time.Time
}

// applyConfig takes the server's schedule (an empty Config restores the
// agent's own settings). It reports whether anything changed.
func (a *Agent) applyConfig(c *evidentv1.Config) bool {
	valid := func(s uint32) (time.Duration, bool) {
		d := time.Duration(s) * time.Second
		return d, s == 0 || d >= minPushedInterval && d <= maxPushedInterval
	}
	iv, ok := valid(c.GetIntervalSeconds())
	if !ok {
		a.cfg.Log.Warn("server pushed a collection interval out of bounds; ignored", "seconds", c.GetIntervalSeconds())
		iv = 0
	}
	per := map[string]time.Duration{}
	for name, s := range c.GetCollectorIntervalSeconds() {
		if d, ok := valid(s); ok && d > 0 {
			per[name] = d
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	changed := iv != a.sched.interval || !maps.Equal(per, a.sched.collectors)
	a.sched.interval, a.sched.collectors = iv, per
	if changed {
		a.cfg.Log.Info("collection schedule from the server", "interval", a.intervalLocked(), "collectors", per)
	}
	return changed
}

// intervalLocked is the cycle interval in force; a.mu held.
func (a *Agent) intervalLocked() time.Duration {
	if a.sched.interval > 0 {
		return a.sched.interval
	}
	return a.cfg.Interval
}

// nextWait is how long until the next scheduled cycle: the cycle interval,
// or a collector's own when shorter.
func (a *Agent) nextWait() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.intervalLocked()
	for _, c := range a.sched.collectors {
		d = min(d, c)
	}
	return d
}

// due lists the collectors whose own interval (the cycle interval for
// those without one) has passed since their last run, allowing for the
// schedule's ±10% jitter; nil when all are due, as always when the server
// set no collector's interval apart.
func (a *Agent) due(now time.Time, names []string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sched.collectors) == 0 {
		return nil
	}
	var out []string
	for _, n := range names {
		iv, ok := a.sched.collectors[n]
		if !ok {
			iv = a.intervalLocked()
		}
		if last, ran := a.sched.lastRun[n]; !ran || now.Sub(last) >= iv-iv/5 {
			out = append(out, n)
		}
	}
	if len(out) == len(names) {
		return nil
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// ran records when collectors ran.
func (a *Agent) ran(at time.Time, names []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sched.lastRun == nil {
		a.sched.lastRun = map[string]time.Time{}
	}
	for _, n := range names {
		a.sched.lastRun[n] = at
	}
}

// scheduleStatus is what status shows of the schedule.
func (a *Agent) scheduleStatus() (interval string, collectors map[string]string, fromServer bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sched.collectors) > 0 {
		collectors = map[string]string{}
		for _, n := range slices.Sorted(maps.Keys(a.sched.collectors)) {
			collectors[n] = a.sched.collectors[n].String()
		}
	}
	return a.intervalLocked().String(), collectors, a.sched.interval > 0 || len(a.sched.collectors) > 0
}
