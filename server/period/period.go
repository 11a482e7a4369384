// Package period builds the SOC 2 Type II period report (README: For auditors): for a
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
//
// Waivers (approved exceptions, store.Waiver): exception time of a device
// and control while a waiver for it is in force ([StartsAt, min(ExpiresAt,
// RevokedAt)))) is still listed as an exception, marked Waived with the
// waiver and its approver, and counted in WaivedSeconds. CompliantPercent
// counts pass time only, waived or not: a waiver explains an exception, it
// does not make the device compliant. CompliantOrWaivedPercent counts pass
// and waived time. An expired or revoked waiver waives nothing after its end.
//
// Population completeness: the newest imported inventory (store.Inventory)
// is reconciled against the devices enrolled before the period end:
// inventory devices never enrolled, inventory devices enrolled but silent
// in the period, and enrolled devices missing from the inventory.
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
	"github.com/evident-dev/evident/server/sla"
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
	// PatchSLA, when positive, adds the security-update SLA figures: the
	// share of security updates applied within PatchSLA of first being
	// seen pending (package sla).
	PatchSLA time.Duration
}

// DefaultPatchSLA is the security-update SLA reports use unless told
// otherwise: 14 days, DC-PATCH-01's default window.
const DefaultPatchSLA = 14 * 24 * time.Hour

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
	// Retired are the devices retired before To: counted up to their
	// retirement (not at all when it came before From), so a disposed
	// laptop does not become a growing exception.
	Retired []DeviceRef     `json:"retired"`
	Sample  []SampledDevice `json:"sample"`
	// Waivers are every waiver in force at some time of the period, used
	// or not, so an auditor sees every exception granted.
	Waivers []WaiverRef `json:"waivers"`
	// Population reconciles the fleet with the imported inventory.
	Population Population `json:"population"`
	// PatchSLA is the fleet's security-update SLA over the period (nil
	// unless Options.PatchSLA was set).
	PatchSLA *sla.Figures `json:"patch_sla,omitempty"`

	// CountedTo is min(To, Now): time after it is not counted.
	CountedTo time.Time `json:"counted_to"`
	// SampleFrom is how many devices the sample was drawn from: those in
	// any control's population.
	SampleFrom int `json:"sample_from"`
}

