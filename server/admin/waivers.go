package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// WaiverRequest asks for a waiver, as the operator typed it.
type WaiverRequest struct {
	DeviceID string
	// ControlID is the waived control; empty waives every control.
	ControlID string
	Reason    string
	Approver  string
	// Starts is when it starts applying: a date (midnight UTC starting
	// it) or an RFC 3339 time; empty is now.
	Starts string
	// Expires is when it stops applying: a date (through the end of that
	// day, UTC: the midnight ending it) or an RFC 3339 time. Required, in
	// the future, at most store.MaxWaiverYears after the start.
	Expires string
}

func (r WaiverRequest) detail() string {
	return detail("device_id", r.DeviceID, "control", r.ControlID, "approver", r.Approver, "starts", r.Starts,
		"expires", r.Expires, "reason", r.Reason)
}

// ParseWaiverTime reads a waiver bound: an RFC 3339 time, or a date, which
// is midnight UTC starting that day, or with endOfDay the midnight ending
// it (an expiry of 2026-12-31 covers the 31st).
func ParseWaiverTime(field, s string, endOfDay bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	return time.Time{}, refuse("%s %q: want a date (2026-12-31) or an RFC 3339 time (2026-12-31T18:00:00Z)", field, clip(s, MaxID))
}

// waiver checks a request and builds the waiver it asks for.
func (s *Service) waiver(ctx context.Context, actor string, r WaiverRequest, now time.Time) (store.Waiver, error) {
	w := store.Waiver{ID: newID("wvr_"), DeviceID: r.DeviceID, ControlID: r.ControlID, Reason: r.Reason, Approver: r.Approver,
		CreatedBy: actor, CreatedAt: now, StartsAt: now}
	switch {
	case r.DeviceID == "":
		return w, refuse("a device is required")
	case len(r.ControlID) > MaxID:
		return w, refuse("the control id is longer than %d characters", MaxID)
	case r.ControlID != "" && s.controls != nil && !s.controls[r.ControlID]:
		return w, refuse("no control %q in the policy", r.ControlID)
	case r.Reason == "":
		return w, refuse("a reason is required")
	case r.Approver == "":
		return w, refuse("an approver is required")
	case r.Expires == "":
		return w, refuse("an expiry is required")
	}
	if err := checkLen("reason", r.Reason, MaxText); err != nil {
		return w, err
	}
	if err := checkLen("approver", r.Approver, MaxText); err != nil {
		return w, err
	}
	if err := s.checkDevice(ctx, w.DeviceID); err != nil {
		return w, err
	}
	var err error
	if w.ExpiresAt, err = ParseWaiverTime("expires", r.Expires, true); err != nil {
		return w, err
	}
	if r.Starts != "" {
		if w.StartsAt, err = ParseWaiverTime("starts", r.Starts, false); err != nil {
			return w, err
		}
	}
	if !w.ExpiresAt.After(now) {
		return w, refuse("the expiry %s is in the past", rfc3339(w.ExpiresAt))
	}
	if err := w.Validate(); err != nil {
		return w, refuse("%s", err.Error())
	}
	return w, nil
}

// AddWaiver grants a waiver: a device's failing (or unknown) control, or
// every control, is reported as waived while it is in force. The waiver
// records actor as its creator.
func (s *Service) AddWaiver(ctx context.Context, actor string, r WaiverRequest) (store.Waiver, error) {
	if err := checkActor(actor); err != nil {
		return store.Waiver{}, err
	}
	r.DeviceID, r.ControlID = strings.TrimSpace(r.DeviceID), strings.TrimSpace(r.ControlID)
	r.Reason, r.Approver = strings.TrimSpace(r.Reason), strings.TrimSpace(r.Approver)
	r.Starts, r.Expires = strings.TrimSpace(r.Starts), strings.TrimSpace(r.Expires)
	w, err := s.waiver(ctx, actor, r, s.now().UTC())
	if err != nil {
		return store.Waiver{}, s.refused(ctx, actor, ActionWaiverAdd, r.detail(), err)
	}
	if err := s.st.CreateWaiver(ctx, w); err != nil {
		return store.Waiver{}, err
	}
	return w, s.audit(ctx, actor, ActionWaiverAdd, waiverDetail(w))
}

func waiverDetail(w store.Waiver) string {
	control := w.ControlID
	if control == "" {
		control = "*"
	}
	return detail("waiver", w.ID, "device_id", w.DeviceID, "control", control, "approver", w.Approver,
		"starts", rfc3339(w.StartsAt), "expires", rfc3339(w.ExpiresAt), "reason", w.Reason)
}

// RevokeWaiver ends a waiver now and returns it. It stays in the record
// (and in reports) for the time it was in force; revoking it again keeps
// the first revocation.
func (s *Service) RevokeWaiver(ctx context.Context, actor, id string) (store.Waiver, error) {
	if err := checkActor(actor); err != nil {
		return store.Waiver{}, err
	}
	id = strings.TrimSpace(id)
	request := detail("waiver", id)
	var err error
	switch {
	case id == "":
		err = refuse("a waiver id is required")
	case len(id) > MaxID:
		err = refuse("the waiver id is longer than %d characters", MaxID)
	default:
		if err = s.st.RevokeWaiver(ctx, id, s.now().UTC()); errors.Is(err, store.ErrNotFound) {
			err = notFound("no waiver %q", id)
		}
	}
	if err != nil {
		return store.Waiver{}, s.refused(ctx, actor, ActionWaiverRevoke, request, err)
	}
	w, err := s.st.Waiver(ctx, id)
	if err != nil {
		return store.Waiver{}, fmt.Errorf("waiver %s revoked, but reading it back failed: %w", id, err)
	}
	return w, s.audit(ctx, actor, ActionWaiverRevoke, detail("waiver", w.ID, "device_id", w.DeviceID, "revoked_at", rfc3339(*w.RevokedAt)))
}

// newID returns prefix and 12 random hex digits.
func newID(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
