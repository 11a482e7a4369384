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

// Build computes the period report from the store.
func Build(ctx context.Context, st store.Store, p *controls.Policy, opt Options) (*Report, error) {
	return nil, errors.New("not implemented")
}
