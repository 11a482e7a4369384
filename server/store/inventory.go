package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Inventory is the device inventory an auditor reconciles the fleet
// against (an MDM, HR or IdP export): only the newest import is kept, and
// every import leaves a record of what was imported.
type Inventory interface {
	// ReplaceInventory replaces the whole inventory with rows in one
	// transaction and records the import; it returns the record with its
	// id set (Rows is set to len(rows)).
	ReplaceInventory(ctx context.Context, imp InventoryImport, rows []InventoryRow) (InventoryImport, error)
	// Inventory returns the newest import and its rows in file order;
	// ErrNotFound when nothing was ever imported.
	Inventory(ctx context.Context) (InventoryImport, []InventoryRow, error)
}

// InventoryImport records one import of the inventory.
type InventoryImport struct {
	ID         int64
	ImportedAt time.Time
	// Source is the operator's note ("Jamf export 2026-11"); Filename the
	// file's base name.
	Source   string
	Filename string
	Rows     int
	// SHA256 is the hex SHA-256 of the imported file, so the report names
	// exactly which export it reconciled against.
	SHA256 string
}

// InventoryRow is one device of the inventory. At least one of
// SerialNumber and Hostname is set.
type InventoryRow struct {
	Line         int // line of the file it came from
	SerialNumber string
	Hostname     string
	Owner        string
}

// Waivers are exceptions an admin grants (README: For auditors; admins own
// exceptions): a device may fail a control, or every control, for a bounded
// time, for a stated reason, with a named approver. Waivers are never
// deleted: a revoked or expired waiver stays in the record.
type Waivers interface {
	// CreateWaiver stores a new waiver after w.Validate.
	CreateWaiver(ctx context.Context, w Waiver) error
	// Waiver returns one waiver; ErrNotFound when unknown.
	Waiver(ctx context.Context, id string) (Waiver, error)
	// ListWaivers returns every waiver, oldest first (created_at, id).
	ListWaivers(ctx context.Context) ([]Waiver, error)
	// WaiversOverlapping returns the waivers in force at some time of
	// [from, to): StartsAt < to and End() > from, ordered by device,
	// starts_at and id.
	WaiversOverlapping(ctx context.Context, from, to time.Time) ([]Waiver, error)
	// RevokeWaiver ends a waiver at at; revoking a revoked waiver keeps the
	// first revocation. ErrNotFound when unknown.
	RevokeWaiver(ctx context.Context, id string, at time.Time) error
}

// MaxWaiverYears bounds a waiver: it expires at most this many calendar
// years after it starts.
const MaxWaiverYears = 1

// Waiver is an approved exception for one device: a failing (or unknown)
// control in [StartsAt, End()) is reported as waived.
type Waiver struct {
	ID       string
	DeviceID string
	// ControlID is the waived control; empty waives every control.
	ControlID string
	Reason    string
	Approver  string
	CreatedBy string
	CreatedAt time.Time
	StartsAt  time.Time
	ExpiresAt time.Time  // required, at most MaxWaiverYears after StartsAt
	RevokedAt *time.Time // nil unless revoked
}

// End is when the waiver stops applying: its expiry, or its revocation if
// earlier. A waiver applies in [StartsAt, End()), which is empty when it
// was revoked before it started.
func (w Waiver) End() time.Time {
	if w.RevokedAt != nil && w.RevokedAt.Before(w.ExpiresAt) {
		return *w.RevokedAt
	}
	return w.ExpiresAt
}

// ActiveAt reports whether the waiver applies at t.
func (w Waiver) ActiveAt(t time.Time) bool { return !t.Before(w.StartsAt) && t.Before(w.End()) }

// Covers reports whether the waiver is for this control (or all controls).
func (w Waiver) Covers(controlID string) bool { return w.ControlID == "" || w.ControlID == controlID }

// ErrBadWaiver is wrapped by Waiver.Validate's errors.
var ErrBadWaiver = errors.New("invalid waiver")

// Validate checks what every waiver must carry: an id, a device, a reason,
// an approver, and an expiry after its start and at most MaxWaiverYears
// after it.
func (w Waiver) Validate() error {
	for _, f := range []struct{ name, v string }{{"id", w.ID}, {"device", w.DeviceID}, {"reason", w.Reason}, {"approver", w.Approver}} {
		if strings.TrimSpace(f.v) == "" {
			return fmt.Errorf("%w: %s is required", ErrBadWaiver, f.name)
		}
	}
	switch {
	case w.StartsAt.IsZero() || w.ExpiresAt.IsZero():
		return fmt.Errorf("%w: start and expiry are required", ErrBadWaiver)
	case !w.StartsAt.Before(w.ExpiresAt):
		return fmt.Errorf("%w: expiry %s is not after its start %s", ErrBadWaiver,
			w.ExpiresAt.UTC().Format(time.RFC3339), w.StartsAt.UTC().Format(time.RFC3339))
	case w.ExpiresAt.After(w.StartsAt.AddDate(MaxWaiverYears, 0, 0)):
		return fmt.Errorf("%w: expiry %s is more than %d year after its start %s", ErrBadWaiver,
			w.ExpiresAt.UTC().Format(time.RFC3339), MaxWaiverYears, w.StartsAt.UTC().Format(time.RFC3339))
	}
	return nil
}
