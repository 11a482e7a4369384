// Package period builds the SOC 2 Type II period report (DESIGN §6): for a
// period [From, To), per control, the population of devices in scope, the
// share of device-time that was compliant, every exception interval with
// its duration and cause, the devices that never reported, and a
// reproducible (seeded) random sample of devices with their evidence.
//
// Time accounting, per device and control, over the part of the period the
// device was enrolled (from max(From, EnrolledAt) to min(To, Now)):
//   - pass time is compliant;
//   - fail and unknown time are exceptions (unknown includes stale
//     evidence: a control that cannot be shown to operate does not count
//     as operating);
//   - not_applicable time is out of scope and counts in neither;
//   - time with no recorded interval (before the first evaluation) is
//     unknown: no evidence is no evidence.
//
// A device is in a control's population when any of its time in the period
// is in scope for that control.
package period

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// Options select the period and the sample.
type Options struct {
	From, To time.Time
	// Now bounds open intervals (default time.Now()); a period ending in
	// the future is counted up to Now.
	Now time.Time
	// Seed makes the sample reproducible: the same seed, period and fleet
	// give the same sample.
	Seed int64
	// SampleSize is how many devices to sample (default 25; capped at the
	// population).
	SampleSize int
}

// Report is the period report.
type Report struct {
	From          time.Time       `json:"from"`
	To            time.Time       `json:"to"`
	GeneratedAt   time.Time       `json:"generated_at"`
	Policy        string          `json:"policy"`
	Seed          int64           `json:"seed"`
	Controls      []ControlPeriod `json:"controls"`
	Devices       []DeviceRef     `json:"devices"`        // every device enrolled before To
	NeverReported []DeviceRef     `json:"never_reported"` // enrolled before To, no observation in the period
	Sample        []SampledDevice `json:"sample"`

	// CountedTo is min(To, Now): time after it is not counted.
	CountedTo time.Time `json:"counted_to"`
	// SampleFrom is how many devices the sample was drawn from: those in
	// any control's population.
	SampleFrom int `json:"sample_from"`
}

// DeviceRef names a device.
type DeviceRef struct {
	ID         string     `json:"id"`
	Hostname   string     `json:"hostname"`
	OS         string     `json:"os"`
	EnrolledAt time.Time  `json:"enrolled_at"`
	LastSeenAt *time.Time `json:"last_seen_at,omitempty"`
}

// ControlPeriod is one control over the period.
type ControlPeriod struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Criteria []string `json:"criteria"`
	// Population is the number of devices in scope.
	Population int `json:"population"`
	// InScopeSeconds and CompliantSeconds are device-seconds.
	InScopeSeconds   int64 `json:"in_scope_seconds"`
	CompliantSeconds int64 `json:"compliant_seconds"`
	// CompliantPercent is 100 × compliant / in scope (0 with no scope).
	CompliantPercent float64 `json:"compliant_percent"`
	// DevicesAlwaysCompliant counts devices with no exception in the period.
	DevicesAlwaysCompliant int         `json:"devices_always_compliant"`
	Exceptions             []Exception `json:"exceptions"`
}

// Exception is one interval of a device not meeting a control, clipped to
// the period.
type Exception struct {
	DeviceID        string    `json:"device_id"`
	Hostname        string    `json:"hostname"`
	ControlID       string    `json:"control_id"`
	Status          string    `json:"status"` // fail or unknown
	Start           time.Time `json:"start"`
	End             time.Time `json:"end"`
	DurationSeconds int64     `json:"duration_seconds"`
	// Open is true when the interval was still open at the end of the
	// period (or at Now).
	Open  bool   `json:"open"`
	Cause string `json:"cause"` // the interval's reason
	// EvidenceSeq is the observation that decided it (0 if none).
	EvidenceSeq uint64 `json:"evidence_seq,omitempty"`
}

// SampledDevice is one device of the sample with what an auditor tests:
// every control interval overlapping the period, with its evidence.
type SampledDevice struct {
	DeviceRef
	Intervals []store.ControlState `json:"intervals"`
}

// ErrBadPeriod is returned for an empty or inverted period.
var ErrBadPeriod = errors.New("the period must have from before to")

// DefaultSampleSize is the sample size when Options.SampleSize is 0.
const DefaultSampleSize = 25

// NoEvidence is the cause of an exception for time with no recorded
// interval.
const NoEvidence = "no evidence recorded"

// minGap is the shortest stretch without an interval that counts: the
// moments between an enrollment and the device's first evaluation (its
// first report lands within a second) are neither compliant nor an
// exception.
const minGap = time.Second

