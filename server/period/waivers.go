package period

import (
	"slices"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// kind is how an interval's time counts.
type kind int

const (
	outOfScope kind = iota // not_applicable: counts in neither
	compliant              // pass
	exception              // fail or unknown (and any other status)
)

// classify says how an interval counts, and the status its exception is
// reported with (fail, or unknown for anything else).
//
// It is the hook for grace periods (a failing control within its grace
// period, being added to package controls): when an interval can say it is
// within its grace, classify is the one place that decides how that time
// counts. Grace is not implemented here.
func classify(iv store.ControlState) (kind, string) {
	switch iv.Status {
	case store.NotApplicable:
		return outOfScope, iv.Status
	case store.Pass:
		return compliant, iv.Status
	case store.Fail:
		return exception, store.Fail
	default:
		return exception, store.Unknown
	}
}

// piece is part of an exception interval, waived by waiver or not (nil).
type piece struct {
	start, end time.Time
	waiver     *store.Waiver
}

// waive splits the exception [start, end) of a control at the bounds of the
// waivers in force for it. Where waivers overlap, the one for this control
// wins over one for every control, then the one that started first, then the
// smallest id. Adjacent pieces under the same waiver (or none) are merged.
func waive(ws []store.Waiver, controlID string, start, end time.Time) []piece {
	var apply []*store.Waiver
	cuts := []time.Time{start, end}
	for i := range ws {
		w := &ws[i]
		if !w.Covers(controlID) || !w.StartsAt.Before(end) || !w.End().After(start) || !w.StartsAt.Before(w.End()) {
			continue
		}
		apply = append(apply, w)
		for _, t := range []time.Time{w.StartsAt, w.End()} {
			if t.After(start) && t.Before(end) {
				cuts = append(cuts, t)
			}
		}
	}
	if len(apply) == 0 {
		return []piece{{start, end, nil}}
	}
	slices.SortFunc(apply, func(a, b *store.Waiver) int {
		if (a.ControlID == "") != (b.ControlID == "") {
			if a.ControlID != "" {
				return -1
			}
			return 1
		}
		if c := a.StartsAt.Compare(b.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	slices.SortFunc(cuts, time.Time.Compare)
	cuts = slices.CompactFunc(cuts, time.Time.Equal)
	var out []piece
	for i := 0; i+1 < len(cuts); i++ {
		var by *store.Waiver
		for _, w := range apply {
			if w.ActiveAt(cuts[i]) {
				by = w
				break
			}
		}
		if n := len(out); n > 0 && out[n-1].waiver == by {
			out[n-1].end = cuts[i+1]
			continue
		}
		out = append(out, piece{cuts[i], cuts[i+1], by})
	}
	return out
}

func waiverRef(w store.Waiver, devs map[string]*device, waived int64) WaiverRef {
	ref := WaiverRef{ID: w.ID, DeviceID: w.DeviceID, ControlID: w.ControlID, Reason: w.Reason, Approver: w.Approver,
		CreatedBy: w.CreatedBy, CreatedAt: w.CreatedAt.UTC(), StartsAt: w.StartsAt.UTC(), ExpiresAt: w.ExpiresAt.UTC(),
		RevokedAt: w.RevokedAt, WaivedSeconds: waived}
	if d := devs[w.DeviceID]; d != nil {
		ref.Hostname = d.ref.Hostname
	}
	return ref
}
