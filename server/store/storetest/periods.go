package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// testPeriods holds StatesOverlapping and DevicesReportedBetween to the
// half-open period [from, to): an interval that ends at from or starts at to
// does not overlap it, and an observation received at to is outside it.
func testPeriods(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	h := func(n int) time.Time { return at(time.Duration(n) * time.Hour) }

	if err := s.StatesOverlapping(ctx, h(0), h(100), func(store.DeviceState) error {
		return errors.New("called on an empty store")
	}); err != nil {
		t.Fatalf("StatesOverlapping on an empty store: %v", err)
	}
	if got, err := s.DevicesReportedBetween(ctx, h(0), h(100)); err != nil || len(got) != 0 {
		t.Fatalf("DevicesReportedBetween on an empty store = %v, %v; want none", got, err)
	}

	for _, id := range []string{"dev-b", "dev-a", "dev-c"} {
		mustEnroll(t, s, device(id, "machine-"+id))
	}
	ev := json.RawMessage(`{"big":"evidence"}`)
	// dev-a c1: pass [1h,3h), fail [3h,5h), pass [5h,open); c2 n/a [1h,open).
	mustApply(t, s, "dev-a", h(1),
		store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "on", EvidenceSeq: 1, Evidence: ev},
		store.ControlState{ControlID: "c2", Status: store.NotApplicable, Reason: "n/a", EvidenceSeq: 1, Evidence: ev})
	mustApply(t, s, "dev-a", h(2), store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "still on", EvidenceSeq: 2})
	mustApply(t, s, "dev-a", h(3), store.ControlState{ControlID: "c1", Status: store.Fail, Reason: "off", EvidenceSeq: 3, Evidence: ev})
	mustApply(t, s, "dev-a", h(5), store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "on again", EvidenceSeq: 4})
	// dev-b c1: pass [2h,10h), unknown [10h,open). dev-c: nothing.
	mustApply(t, s, "dev-b", h(2), store.ControlState{ControlID: "c1", Status: store.Pass, Reason: "on", EvidenceSeq: 1})
	mustApply(t, s, "dev-b", h(10), store.ControlState{ControlID: "c1", Status: store.Unknown, Reason: "stale", EvidenceSeq: 1})

	type iv struct {
		Device, Control, Status, Reason string
		Seq                             uint64
		Since                           time.Time
		Until                           *time.Time
		Evaluations                     int
	}
	aPass1 := iv{"dev-a", "c1", store.Pass, "still on", 2, h(1), ptr(h(3)), 2}
	aFail := iv{"dev-a", "c1", store.Fail, "off", 3, h(3), ptr(h(5)), 1}
	aPass2 := iv{"dev-a", "c1", store.Pass, "on again", 4, h(5), nil, 1}
	aNA := iv{"dev-a", "c2", store.NotApplicable, "n/a", 1, h(1), nil, 1}
	bPass := iv{"dev-b", "c1", store.Pass, "on", 1, h(2), ptr(h(10)), 1}
	bUnknown := iv{"dev-b", "c1", store.Unknown, "stale", 1, h(10), nil, 1}
	tests := []struct {
		name     string
		from, to time.Time
		want     []iv
	}{
		{"whole history", h(0), h(100), []iv{aPass1, aFail, aPass2, aNA, bPass, bUnknown}},
		{"ends at from and starts at to are outside", h(3), h(5), []iv{aFail, aNA, bPass}},
		{"one nanosecond either side", h(3).Add(-1), h(5).Add(1), []iv{aPass1, aFail, aPass2, aNA, bPass}},
		{"only open intervals", h(20), h(30), []iv{aPass2, aNA, bUnknown}},
		{"before any interval", h(-10), h(1), nil},
		{"instant inside", h(4), h(4).Add(1), []iv{aFail, aNA, bPass}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []iv
			err := s.StatesOverlapping(ctx, tt.from, tt.to, func(st store.DeviceState) error {
				if st.Evidence != nil {
					t.Errorf("%s %s: Evidence = %s, want nil (not loaded)", st.DeviceID, st.ControlID, st.Evidence)
				}
				checkUTC(t, "Since", st.Since)
				checkUTC(t, "EvaluatedAt", st.EvaluatedAt)
				if st.Until != nil {
					checkUTC(t, "Until", *st.Until)
				}
				got = append(got, iv{st.DeviceID, st.ControlID, st.Status, st.Reason, st.EvidenceSeq, st.Since, st.Until, st.Evaluations})
				return nil
			})
			if err != nil {
				t.Fatalf("StatesOverlapping: %v", err)
			}
			if d := diff(got, tt.want); d != "" {
				t.Errorf("StatesOverlapping(%v, %v):\n%s", tt.from, tt.to, d)
			}
		})
	}

	stop := errors.New("stop")
	calls := 0
	if err := s.StatesOverlapping(ctx, h(0), h(100), func(store.DeviceState) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("StatesOverlapping with fn failing = %v after %d calls; want fn's error after 1", err, calls)
	}

	// Receipts: dev-a at 1h and 50h, dev-b at 10h, and at 20h a contact
	// that brought nothing new (its last_seen_at moves, but no observation
	// was received then). dev-c never reports.
	mustIngest(t, s, "dev-a", seqs(1, 2, "os"), h(1), 2)
	mustIngest(t, s, "dev-a", seqs(3, 3, "os"), h(50), 1)
	mustIngest(t, s, "dev-b", seqs(1, 1, "os"), h(10), 1)
	mustIngest(t, s, "dev-b", seqs(1, 1, "os"), h(20), 0)
	reported := []struct {
		from, to time.Time
		want     []string
	}{
		{h(0), h(100), []string{"dev-a", "dev-b"}},
		{h(0), h(1), nil},
		{h(1), h(1).Add(1), []string{"dev-a"}},
		{h(2), h(10), nil},
		{h(2), h(10).Add(1), []string{"dev-b"}},
		{h(11), h(50), nil}, // dev-a last seen later, nothing inside
		{h(15), h(25), nil}, // dev-b's empty contact at 20h is no observation
		{h(51), h(100), nil},
	}
	for _, r := range reported {
		got, err := s.DevicesReportedBetween(ctx, r.from, r.to)
		if err != nil {
			t.Fatalf("DevicesReportedBetween(%v, %v): %v", r.from, r.to, err)
		}
		var ids []string
		for id, ok := range got {
			if !ok {
				t.Errorf("DevicesReportedBetween(%v, %v): %s present but false", r.from, r.to, id)
			}
			ids = append(ids, id)
		}
		sort.Strings(ids)
		if !reflect.DeepEqual(ids, r.want) {
			t.Errorf("DevicesReportedBetween(%v, %v) = %v, want %v", r.from, r.to, ids, r.want)
		}
	}
}
