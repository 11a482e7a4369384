package store

import (
	"context"
	"errors"
	"time"
)

// ErrConflict is returned by RecordStates when an interval the plan
// confirms or closes is no longer the open one (another evaluation of the
// same device landed first): read the current states again and re-plan.
var ErrConflict = errors.New("conflict: the device's open intervals changed")

// ErrBadCursor is returned for a page cursor that is malformed or belongs
// to another sort order.
var ErrBadCursor = errors.New("bad page cursor")

// Recorder is what recording an evaluation needs: the device's open
// intervals, and a plan of interval changes applied in one transaction.
// The rules that make the plan (package states) are not the store's: a
// backend only stores it, and keeps the read model's aggregates (Posture)
// in step with the intervals it writes.
type Recorder interface {
	CurrentStates(ctx context.Context, deviceID string) ([]ControlState, error)
	// RecordStates applies p in one transaction: every Confirm and Close
	// names an interval that must still be open with the status the plan
	// read, or nothing is written and ErrConflict is returned.
	RecordStates(ctx context.Context, p StatePlan) error
}

// TPMReader is what scoring reads of a device's TPM.
type TPMReader interface {
	DeviceTPM(ctx context.Context, deviceID string) (DeviceTPM, error)
	LatestAttestation(ctx context.Context, deviceID string, verifiedOnly bool) (Attestation, error)
}

// ScoreReader is everything evaluating a device reads.
type ScoreReader interface {
	TPMReader
	Device(ctx context.Context, id string) (Device, error)
	Latest(ctx context.Context, deviceID string) (map[string]Observation, error)
	History(ctx context.Context, deviceID, collector string, limit int) ([]Observation, error)
	CurrentStates(ctx context.Context, deviceID string) ([]ControlState, error)
}

// ScoreFunc evaluates a device on what r reads and returns the plan to
// record.
type ScoreFunc func(ctx context.Context, r ScoreReader) (StatePlan, error)

// ScoredIngester is a store that records a report's evaluation in the
// transaction that stores the report: one commit per report instead of
// two, and the evaluation reads what that transaction sees.
type ScoredIngester interface {
	// IngestScored stores obs as Ingest does. When any of them is new it
	// calls score with a reader of the same transaction (which sees them)
	// and applies the plan score returns there too. scoreErr is why that
	// evaluation was not recorded (score failed, or its plan conflicted
	// with another evaluation: ErrConflict); the evidence is committed all
	// the same, and the caller scores the device on its own. Nothing is
	// evaluated when no observation is new (n == 0).
	IngestScored(ctx context.Context, deviceID string, obs []Observation, receivedAt time.Time, score ScoreFunc) (n int, scoreErr, err error)
}

// StatePlan is one evaluation of a device as interval changes.
type StatePlan struct {
	DeviceID string
	At       time.Time
	// Confirm extends open intervals (ID, ControlID, Status) whose status
	// holds: reason, evidence and evaluation time are updated, evaluations
	// counted.
	Confirm []ControlState
	// Close ends open intervals (ID, ControlID, Status, Until).
	Close []ControlState
	// Open starts new intervals.
	Open []ControlState
	// Compliant is the device's posture after the plan: every control of
	// the policy passes or does not apply. Groups are the policy's device
	// groups it is in.
	Compliant bool
	Groups    []string
	// RescoreAt is when this evaluation can next change with time alone
	// (evidence going stale, a grace period ending): the periodic rescore
	// evaluates the device again once it has passed. Zero: at every
	// periodic rescore.
	RescoreAt time.Time
}

// Status a device list filter uses for a control with no open interval.
const NoData = "no_data"

// Posture is the read model: what the fleet overview, the device lists,
// device pages and the API read, never by re-scoring. Its aggregates are
// kept by the store in the transaction that writes the intervals, so every
// front end reads the same states at the same instant.
type Posture interface {
	// FleetCounts returns the current aggregates.
	FleetCounts(ctx context.Context) (FleetCounts, error)
	// DailyCounts returns the aggregates as they stood at the end of each
	// UTC day from the day of from to the day of to, oldest first; a day
	// before any record has zero counts.
	DailyCounts(ctx context.Context, from, to time.Time) ([]DayCounts, error)
	// DevicePage returns up to q.Limit devices matching q in q.Sort order,
	// after q.After, each with its open intervals (without evidence).
	DevicePage(ctx context.Context, q DeviceQuery) (DevicePage, error)
}

// FleetCounts are the fleet's aggregates: devices enrolled, compliant
// devices, and per control the devices whose open interval has each status
// (Controls[control][status]). Devices with no interval of a control are
// the rest.
type FleetCounts struct {
	Devices   int
	Compliant int
	Controls  map[string]map[string]int
}

// DayCounts are the aggregates at the end of one UTC day.
type DayCounts struct {
	Day time.Time // midnight UTC starting the day
	FleetCounts
}

// Device list sort orders.
const (
	SortHostname = "hostname"  // case-insensitive, then id
	SortLastSeen = "last_seen" // longest silent first (never seen first), then id
)

// MaxPageSize bounds a device page.
const MaxPageSize = 500

// DeviceQuery selects a page of the device list. Every filter is optional.
type DeviceQuery struct {
	// Control and Status: devices whose open interval of Control has
	// Status (NoData: no open interval). Status without Control: any
	// control of Controls.
	Control, Status string
	// Controls are the policy's controls (stored intervals of controls
	// no longer in the policy are not matched).
	Controls []string
	// Compliant, when set, keeps compliant (true) or not compliant devices.
	Compliant *bool
	GOOS      string
	Group     string
	// SeenBefore keeps devices last seen before it, or never.
	SeenBefore time.Time
	// Hostname keeps devices whose hostname starts with it (ASCII letters
	// case-insensitive: an index range, whatever the fleet's size);
	// HostnameExact those whose hostname is exactly it.
	Hostname      string
	HostnameExact bool
	Sort          string
	// After is the cursor a previous page returned (Next); empty for the
	// first page.
	After string
	Limit int
}

// DevicePage is one page of the device list.
type DevicePage struct {
	Devices []DeviceStatus
	// Next is the cursor of the following page; empty on the last.
	Next string
}

// DeviceStatus is a device with its open intervals, without evidence.
type DeviceStatus struct {
	Device
	Compliant bool
	Groups    []string
	States    []ControlState
}