// Build computes the period report from the store: one range scan of the
// control intervals overlapping the period, one query for the devices that
// reported, and the full history (with evidence) of the sampled devices
// only.
//
// Durations are exact (nanoseconds) while they add up; the seconds
// reported are rounded to the nearest second, and CompliantPercent is
// computed from the exact durations.
func Build(ctx context.Context, st store.Store, p *controls.Policy, opt Options) (*Report, error) {
	if p == nil {
		return nil, errors.New("period report: no policy")
	}
	if err := opt.validate(); err != nil {
		return nil, err
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	from, to, now := opt.From.UTC(), opt.To.UTC(), now.UTC()
	end := to
	if now.Before(end) {
		end = now
	}
	size := opt.SampleSize
	if size == 0 {
		size = DefaultSampleSize
	}

	all, err := st.Devices(ctx)
	if err != nil {
		return nil, err
	}
	r := &Report{
		From: from, To: to, GeneratedAt: now, CountedTo: end, Policy: p.Name, Seed: opt.Seed,
		Controls: make([]ControlPeriod, len(p.Controls)), Devices: []DeviceRef{}, NeverReported: []DeviceRef{},
		Sample: []SampledDevice{},
	}
	devs := map[string]*device{}
	for _, d := range all {
		if !d.EnrolledAt.Before(to) {
			continue
		}
		ref := DeviceRef{ID: d.ID, Hostname: d.Hostname, OS: strings.TrimSpace(d.GOOS + " " + d.OSVersion),
			EnrolledAt: d.EnrolledAt.UTC(), LastSeenAt: d.LastSeenAt}
		r.Devices = append(r.Devices, ref)
		dv := &device{ref: ref, start: from, end: end, seen: make([]bool, len(p.Controls))}
		if dv.start.Before(ref.EnrolledAt) {
			dv.start = ref.EnrolledAt
		}
		devs[d.ID] = dv
	}
	slices.SortFunc(r.Devices, func(a, b DeviceRef) int { return strings.Compare(a.ID, b.ID) })

	reported, err := st.DevicesReportedBetween(ctx, from, to)
	if err != nil {
		return nil, err
	}
	for _, d := range r.Devices {
		if !reported[d.ID] {
			r.NeverReported = append(r.NeverReported, d)
		}
	}

	acc := make([]control, len(p.Controls))
	index := map[string]int{}
	for i, c := range p.Controls {
		index[c.ID] = i
		acc[i].id, acc[i].exceptions = c.ID, []Exception{}
	}
	if from.Before(end) {
		// Intervals arrive grouped by device and control, oldest first;
		// each group is accounted when the next one starts.
		var group []store.ControlState
		var gdev *device
		gctl := -1
		flush := func() {
			if gdev != nil && gctl >= 0 {
				gdev.seen[gctl] = true
				acc[gctl].account(gdev, group)
			}
			group = group[:0]
		}
		err := st.StatesOverlapping(ctx, from, end, func(s store.DeviceState) error {
			d, ci := devs[s.DeviceID], -1
			if i, ok := index[s.ControlID]; ok {
				ci = i
			}
			if d != gdev || ci != gctl {
				flush()
				gdev, gctl = d, ci
			}
			if d != nil && ci >= 0 {
				group = append(group, s.ControlState)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		flush()
		// A control never evaluated on a device in the period is
		// unknown for all of it.
		for _, d := range devs {
			for ci, seen := range d.seen {
				if !seen {
					acc[ci].account(d, nil)
				}
			}
		}
	}

	inAny := map[string]bool{}
	for i, c := range p.Controls {
		a := &acc[i]
		slices.SortFunc(a.exceptions, func(x, y Exception) int {
			if c := strings.Compare(x.DeviceID, y.DeviceID); c != 0 {
				return c
			}
			return x.Start.Compare(y.Start)
		})
		cp := ControlPeriod{
			ID: c.ID, Title: c.Title, Criteria: c.Criteria, Population: len(a.population),
			InScopeSeconds: a.inScope.seconds(), CompliantSeconds: a.compliant.seconds(),
			DevicesAlwaysCompliant: len(a.population) - a.withExceptions, Exceptions: a.exceptions,
		}
		if cp.Criteria == nil {
			cp.Criteria = []string{}
		}
		if s := a.inScope.float(); s > 0 {
			cp.CompliantPercent = 100 * a.compliant.float() / s
		}
		r.Controls[i] = cp
		for id := range a.population {
			inAny[id] = true
		}
	}

	var pool []DeviceRef
	for _, d := range r.Devices {
		if inAny[d.ID] {
			pool = append(pool, d)
		}
	}
	r.SampleFrom = len(pool)
	for _, d := range Sample(pool, opt.Seed, size) {
		hist, err := st.StateHistory(ctx, d.ID)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.ID, err)
		}
		sd := SampledDevice{DeviceRef: d, Intervals: []store.ControlState{}}
		for _, s := range hist {
			if s.Since.Before(to) && (s.Until == nil || s.Until.After(from)) {
				sd.Intervals = append(sd.Intervals, s)
			}
		}
		r.Sample = append(r.Sample, sd)
	}
	return r, nil
}

func (o Options) validate() error {
	switch {
	case o.From.IsZero() || o.To.IsZero():
		return fmt.Errorf("%w: from and to must both be set", ErrBadPeriod)
	case !o.From.Before(o.To):
		return fmt.Errorf("%w (from %s, to %s)", ErrBadPeriod, o.From.UTC().Format(time.RFC3339), o.To.UTC().Format(time.RFC3339))
	case o.SampleSize < 0:
		return fmt.Errorf("sample size %d: must not be negative", o.SampleSize)
	}
	return nil
}

// Sample draws up to n devices without replacement, reproducibly: the
// devices are sorted by id, then a partial Fisher-Yates shuffle driven by a
// PCG seeded with (seed, 0) picks n of them (all of them when there are
// fewer). The result is sorted by id.
func Sample(devs []DeviceRef, seed int64, n int) []DeviceRef {
	pool := slices.Clone(devs)
	slices.SortFunc(pool, func(a, b DeviceRef) int { return strings.Compare(a.ID, b.ID) })
	n = min(max(n, 0), len(pool))
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for i := range n {
		j := i + rng.IntN(len(pool)-i)
		pool[i], pool[j] = pool[j], pool[i]
	}
	out := pool[:n]
	slices.SortFunc(out, func(a, b DeviceRef) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// device is a device enrolled before the period's end, and the part of the
// period it counts for: [start, end).
type device struct {
	ref        DeviceRef
	start, end time.Time
	seen       []bool // per policy control: had an interval in the period
}

// control accumulates one control over the fleet.
type control struct {
	id                 string
	inScope, compliant total
	population         map[string]bool
	withExceptions     int
	exceptions         []Exception
}

// account adds one device's intervals of this control (ordered by since,
// all overlapping the period) to the totals. Time of the device's window
// not covered by an interval is unknown, with NoEvidence as its cause.
func (c *control) account(d *device, ivs []store.ControlState) {
	if !d.start.Before(d.end) {
		return
	}
	var inScope time.Duration
	exceptions := 0
	except := func(status, cause string, seq uint64, start, end time.Time, open bool) {
		exceptions++
		c.exceptions = append(c.exceptions, Exception{
			DeviceID: d.ref.ID, Hostname: d.ref.Hostname, ControlID: c.id, Status: status,
			Start: start, End: end, DurationSeconds: seconds(end.Sub(start)), Open: open, Cause: cause, EvidenceSeq: seq,
		})
	}
	cursor := d.start
	for _, iv := range ivs {
		s, e, open := iv.Since, d.end, true
		if s.Before(d.start) {
			s = d.start
		}
		if iv.Until != nil && !iv.Until.After(d.end) {
			e, open = *iv.Until, false
		}
		if !s.Before(e) || e.Before(cursor) {
			continue // before enrollment, or after the window
		}
		if s.Before(cursor) {
			s = cursor // overlapping intervals never count twice
		}
		if gap := s.Sub(cursor); gap >= minGap {
			inScope += gap
			except(store.Unknown, NoEvidence, 0, cursor, s, false)
		}
		dur := e.Sub(s)
		switch iv.Status {
		case store.NotApplicable:
		case store.Pass:
			inScope += dur
			c.compliant.add(dur)
		default:
			status := iv.Status
			if status != store.Fail {
				status = store.Unknown
			}
			inScope += dur
			if dur > 0 {
				except(status, iv.Reason, iv.EvidenceSeq, s, e, open)
			}
		}
		cursor = e
	}
	if gap := d.end.Sub(cursor); gap >= minGap {
		inScope += gap
		except(store.Unknown, NoEvidence, 0, cursor, d.end, true)
	}
	if inScope > 0 {
		if c.population == nil {
			c.population = map[string]bool{}
		}
		c.population[d.ref.ID] = true
		c.inScope.add(inScope)
		if exceptions > 0 {
			c.withExceptions++
		}
	}
}

// total is a sum of durations too long for a time.Duration (a fleet-year
// of device-time overflows int64 nanoseconds).
type total struct{ sec, nsec int64 }

func (t *total) add(d time.Duration) {
	t.sec += int64(d / time.Second)
	t.nsec += int64(d % time.Second)
	t.sec, t.nsec = t.sec+t.nsec/1e9, t.nsec%1e9
}

func (t total) seconds() int64 {
	if t.nsec >= 5e8 {
		return t.sec + 1
	}
	return t.sec
}

func (t total) float() float64 { return float64(t.sec) + float64(t.nsec)/1e9 }

// seconds rounds a duration to the nearest second.
func seconds(d time.Duration) int64 { return int64(d.Round(time.Second) / time.Second) }
