package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// testAlerts: a control's alert is written with its transition to fail or
// unknown, once, only while alerting is enabled; the delivery state moves
// only forward; a group's mark adds an alert only when it changes.
func testAlerts(t *testing.T, open func(*testing.T) store.Store) {
	ctx := context.Background()
	pending := func(t *testing.T, s store.Store, now time.Time) []store.Alert {
		t.Helper()
		as, err := s.PendingAlerts(ctx, now, 100)
		if err != nil {
			t.Fatal(err)
		}
		return as
	}
	t.Run("transitions", func(t *testing.T) {
		s := open(t)
		mustEnroll(t, s, device("dev-a", "m-a"))
		mustRecord(t, s, "dev-a", at(time.Minute), nil, st("C1", store.Fail)) // alerting off: nothing kept
		if got := pending(t, s, at(time.Hour)); len(got) != 0 {
			t.Fatalf("alerts written while alerting is off: %+v", got)
		}
		s.EnableAlerts()
		steps := []struct {
			c1, c2 string
		}{
			{store.Fail, store.Pass},          // C1 confirmed fail: no alert; C2 first pass: none
			{store.Pass, store.Unknown},       // C1 recovers: none; C2 pass -> unknown: one
			{store.Fail, store.Unknown},       // C1 pass -> fail: one; C2 confirmed: none
			{store.Unknown, store.Fail},       // C1 fail -> unknown: one; C2 unknown -> fail: one
			{store.Unknown, store.Fail},       // nothing changes: none
			{store.NotApplicable, store.Pass}, // none
		}
		for i, sp := range steps {
			mustRecord(t, s, "dev-a", at(time.Duration(i+2)*time.Minute), nil, st("C1", sp.c1), st("C2", sp.c2))
		}
		got := pending(t, s, at(time.Hour))
		type row struct{ control, status, previous string }
		want := []row{{"C2", store.Unknown, store.Pass}, {"C1", store.Fail, store.Pass}, {"C1", store.Unknown, store.Fail}, {"C2", store.Fail, store.Unknown}}
		if len(got) != len(want) {
			t.Fatalf("%d alerts, want %d: %+v", len(got), len(want), got)
		}
		for i, a := range got {
			r := row{a.ControlID, a.Status, a.Previous}
			if r != want[i] {
				t.Errorf("alert %d = %+v, want %+v", i, r, want[i])
			}
			if a.Kind != store.AlertControl || a.Subject != "dev-a" || a.DoneAt != nil || a.Attempts != 0 || len(a.DeliveredTo) != 0 {
				t.Errorf("alert %d = %+v", i, a)
			}
			checkUTC(t, "created_at", a.CreatedAt)
		}
		if len(pending(t, s, at(2*time.Minute))) != 0 {
			t.Error("an alert is due before it was written")
		}
	})
	t.Run("first interval fails", func(t *testing.T) {
		s := open(t)
		s.EnableAlerts()
		mustEnroll(t, s, device("dev-b", "m-b"))
		mustRecord(t, s, "dev-b", at(time.Minute), nil, st("C1", store.Unknown), st("C2", store.Pass))
		got := pending(t, s, at(time.Minute))
		if len(got) != 1 || got[0].ControlID != "C1" || got[0].Previous != "" || got[0].Status != store.Unknown {
			t.Fatalf("alerts %+v, want one of C1 turning unknown from nothing", got)
		}
	})
	t.Run("delivery state", func(t *testing.T) {
		s := open(t)
		s.EnableAlerts()
		mustEnroll(t, s, device("dev-c", "m-c"))
		mustRecord(t, s, "dev-c", at(time.Minute), nil, st("C1", store.Fail), st("C2", store.Fail))
		as := pending(t, s, at(time.Minute))
		if len(as) != 2 {
			t.Fatalf("%d alerts, want 2", len(as))
		}
		a := as[0]
		// A claim moves the alert out of the due ones; a second claim of
		// what was read (another replica) fails.
		if ok, err := s.ClaimAlert(ctx, a, at(2*time.Minute)); err != nil || !ok {
			t.Fatalf("ClaimAlert = %v, %v", ok, err)
		}
		if ok, err := s.ClaimAlert(ctx, a, at(2*time.Minute)); err != nil || ok {
			t.Fatalf("a second claim of the same read = %v, %v; want false", ok, err)
		}
		if got := pending(t, s, at(time.Minute)); len(got) != 1 || got[0].ID == a.ID {
			t.Fatalf("a claimed alert is still due: %+v", got)
		}
		stale := a
		stale.Attempts = 2 // an attempt counted from another read
		if ok, err := s.AlertAttempted(ctx, stale); err != nil || ok {
			t.Fatalf("AlertAttempted out of turn = %v, %v; want false", ok, err)
		}
		a.Attempts, a.DeliveredTo, a.NextAt, a.LastError = 1, []string{"ops"}, at(10*time.Minute), "slack: answered 500"
		if ok, err := s.AlertAttempted(ctx, a); err != nil || !ok {
			t.Fatalf("AlertAttempted = %v, %v", ok, err)
		}
		if got := pending(t, s, at(5*time.Minute)); len(got) != 1 || got[0].ID != as[1].ID {
			t.Fatalf("before the retry is due: %+v, want only alert %d", got, as[1].ID)
		}
		got := pending(t, s, at(10*time.Minute))
		if len(got) != 2 || got[1].ID != a.ID || got[1].Attempts != 1 || len(got[1].DeliveredTo) != 1 || got[1].DeliveredTo[0] != "ops" || got[1].LastError != a.LastError {
			t.Fatalf("after the retry is due: %+v", got)
		}
		done := at(11 * time.Minute)
		a.Attempts, a.DeliveredTo, a.DoneAt, a.LastError = 2, []string{"ops", "slack"}, &done, ""
		if ok, err := s.AlertAttempted(ctx, a); err != nil || !ok {
			t.Fatalf("AlertAttempted(done) = %v, %v", ok, err)
		}
		if ok, err := s.AlertAttempted(ctx, a); err != nil || ok {
			t.Fatalf("AlertAttempted on a done alert = %v, %v; want false", ok, err)
		}
		if got := pending(t, s, at(time.Hour)); len(got) != 1 || got[0].ID != as[1].ID {
			t.Fatalf("a done alert is still pending: %+v", got)
		}
		if got, err := s.PendingAlerts(ctx, at(time.Hour), 0); err != nil || len(got) != 1 {
			t.Fatalf("PendingAlerts(limit 0) = %d, %v", len(got), err)
		}
		// Retention deletes done alerts only, and only before its cut-off.
		if res, err := s.Prune(ctx, done, at(time.Hour)); err != nil || res.Alerts != 0 {
			t.Fatalf("Prune at the done time = %+v, %v; want no alert deleted", res, err)
		}
		if res, err := s.Prune(ctx, at(time.Hour), at(time.Hour)); err != nil || res.Alerts != 1 {
			t.Fatalf("Prune after = %+v, %v; want the done alert deleted", res, err)
		}
		if got := pending(t, s, at(time.Hour)); len(got) != 1 || got[0].ID != as[1].ID {
			t.Fatalf("retention touched a pending alert: %+v", got)
		}
	})
	t.Run("groups", func(t *testing.T) {
		s := open(t)
		for _, id := range []string{"g1", "g2", "g3"} {
			mustEnroll(t, s, device(id, "m-"+id))
		}
		mustRecord(t, s, "g1", at(time.Minute), []string{"laptops"}, st("C1", store.Pass))
		mustRecord(t, s, "g2", at(time.Minute), []string{"laptops", "servers"}, st("C1", store.Fail))
		mustRecord(t, s, "g3", at(time.Minute), []string{"servers"}, st("C1", store.Pass))
		for _, tt := range []struct {
			group     string
			n, compli int
		}{{"laptops", 2, 1}, {"servers", 2, 1}, {"nobody", 0, 0}} {
			n, ok, err := s.GroupCompliance(ctx, tt.group)
			if err != nil || n != tt.n || ok != tt.compli {
				t.Errorf("GroupCompliance(%s) = %d, %d, %v; want %d, %d", tt.group, n, ok, err, tt.n, tt.compli)
			}
		}
		marks := []struct {
			below, want bool
		}{{false, false}, {false, false}, {true, true}, {true, false}, {false, true}}
		for i, m := range marks {
			got, err := s.MarkGroup(ctx, "laptops", m.below, store.Alert{CreatedAt: at(time.Duration(i) * time.Minute), Status: map[bool]string{true: "below", false: "recovered"}[m.below], Reason: "1 of 2"})
			if err != nil || got != m.want {
				t.Fatalf("mark %d (below %v) = %v, %v; want %v", i, m.below, got, err, m.want)
			}
		}
		if got, err := s.MarkGroup(ctx, "servers", true, store.Alert{CreatedAt: at(0), Status: "below"}); err != nil || !got {
			t.Fatalf("a first mark below = %v, %v; want an alert", got, err)
		}
		got := pending(t, s, at(time.Hour))
		if len(got) != 3 || got[0].Subject != "servers" || got[1].Status != "below" || got[2].Status != "recovered" || got[2].Kind != store.AlertGroup {
			t.Fatalf("group alerts %+v", got)
		}
	})
}
