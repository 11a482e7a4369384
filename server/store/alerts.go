package store

import (
	"context"
	"time"
)

// Alerts is the outbox of notifications (webhooks): a control of a device
// turning fail or unknown, or a group's compliance crossing a threshold.
// A control's alert is written in the transaction that records the
// transition (RecordStates, IngestScored), so a transition is never lost
// to a crash and never announced twice by two replicas; the holder of the
// "alerts" lease delivers them.
type Alerts interface {
	// EnableAlerts makes RecordStates and IngestScored write an alert for
	// each control that turns fail or unknown. Off by default: with no
	// webhook there is nobody to tell, and nothing is kept.
	EnableAlerts()
	// PendingAlerts lists up to limit alerts not done whose next attempt
	// is due at now, oldest first.
	PendingAlerts(ctx context.Context, now time.Time, limit int) ([]Alert, error)
	// ClaimAlert claims a pending alert for one delivery attempt: its next
	// attempt moves to until, so no other replica reads it as due while
	// this one sends it. It returns false, changing nothing, when the alert
	// is done or was claimed since it was read (its NextAt changed).
	ClaimAlert(ctx context.Context, a Alert, until time.Time) (bool, error)
	// AlertAttempted records a delivery attempt of alert a.ID: the
	// endpoints that have it now, the attempt count (a.Attempts, one more
	// than stored), and either done (delivered to every endpoint, or given
	// up) or when to try again. It changes nothing and returns false when
	// the alert is done already or another attempt was recorded since.
	AlertAttempted(ctx context.Context, a Alert) (bool, error)
	// GroupCompliance counts the enrolled devices of a policy group, and
	// the compliant ones among them.
	GroupCompliance(ctx context.Context, group string) (population, compliant int, err error)
	// MarkGroup records whether a group is below its threshold. When that
	// changes it adds a (group) alert in the same transaction and returns
	// true; the first mark of a group that is not below adds none.
	MarkGroup(ctx context.Context, group string, below bool, a Alert) (bool, error)
}

// Alert kinds.
const (
	AlertControl = "control"
	AlertGroup   = "group"
)

// Alert is one notification to deliver.
type Alert struct {
	ID        int64
	CreatedAt time.Time
	Kind      string // AlertControl or AlertGroup
	// Subject is the device id (AlertControl) or the group (AlertGroup).
	Subject string
	// ControlID, Status, Previous and Reason: the control's new status,
	// its status before ("" when it had none) and the reason. For a group,
	// Status is "below" or "recovered" and Reason says the figures.
	ControlID, Status, Previous, Reason string
	// Delivery state: the endpoints that accepted it, attempts made, when
	// to try next, when it was done (delivered everywhere, or given up)
	// and the last failure.
	DeliveredTo []string
	Attempts    int
	NextAt      time.Time
	DoneAt      *time.Time
	LastError   string
}
