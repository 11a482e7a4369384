// Package store defines what the server keeps and the small interface it is
// kept behind. Implementations: sqlite (the default, embedded) and, later,
// postgres; storetest is the conformance suite both must pass.
//
// Observations are append-only evidence, unique on (device_id, seq), so a
// resend after a reconnect never duplicates evidence. Control states are
// intervals (device, control, status, since, until), so a Type II question
// ("was every device compliant all period?") is a range query.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound is returned when a looked-up record does not exist.
var ErrNotFound = errors.New("not found")

// Store is everything the server persists.
type Store interface {
	Enrollment
	Evidence
	Scores
	Close() error
}

// Enrollment is what enrollment needs.
type Enrollment interface {
	CreateEnrollSecret(ctx context.Context, s EnrollSecret) error
	// UseEnrollSecret finds an active secret by hash, counts a use and, for
	// single-use secrets, consumes it. ErrNotFound when no usable secret
	// matches (unknown, expired, revoked or used up).
	UseEnrollSecret(ctx context.Context, hash []byte, now time.Time) (EnrollSecret, error)
	// EnrollDevice records a new device. When an earlier device has the
	// same machine id, the new one is linked to it (PreviousID, Reenrolled)
	// so its history is recognised, but it keeps its own id: the machine id
	// is asserted by the client and must never grant another identity.
	EnrollDevice(ctx context.Context, d Device) (Device, error)
	Device(ctx context.Context, id string) (Device, error)
	Devices(ctx context.Context) ([]Device, error)
}

// Evidence is what ingest needs.
type Evidence interface {
	// Ingest stores observations for one device in one transaction,
	// ignoring any (device_id, seq) already stored, and returns how many
	// were new.
	Ingest(ctx context.Context, deviceID string, obs []Observation, receivedAt time.Time) (int, error)
	// Latest returns the newest observation per collector of a device.
	Latest(ctx context.Context, deviceID string) (map[string]Observation, error)
	// History returns up to limit observations of one collector, newest
	// first.
	History(ctx context.Context, deviceID, collector string, limit int) ([]Observation, error)
	// Counts returns how many observations a device has stored and the
	// range of seqs.
	Counts(ctx context.Context, deviceID string) (ObservationCounts, error)
}

// Scores is what scoring and reports need.
type Scores interface {
	// ApplyStates records evaluated control states at time at: an open
	// interval with the same status is kept (its evidence updated); a
	// different status closes it and opens a new one.
	ApplyStates(ctx context.Context, deviceID string, states []ControlState, at time.Time) error
	// CurrentStates returns the open interval of every control of a device.
	CurrentStates(ctx context.Context, deviceID string) ([]ControlState, error)
	// StateHistory returns every interval of a device, oldest first.
	StateHistory(ctx context.Context, deviceID string) ([]ControlState, error)
}

// EnrollSecret is a hashed enrollment secret.
type EnrollSecret struct {
	ID        string
	Hash      []byte
	Label     string
	CreatedAt time.Time
	ExpiresAt *time.Time
	SingleUse bool
	Uses      int
	RevokedAt *time.Time
}

// Device is an enrolled device.
type Device struct {
	ID           string
	Hostname     string
	GOOS         string
	GOARCH       string
	OSVersion    string
	MachineID    string
	SerialNumber string
	AgentVersion string
	SecretID     string
	EnrolledAt   time.Time
	LastSeenAt   *time.Time
	// PreviousID is the latest earlier device with the same machine id
	// (a re-imaged or reinstalled machine), if any.
	PreviousID string
	// Reenrolled counts the enrollments before this one for this machine.
	Reenrolled int
}

// Observation as stored.
type Observation struct {
	Seq           uint64
	Collector     string
	CollectedAt   time.Time // as clamped by ingest
	ReceivedAt    time.Time
	ClockSkew     bool // CollectedAt was clamped
	Status        string
	Error         string
	ParserVersion int
	Payload       json.RawMessage
	Sources       json.RawMessage
	DurationMS    int
}

// ObservationCounts summarises a device's stored evidence.
type ObservationCounts struct {
	Total  int
	MinSeq uint64
	MaxSeq uint64
	First  time.Time
	Last   time.Time
}

// Control statuses.
const (
	Pass          = "pass"
	Fail          = "fail"
	Unknown       = "unknown"
	NotApplicable = "not_applicable"
)

// ControlState is one interval of a control's status on a device.
type ControlState struct {
	ControlID string
	Status    string
	Reason    string
	// EvidenceSeq is the observation that decided the status (0 if none).
	EvidenceSeq uint64
	Evidence    json.RawMessage
	Since       time.Time
	Until       *time.Time // nil while open
	// EvaluatedAt is the last time this interval was confirmed.
	EvaluatedAt time.Time
	// Evaluations counts confirmations of this interval.
	Evaluations int
}