// DeviceRef names a device.
type DeviceRef struct {
	ID           string     `json:"id"`
	Hostname     string     `json:"hostname"`
	SerialNumber string     `json:"serial_number,omitempty"`
	OS           string     `json:"os"`
	EnrolledAt   time.Time  `json:"enrolled_at"`
	LastSeenAt   *time.Time `json:"last_seen_at,omitempty"`
	// RetiredAt is when the device was retired (it left the fleet: the
	// period counts it up to then only), with the reason given.
	RetiredAt    *time.Time `json:"retired_at,omitempty"`
	RetireReason string     `json:"retire_reason,omitempty"`
	// PreviousID is the identity this machine had before it enrolled
	// again (the same machine id), ReplacedBy the one it enrolled as
	// next: one machine, counted once in the population, its older
	// identity counted only up to the newer one's enrollment.
	PreviousID string `json:"previous_id,omitempty"`
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// ControlPeriod is one control over the period.
// InScope says whether any device was in the control's scope in the
// period: without one, its percentages mean nothing (pct.NA).
func (c ControlPeriod) InScope() bool { return c.Population > 0 || c.InScopeSeconds > 0 }

type ControlPeriod struct {
	ID       string   `json:"id"`
	Title    string   `json:"title"`
	Criteria []string `json:"criteria"`
	// Population is the number of machines in scope: a machine enrolled
	// again (DeviceRef.PreviousID) counts once.
	Population int `json:"population"`
	// InScopeSeconds and CompliantSeconds are device-seconds.
	InScopeSeconds   int64 `json:"in_scope_seconds"`
	CompliantSeconds int64 `json:"compliant_seconds"`
	// CompliantPercent is 100 × compliant / in scope (0 with no scope):
	// pass time only, waived exceptions are not compliant time.
	CompliantPercent float64 `json:"compliant_percent"`
	// WaivedSeconds is the exception device-time covered by a waiver.
	WaivedSeconds int64 `json:"waived_seconds"`
	// Grace is the control's grace period ("" without one) and
	// InGraceSeconds the failing device-time within it: a newly failing
	// device has that long to remediate before its failure is an
	// exception. It is neither compliant nor an exception.
	Grace          string `json:"grace,omitempty"`
	InGraceSeconds int64  `json:"in_grace_seconds"`
	// CompliantOrWaivedPercent is 100 × (compliant + waived) / in scope.
	CompliantOrWaivedPercent float64 `json:"compliant_or_waived_percent"`
	// DevicesAlwaysCompliant counts devices with no exception in the
	// period, waived or not.
	DevicesAlwaysCompliant int `json:"devices_always_compliant"`
	// DevicesCompliantOrWaived counts devices whose every exception was
	// waived (including those with none).
	DevicesCompliantOrWaived int         `json:"devices_compliant_or_waived"`
	Exceptions               []Exception `json:"exceptions"`
	// Waivers are the waivers that waived time of this control, with the
	// time each waived here.
	Waivers []WaiverRef `json:"waivers"`
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
	// Waived is true when a waiver was in force for all of the interval
	// (an exception partly waived is split at the waiver's bounds).
	Waived       bool   `json:"waived"`
	WaiverID     string `json:"waiver_id,omitempty"`
	WaiverReason string `json:"waiver_reason,omitempty"`
	Approver     string `json:"approver,omitempty"`
}

// WaiverRef is a waiver as the report shows it.
type WaiverRef struct {
	ID        string     `json:"id"`
	DeviceID  string     `json:"device_id"`
	Hostname  string     `json:"hostname"`
	ControlID string     `json:"control_id"` // empty: every control
	Reason    string     `json:"reason"`
	Approver  string     `json:"approver"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	StartsAt  time.Time  `json:"starts_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// WaivedSeconds is the exception time it waived in the period (of one
	// control in ControlPeriod.Waivers, of all of them in Report.Waivers).
	WaivedSeconds int64 `json:"waived_seconds"`
}

// Population is the reconciliation of the fleet with the imported device
// inventory. Imported is false (and the lists empty) when no inventory was
// ever imported.
//
// An inventory row matches the enrolled devices with its serial number
// (trimmed, case-insensitive); a row without a serial number, or whose
// serial number matches no device, matches by hostname (case-insensitive,
// the short name before the first dot) the devices that report no serial
// number or the same one. Devices enrolled after the period end are not
// enrolled for this report.
type Population struct {
	Imported            bool       `json:"imported"`
	InventoryImportedAt *time.Time `json:"inventory_imported_at,omitempty"`
	InventorySource     string     `json:"inventory_source,omitempty"`
	InventoryFilename   string     `json:"inventory_filename,omitempty"`
	InventorySHA256     string     `json:"inventory_sha256,omitempty"`
	InventoryRows       int        `json:"inventory_rows"`
	// Matched counts inventory rows matched to an enrolled device (silent
	// ones included).
	Matched                  int            `json:"matched"`
	NeverEnrolledCount       int            `json:"never_enrolled_count"`
	SilentCount              int            `json:"silent_count"`
	NotInInventoryCount      int            `json:"not_in_inventory_count"`
	InInventoryNeverEnrolled []InventoryRow `json:"in_inventory_never_enrolled"`
	// InInventorySilent are inventory devices enrolled but with no
	// observation received in the period (see Report.NeverReported).
	InInventorySilent      []Match     `json:"in_inventory_silent"`
	EnrolledNotInInventory []DeviceRef `json:"enrolled_not_in_inventory"`
}

// InventoryRow is one row of the imported inventory.
type InventoryRow struct {
	Line         int    `json:"line"`
	SerialNumber string `json:"serial_number,omitempty"`
	Hostname     string `json:"hostname,omitempty"`
	Owner        string `json:"owner,omitempty"`
}

// Match is an inventory row and the enrolled device it matched (the newest
// enrolled, when several did).
type Match struct {
	Row       InventoryRow `json:"inventory"`
	Device    DeviceRef    `json:"device"`
	MatchedBy string       `json:"matched_by"` // "serial_number" or "hostname"
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

// minGap is the shortest stretch without evidence that counts: the moments
// between an enrollment and the device's first report (it lands within a
// second) are neither compliant nor an exception, whether no interval
// covers them or the unknown one recorded at enrollment.
const minGap = time.Second

// Build computes the period report from the store: one range scan of the
// control intervals overlapping the period, one query for the devices that
// reported, one for the waivers in force during the period, one read of the
// imported inventory, and the full history (with evidence) of the sampled
// devices only.
//
// Durations are exact (nanoseconds) while they add up; the seconds
// reported are rounded to the nearest second, and CompliantPercent is
// computed from the exact durations.
// Store is what a period report reads: the intervals overlapping the
// period, the devices, the waivers, the inventory, and the evidence
// history of the sampled devices (and of every device for the patch SLA).
type Store interface {
	store.Periods
	sla.History
	Inventory(ctx context.Context) (store.InventoryImport, []store.InventoryRow, error)
	Devices(ctx context.Context) ([]store.Device, error)
	StateHistory(ctx context.Context, deviceID string) ([]store.ControlState, error)
	WaiversOverlapping(ctx context.Context, from, to time.Time) ([]store.Waiver, error)
}

func Build(ctx context.Context, st Store, p *controls.Policy, opt Options) (*Report, error) {
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
		Sample: []SampledDevice{}, Waivers: []WaiverRef{}, Retired: []DeviceRef{},
	}
	// A machine enrolled again (a lapsed certificate, a reinstall) is one
	// machine with several identities: each older identity counts up to
	// the next one's enrollment, and all count as one in the population.
	previous, successor := map[string]string{}, map[string]store.Device{}
	for _, d := range all {
		if d.PreviousID == "" || !d.EnrolledAt.Before(to) {
			continue
		}
		previous[d.ID] = d.PreviousID
		if s, ok := successor[d.PreviousID]; !ok || d.EnrolledAt.Before(s.EnrolledAt) {
			successor[d.PreviousID] = d
		}
	}
	machine := func(id string) string {
		for range len(previous) + 1 {
			p, ok := previous[id]
			if !ok {
				break
			}
			id = p
		}
		return id
	}
	devs := map[string]*device{}
	for _, d := range all {
		if !d.EnrolledAt.Before(to) {
			continue
		}
		ref := DeviceRef{ID: d.ID, Hostname: d.Hostname, SerialNumber: d.SerialNumber, OS: d.OS(),
			EnrolledAt: d.EnrolledAt.UTC(), LastSeenAt: d.LastSeenAt, PreviousID: previous[d.ID]}
		dv := &device{ref: ref, start: from, end: end, seen: make([]bool, len(p.Controls)), machine: machine(d.ID)}
		if next, ok := successor[d.ID]; ok {
			if !next.EnrolledAt.After(from) {
				continue // replaced before the period: the newer identity is the machine
			}
			dv.ref.ReplacedBy, ref.ReplacedBy = next.ID, next.ID
			dv.end = minTime(dv.end, next.EnrolledAt.UTC())
		}
		if d.Retired && d.RevokedAt != nil && d.RevokedAt.Before(to) {
			at := d.RevokedAt.UTC()
			ref.RetiredAt, ref.RetireReason = &at, d.RevokeReason
			dv.ref = ref
			r.Retired = append(r.Retired, ref)
			if !at.After(from) {
				continue // gone before the period: not in it
			}
			dv.end = minTime(dv.end, at)
		}
		r.Devices = append(r.Devices, ref)
		if dv.start.Before(ref.EnrolledAt) {
			dv.start = ref.EnrolledAt
		}
		devs[d.ID] = dv
	}
	slices.SortFunc(r.Devices, func(a, b DeviceRef) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(r.Retired, func(a, b DeviceRef) int { return strings.Compare(a.ID, b.ID) })

	reported, err := st.DevicesReportedBetween(ctx, from, to)
	if err != nil {
		return nil, err
	}
	for _, d := range r.Devices {
		if !reported[d.ID] {
			r.NeverReported = append(r.NeverReported, d)
		}
	}
	if r.Population, err = population(ctx, st, r.Devices, reported); err != nil {
		return nil, err
	}

	waivers, err := st.WaiversOverlapping(ctx, from, to)
	if err != nil {
		return nil, err
	}
	used := map[string]*total{} // waiver id: time waived, all controls
	for _, w := range waivers {
		if d := devs[w.DeviceID]; d != nil {
			d.waivers = append(d.waivers, w)
		}
		used[w.ID] = &total{}
	}

	acc := make([]control, len(p.Controls))
	index := map[string]int{}
	for i, c := range p.Controls {
		index[c.ID] = i
		acc[i].id, acc[i].exceptions, acc[i].waivers = c.ID, []Exception{}, map[string]*total{}
		acc[i].grace = c.Grace.Duration
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
			ID: c.ID, Title: c.Title, Criteria: c.Criteria, Population: len(a.machines),
			InScopeSeconds: a.inScope.seconds(), CompliantSeconds: a.compliant.seconds(), WaivedSeconds: a.waived.seconds(),
			InGraceSeconds: a.inGrace.seconds(), Grace: graceString(a.grace),
			DevicesAlwaysCompliant:   len(a.machines) - len(a.withExceptions),
			DevicesCompliantOrWaived: len(a.machines) - len(a.withUnwaived),
			Exceptions:               a.exceptions, Waivers: []WaiverRef{},
		}
		if cp.Criteria == nil {
			cp.Criteria = []string{}
		}
		if s := a.inScope.float(); s > 0 {
			cp.CompliantPercent = 100 * a.compliant.float() / s
			cp.CompliantOrWaivedPercent = 100 * (a.compliant.float() + a.waived.float()) / s
		}
		for _, w := range waivers {
			if t := a.waivers[w.ID]; t != nil {
				cp.Waivers = append(cp.Waivers, waiverRef(w, devs, t.seconds()))
				used[w.ID].addTotal(*t)
			}
		}
		r.Controls[i] = cp
		for id := range a.population {
			inAny[id] = true
		}
	}

	for _, w := range waivers {
		r.Waivers = append(r.Waivers, waiverRef(w, devs, used[w.ID].seconds()))
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
	if opt.PatchSLA > 0 {
		ids := make([]string, 0, len(r.Devices))
		for _, d := range r.Devices {
			ids = append(ids, d.ID)
		}
		total, _, err := sla.Fleet(ctx, st, ids, from, to, opt.PatchSLA)
		if err != nil {
			return nil, fmt.Errorf("patch SLA: %w", err)
		}
		r.PatchSLA = &total
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
	// machine names the machine across its identities (its first one).
	machine string
	seen    []bool // per policy control: had an interval in the period
	waivers []store.Waiver
}

// control accumulates one control over the fleet.
type control struct {
	id                           string
	grace                        time.Duration // the policy's grace period for newly failing devices
	inScope, compliant, waived   total
	inGrace                      total
	population                   map[string]bool // device ids
	machines                     map[string]bool // what the population counts
	withExceptions, withUnwaived map[string]bool // machines
	exceptions                   []Exception
	waivers                      map[string]*total // waiver id: time waived
}

// account adds one device's intervals of this control (ordered by since,
// all overlapping the period) to the totals. Time of the device's window
// not covered by an interval is unknown, with NoEvidence as its cause.
func (c *control) account(d *device, ivs []store.ControlState) {
	if !d.start.Before(d.end) {
		return
	}
	var inScope time.Duration
	exceptions, unwaived := 0, 0
	except := func(status, cause string, seq uint64, start, end time.Time, open bool) {
		exceptions++
		for _, p := range waive(d.waivers, c.id, start, end) {
			e := Exception{
				DeviceID: d.ref.ID, Hostname: d.ref.Hostname, ControlID: c.id, Status: status,
				Start: p.start, End: p.end, DurationSeconds: seconds(p.end.Sub(p.start)), Open: open && p.end.Equal(end),
				Cause: cause, EvidenceSeq: seq,
			}
			if w := p.waiver; w != nil {
				e.Waived, e.WaiverID, e.WaiverReason, e.Approver = true, w.ID, w.Reason, w.Approver
				c.waived.add(p.end.Sub(p.start))
				if c.waivers[w.ID] == nil {
					c.waivers[w.ID] = &total{}
				}
				c.waivers[w.ID].add(p.end.Sub(p.start))
			} else {
				unwaived++
			}
			c.exceptions = append(c.exceptions, e)
		}
	}
	cursor := d.start
	for _, iv := range ivs {
		s, e, open := iv.Since, d.end, d.ref.RetiredAt == nil // a retired device's intervals end with it
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
		if !open && iv.Status == store.Unknown && iv.EvidenceSeq == 0 && e.Sub(s) < minGap {
			// No evidence for less than minGap (recorded at enrollment,
			// closed by the first report): counted as the gap it is.
			continue
		}
		if gap := s.Sub(cursor); gap >= minGap {
			inScope += gap
			except(store.Unknown, NoEvidence, 0, cursor, s, false)
		}
		dur := e.Sub(s)
		switch k, status := classify(iv); k {
		case outOfScope:
		case compliant:
			inScope += dur
			c.compliant.add(dur)
		default:
			inScope += dur
			cause := iv.Reason
			if status == store.Fail && c.grace > 0 {
				// The grace runs from the start of the failure (the stored
				// interval's, even before the period), so a failure only
				// becomes an exception once it has lasted the grace.
				if graceEnd := iv.Since.Add(c.grace); graceEnd.After(s) {
					g := minTime(graceEnd, e)
					c.inGrace.add(g.Sub(s))
					s = g
				}
				cause += fmt.Sprintf(" (failing since %s, past the %s grace period)", iv.Since.UTC().Format(time.RFC3339), graceString(c.grace))
			}
			if e.Sub(s) > 0 {
				except(status, cause, iv.EvidenceSeq, s, e, open)
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
			c.population, c.machines, c.withExceptions, c.withUnwaived = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
		}
		c.population[d.ref.ID] = true
		c.machines[d.machine] = true
		c.inScope.add(inScope)
		if exceptions > 0 {
			c.withExceptions[d.machine] = true
		}
		if unwaived > 0 {
			c.withUnwaived[d.machine] = true
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

func (t *total) addTotal(u total) {
	t.sec += u.sec
	t.nsec += u.nsec
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

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// graceString spells a grace period in days when it is whole days.
func graceString(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	default:
		return d.String()
	}
}
