package controls

import (
	"fmt"
	"slices"
	"time"
)

// Bounds of a pushed collection interval: agents refuse anything outside.
const (
	MinCollectionInterval = time.Second
	MaxCollectionInterval = 7 * 24 * time.Hour
)

// Collection is a policy's collection schedule: a default, and overrides
// for the devices of policy groups.
type Collection struct {
	Schedule
	// Groups override the default for a group's devices. A device in
	// several groups gets, for the cycle and for each collector, the
	// shortest interval any of them sets.
	Groups map[string]Schedule `json:"groups,omitempty"`
}

// Schedule is a cycle interval and per-collector intervals, as Go
// durations ("15m", "6h"); empty keeps what applies otherwise.
type Schedule struct {
	Interval   Duration            `json:"interval,omitzero"`
	Collectors map[string]Duration `json:"collectors,omitempty"`
}

func (s Schedule) check(where string) []error {
	var errs []error
	in := func(what string, d time.Duration) {
		if d != 0 && (d < MinCollectionInterval || d > MaxCollectionInterval) {
			errs = append(errs, fmt.Errorf("collection%s: %s %s is outside %s to %s", where, what, d, MinCollectionInterval, MaxCollectionInterval))
		}
	}
	in("interval", s.Interval.Duration)
	for c, d := range s.Collectors {
		if c == "" || len(c) > 64 {
			errs = append(errs, fmt.Errorf("collection%s: collector name %q is empty or longer than 64", where, c))
		}
		in("collector "+c+" interval", d.Duration)
	}
	return errs
}

func (c *Collection) check(groups map[string]string) []error {
	errs := c.Schedule.check("")
	names := make([]string, 0, len(c.Groups))
	for g := range c.Groups {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		if _, ok := groups[g]; !ok {
			errs = append(errs, fmt.Errorf("collection: group %q is not defined in groups", g))
		}
		errs = append(errs, c.Groups[g].check(" for group "+g)...)
	}
	return errs
}

// ScheduleFor is the collection schedule of a device with these facts:
// the default, shortened by each policy group it is in. Zero intervals
// leave the agent's own; nil when the policy sets no schedule.
func (p *Policy) ScheduleFor(d *DeviceFacts) *Schedule {
	if p.Collection == nil {
		return nil
	}
	out := &Schedule{Interval: p.Collection.Interval, Collectors: map[string]Duration{}}
	for c, d := range p.Collection.Collectors {
		out.Collectors[c] = d
	}
	facts, _ := p.GroupsOf(d) // a group whose expression fails does not apply
	shorter := func(cur, d Duration) Duration {
		if d.Duration != 0 && (cur.Duration == 0 || d.Duration < cur.Duration) {
			return d
		}
		return cur
	}
	for _, g := range facts.Groups {
		gs, ok := p.Collection.Groups[g]
		if !ok {
			continue
		}
		out.Interval = shorter(out.Interval, gs.Interval)
		for c, d := range gs.Collectors {
			out.Collectors[c] = shorter(out.Collectors[c], d)
		}
	}
	return out
}
