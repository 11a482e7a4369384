package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
)

// testPosture holds the read model (store.Posture) and the recording of
// interval plans (store.Recorder) to their contracts: a plan that raced
// another evaluation writes nothing, the aggregates follow every plan and
// enrollment, the daily history carries days without changes, and the
// device list pages through every match exactly once in either order.
func testPosture(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("RecordStatesConflicts", func(t *testing.T) { testRecordStatesConflicts(t, open) })
	t.Run("ConfirmMany", func(t *testing.T) { testConfirmMany(t, open) })
	t.Run("FleetCounts", func(t *testing.T) { testFleetCounts(t, open) })
	t.Run("DailyCounts", func(t *testing.T) { testDailyCounts(t, open) })
	t.Run("DailyCountsLate", func(t *testing.T) { testDailyCountsLate(t, open) })
	t.Run("DevicePage", func(t *testing.T) { testDevicePage(t, open) })
	t.Run("DevicePageErrors", func(t *testing.T) { testDevicePageErrors(t, open) })
	t.Run("DevicesDue", func(t *testing.T) { testDevicesDue(t, open) })
}

// testDevicesDue: a plan's RescoreAt decides when the periodic rescore
// picks the device up again; a device never evaluated, and a plan without
// a time (zero), are due at once; a later plan moves the time, either way.
func testDevicesDue(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	for _, id := range []string{"dev-a", "dev-b", "dev-c", "dev-d"} {
		mustEnroll(t, s, device(id, ""))
	}
	record := func(id string, rescoreAt time.Time) {
		t.Helper()
		cur, err := s.CurrentStates(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		p := states.Plan(id, cur, []store.ControlState{{ControlID: "DC-ENC-01", Status: store.Pass}}, nil, t0)
		p.RescoreAt = rescoreAt
		if err := s.RecordStates(ctx, p); err != nil {
			t.Fatalf("RecordStates(%s): %v", id, err)
		}
	}
	due := func(now time.Time, want ...string) {
		t.Helper()
		got, err := s.DevicesDue(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("DevicesDue(t0%+v) = %v; want %v", now.Sub(t0), got, want)
		}
	}
	due(t0, "dev-a", "dev-b", "dev-c", "dev-d") // never evaluated
	record("dev-a", t0.Add(time.Hour))
	record("dev-b", time.Time{})
	record("dev-c", t0.Add(3*time.Hour))
	record("dev-d", t0.Add(3*time.Hour))
	due(t0, "dev-b")
	due(t0.Add(time.Hour-time.Nanosecond), "dev-b")
	due(t0.Add(time.Hour), "dev-a", "dev-b")
	due(t0.Add(4*time.Hour), "dev-a", "dev-b", "dev-c", "dev-d")
	record("dev-d", t0.Add(2*time.Hour)) // earlier
	record("dev-c", t0.Add(5*time.Hour)) // later
	record("dev-b", t0.Add(5*time.Hour))
	due(t0.Add(2*time.Hour), "dev-a", "dev-d")
	due(t0.Add(4*time.Hour), "dev-a", "dev-d")
	due(t0.Add(5*time.Hour), "dev-a", "dev-b", "dev-c", "dev-d")
}

// counts is FleetCounts.Controls: control -> status -> devices.
type counts = map[string]map[string]int

// mustRecord records an evaluation of a device the way scoring does, with
// the device's policy groups.
func mustRecord(t *testing.T, s store.Store, deviceID string, when time.Time, groups []string, next ...store.ControlState) {
	t.Helper()
	if err := states.Record(t.Context(), s, deviceID, next, groups, when); err != nil {
		t.Fatalf("states.Record(%s, %v): %v", deviceID, when, err)
	}
}

// mustFold folds the aggregate changes recorded so far and returns how
// many there were.
func mustFold(t *testing.T, s store.Store) int {
	t.Helper()
	n, err := s.FoldCounts(t.Context())
	if err != nil {
		t.Fatalf("FoldCounts: %v", err)
	}
	return n
}

func mustFleet(t *testing.T, s store.Store) store.FleetCounts {
	t.Helper()
	fc, err := s.FleetCounts(t.Context())
	if err != nil {
		t.Fatalf("FleetCounts: %v", err)
	}
	return fc
}

// sameCounts compares aggregates; a nil Controls equals an empty one, but a
// status with zero devices must be absent, not present with 0.
func sameCounts(got, want store.FleetCounts) bool {
	if len(got.Controls) == 0 && len(want.Controls) == 0 {
		got.Controls, want.Controls = nil, nil
	}
	return reflect.DeepEqual(got, want)
}

func fleet(devices, compliant int, controls counts) store.FleetCounts {
	return store.FleetCounts{Devices: devices, Compliant: compliant, Controls: controls}
}

func st(control, status string) store.ControlState {
	return store.ControlState{ControlID: control, Status: status}
}

// --- RecordStates ---

func testRecordStatesConflicts(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustEnroll(t, s, device("dev-b", "machine-b"))
	// dev-a: c1 pass [1h,2h), fail [2h,open); c2 fail [1h,open). dev-b: c1 pass.
	mustRecord(t, s, "dev-a", at(time.Hour), []string{"g1"}, st("c1", store.Pass), st("c2", store.Fail))
	mustRecord(t, s, "dev-a", at(2*time.Hour), []string{"g1"}, st("c1", store.Fail), st("c2", store.Fail))
	mustRecord(t, s, "dev-b", at(2*time.Hour), nil, st("c1", store.Pass))

	// The plans below name intervals by their ids: read them from the
	// store as a planner does.
	intervals := func(history bool, deviceID string) map[string][]store.ControlState {
		t.Helper()
		read := s.CurrentStates
		if history {
			read = s.StateHistory
		}
		ivs, err := read(ctx, deviceID)
		if err != nil {
			t.Fatalf("reading %s's intervals: %v", deviceID, err)
		}
		return byControl(ivs)
	}
	cur := intervals(false, "dev-a")
	hist := intervals(true, "dev-a")["c1"]
	otherCur := intervals(false, "dev-b")["c1"]
	if len(cur["c1"]) != 1 || len(cur["c2"]) != 1 || len(hist) != 2 || len(otherCur) != 1 {
		t.Fatalf("setup: dev-a open %+v, c1 history %+v; dev-b open %+v", cur, hist, otherCur)
	}
	c1, c2, closed, other := cur["c1"][0], cur["c2"][0], hist[0], otherCur[0]
	if closed.Until == nil || closed.Status != store.Pass || c1.Status != store.Fail || c2.Status != store.Fail {
		t.Fatalf("setup: dev-a c1 closed %+v, open %+v, c2 %+v", closed, c1, c2)
	}
	for _, iv := range []store.ControlState{c1, c2, closed, other} {
		if iv.ID == 0 {
			t.Fatalf("setup: interval %s %s has no id", iv.ControlID, iv.Status)
		}
	}

	t3 := at(3 * time.Hour)
	end := func(iv store.ControlState) store.ControlState { iv.Until = &t3; return iv }
	as := func(iv store.ControlState, status string) store.ControlState { iv.Status = status; return iv }
	fresh := func(control, status string) store.ControlState {
		return store.ControlState{ControlID: control, Status: status, Since: t3, EvaluatedAt: t3, Evaluations: 1}
	}

	type snapshot struct {
		current, history [2][]store.ControlState
		fleet            store.FleetCounts
		daily            []store.DayCounts
		page             store.DevicePage
	}
	take := func(t *testing.T) snapshot {
		t.Helper()
		var sn snapshot
		var err error
		for i, id := range []string{"dev-a", "dev-b"} {
			if sn.current[i], err = s.CurrentStates(ctx, id); err != nil {
				t.Fatalf("CurrentStates: %v", err)
			}
			if sn.history[i], err = s.StateHistory(ctx, id); err != nil {
				t.Fatalf("StateHistory: %v", err)
			}
		}
		sn.fleet = mustFleet(t, s)
		if sn.daily, err = s.DailyCounts(ctx, at(-24*time.Hour), at(48*time.Hour)); err != nil {
			t.Fatalf("DailyCounts: %v", err)
		}
		if sn.page, err = s.DevicePage(ctx, store.DeviceQuery{}); err != nil {
			t.Fatalf("DevicePage: %v", err)
		}
		return sn
	}
	before := take(t)
	if want := fleet(2, 1, counts{"c1": {store.Fail: 1, store.Pass: 1}, "c2": {store.Fail: 1}}); !sameCounts(before.fleet, want) {
		t.Fatalf("setup: FleetCounts = %+v, want %+v", before.fleet, want)
	}

	tests := []struct {
		name   string
		device string
		plan   store.StatePlan // DeviceID, At, Compliant and Groups are set below
	}{
		{"confirm a closed interval", "dev-a", store.StatePlan{Confirm: []store.ControlState{closed}}},
		{"confirm with another status", "dev-a", store.StatePlan{Confirm: []store.ControlState{as(c1, store.Pass)}}},
		{"confirm another device's interval", "dev-a", store.StatePlan{Confirm: []store.ControlState{other}}},
		{"valid confirms beside a stale one", "dev-a", store.StatePlan{Confirm: []store.ControlState{c1, closed, c2}}},
		{"close a closed interval", "dev-a", store.StatePlan{Close: []store.ControlState{end(closed)}}},
		{"close with another status", "dev-a", store.StatePlan{
			Close: []store.ControlState{end(as(c1, store.Pass))}, Open: []store.ControlState{fresh("c1", store.Pass)}}},
		{"close another device's interval", "dev-a", store.StatePlan{
			Close: []store.ControlState{end(other)}, Open: []store.ControlState{fresh("c1", store.Pass)}}},
		{"open a control already open", "dev-a", store.StatePlan{Open: []store.ControlState{fresh("c2", store.Pass)}}},
		{"open twice in one plan", "dev-b", store.StatePlan{Open: []store.ControlState{fresh("c9", store.Pass), fresh("c9", store.Fail)}}},
		{"valid close and open, then an open already open", "dev-a", store.StatePlan{
			Close: []store.ControlState{end(c2)}, Open: []store.ControlState{fresh("c2", store.Pass), fresh("c1", store.Pass)}}},
		{"valid confirm, stale close", "dev-a", store.StatePlan{
			Confirm: []store.ControlState{c1}, Close: []store.ControlState{end(closed)}, Open: []store.ControlState{fresh("c3", store.Pass)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.plan
			// A plan that landed would change the posture too: compliant,
			// other groups.
			p.DeviceID, p.At, p.Compliant, p.Groups = tc.device, t3, true, []string{"changed"}
			if err := s.RecordStates(ctx, p); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("RecordStates = %v, want ErrConflict", err)
			}
			after := take(t)
			if !reflect.DeepEqual(after.current, before.current) {
				t.Errorf("CurrentStates changed by a conflicting plan:\n  %+v\nwas\n  %+v", after.current, before.current)
			}
			if !reflect.DeepEqual(after.history, before.history) {
				t.Errorf("StateHistory changed by a conflicting plan:\n  %+v\nwas\n  %+v", after.history, before.history)
			}
			if !sameCounts(after.fleet, before.fleet) {
				t.Errorf("FleetCounts changed by a conflicting plan: %+v, was %+v", after.fleet, before.fleet)
			}
			if !reflect.DeepEqual(after.daily, before.daily) {
				t.Errorf("DailyCounts changed by a conflicting plan:\n  %+v\nwas\n  %+v", after.daily, before.daily)
			}
			if !reflect.DeepEqual(after.page, before.page) {
				t.Errorf("DevicePage changed by a conflicting plan (compliant or groups written?):\n  %+v\nwas\n  %+v", after.page, before.page)
			}
		})
	}

	// The same changes planned from what is open now do land.
	curA, err := s.CurrentStates(ctx, "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	p := states.Plan("dev-a", curA, []store.ControlState{st("c1", store.Pass), st("c2", store.Pass)}, []string{"changed"}, t3)
	if err := s.RecordStates(ctx, p); err != nil {
		t.Fatalf("RecordStates of a fresh plan: %v", err)
	}
	if got, want := mustFleet(t, s), fleet(2, 2, counts{"c1": {store.Pass: 2}, "c2": {store.Pass: 1}}); !sameCounts(got, want) {
		t.Errorf("FleetCounts after a fresh plan = %+v, want %+v", got, want)
	}
	// Replaying it conflicts: the intervals it closed are closed.
	if err := s.RecordStates(ctx, p); !errors.Is(err, store.ErrConflict) {
		t.Errorf("RecordStates of the same plan again = %v, want ErrConflict", err)
	}
	if got := mustHistory(t, s, "dev-a"); len(got["c1"]) != 3 || len(got["c2"]) != 2 {
		t.Errorf("history after a replayed plan: %d c1 and %d c2 intervals, want 3 and 2", len(got["c1"]), len(got["c2"]))
	}
}

// testConfirmMany: one plan confirms more intervals than one statement
// holds (the store may confirm them in batches), each with its own reason,
// evidence and evidence seq, and leaves the other device's alone.
func testConfirmMany(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustEnroll(t, s, device("dev-b", "machine-b"))
	const controls = 40
	first := make([]store.ControlState, controls)
	for i := range first {
		first[i] = st(fmt.Sprintf("c%02d", i), []string{store.Pass, store.Fail, store.Unknown}[i%3])
	}
	mustRecord(t, s, "dev-a", at(time.Hour), nil, first...)
	mustRecord(t, s, "dev-b", at(time.Hour), nil, first...)

	next := make([]store.ControlState, controls)
	for i, c := range first {
		c.Reason = fmt.Sprintf("reason %d", i)
		c.EvidenceSeq = uint64(100 + i)
		c.Evidence = json.RawMessage(fmt.Sprintf(`{"control":%d}`, i))
		if i == 7 {
			c.Evidence = nil
		}
		next[i] = c
	}
	t2 := at(2 * time.Hour)
	mustRecord(t, s, "dev-a", t2, nil, next...)

	got, err := s.CurrentStates(ctx, "dev-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != controls {
		t.Fatalf("%d open intervals, want %d", len(got), controls)
	}
	for i, g := range got {
		w := next[i]
		if g.ControlID != w.ControlID || g.Status != w.Status || g.Reason != w.Reason || g.EvidenceSeq != w.EvidenceSeq ||
			!bytes.Equal(g.Evidence, w.Evidence) || g.Evaluations != 2 || !g.EvaluatedAt.Equal(t2) || !g.Since.Equal(at(time.Hour)) {
			t.Errorf("interval %d = %s %s %q seq %d evidence %s, %d evaluations, evaluated %v, since %v;\nwant %s %s %q seq %d evidence %s, 2 evaluations, evaluated %v, since %v",
				i, g.ControlID, g.Status, g.Reason, g.EvidenceSeq, g.Evidence, g.Evaluations, g.EvaluatedAt, g.Since,
				w.ControlID, w.Status, w.Reason, w.EvidenceSeq, w.Evidence, t2, at(time.Hour))
		}
	}
	other, err := s.CurrentStates(ctx, "dev-b")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range other {
		if g.Evaluations != 1 || g.Reason != "" {
			t.Errorf("dev-b %s changed by dev-a's plan: %d evaluations, reason %q", g.ControlID, g.Evaluations, g.Reason)
		}
	}
}

// --- FleetCounts ---

func testFleetCounts(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	h := func(n int) time.Time { return at(time.Duration(n) * time.Hour) }
	enroll := func(ids ...string) func(*testing.T) {
		return func(t *testing.T) {
			for _, id := range ids {
				mustEnroll(t, s, device(id, "machine-"+id))
			}
		}
	}
	record := func(id string, n int, next ...store.ControlState) func(*testing.T) {
		return func(t *testing.T) { mustRecord(t, s, id, h(n), nil, next...) }
	}
	steps := []struct {
		name string
		do   func(*testing.T)
		want store.FleetCounts
	}{
		{"empty store", func(*testing.T) {}, fleet(0, 0, nil)},
		{"enrolled devices count", enroll("dev-a", "dev-b", "dev-c"), fleet(3, 0, nil)},
		{"a passes everything", record("dev-a", 1, st("c1", store.Pass), st("c2", store.Pass)),
			fleet(3, 1, counts{"c1": {store.Pass: 1}, "c2": {store.Pass: 1}})},
		{"b fails c1", record("dev-b", 1, st("c1", store.Fail), st("c2", store.Pass)),
			fleet(3, 1, counts{"c1": {store.Pass: 1, store.Fail: 1}, "c2": {store.Pass: 2}})},
		{"a pass to fail: zero passes disappear", record("dev-a", 2, st("c1", store.Fail), st("c2", store.Pass)),
			fleet(3, 0, counts{"c1": {store.Fail: 2}, "c2": {store.Pass: 2}})},
		{"a fail to pass", record("dev-a", 3, st("c1", store.Pass), st("c2", store.Pass)),
			fleet(3, 1, counts{"c1": {store.Pass: 1, store.Fail: 1}, "c2": {store.Pass: 2}})},
		{"confirming changes nothing", record("dev-a", 4, st("c1", store.Pass), st("c2", store.Pass)),
			fleet(3, 1, counts{"c1": {store.Pass: 1, store.Fail: 1}, "c2": {store.Pass: 2}})},
		{"b not applicable and unknown", record("dev-b", 4, st("c1", store.NotApplicable), st("c2", store.Unknown)),
			fleet(3, 1, counts{"c1": {store.Pass: 1, store.NotApplicable: 1}, "c2": {store.Pass: 1, store.Unknown: 1}})},
		{"b compliant with not applicable", record("dev-b", 5, st("c1", store.NotApplicable), st("c2", store.Pass)),
			fleet(3, 2, counts{"c1": {store.Pass: 1, store.NotApplicable: 1}, "c2": {store.Pass: 2}})},
		{"c evaluated on no controls is not compliant", record("dev-c", 5),
			fleet(3, 2, counts{"c1": {store.Pass: 1, store.NotApplicable: 1}, "c2": {store.Pass: 2}})},
		{"c new control only", record("dev-c", 6, st("c3", store.Fail)),
			fleet(3, 2, counts{"c1": {store.Pass: 1, store.NotApplicable: 1}, "c2": {store.Pass: 2}, "c3": {store.Fail: 1}})},
		{"a no longer compliant", record("dev-a", 7, st("c3", store.Unknown)),
			fleet(3, 1, counts{"c1": {store.Pass: 1, store.NotApplicable: 1}, "c2": {store.Pass: 2}, "c3": {store.Fail: 1, store.Unknown: 1}})},
		{"a late change never double counts", record("dev-a", 1, st("c1", store.Fail)),
			fleet(3, 1, counts{"c1": {store.Fail: 1, store.NotApplicable: 1}, "c2": {store.Pass: 2}, "c3": {store.Fail: 1, store.Unknown: 1}})},
		{"another enrollment", enroll("dev-d"),
			fleet(4, 1, counts{"c1": {store.Fail: 1, store.NotApplicable: 1}, "c2": {store.Pass: 2}, "c3": {store.Fail: 1, store.Unknown: 1}})},
	}
	for _, step := range steps {
		step.do(t)
		// The same counts whether this step's changes are folded yet.
		if got := mustFleet(t, s); !sameCounts(got, step.want) {
			t.Errorf("after %q, not folded: FleetCounts = %+v, want %+v", step.name, got, step.want)
		}
		mustFold(t, s)
		if got := mustFleet(t, s); !sameCounts(got, step.want) {
			t.Errorf("after %q, folded: FleetCounts = %+v, want %+v", step.name, got, step.want)
		}
	}
	// The aggregates agree with the intervals they summarise.
	want := counts{}
	for _, id := range []string{"dev-a", "dev-b", "dev-c", "dev-d"} {
		for c, iv := range mustCurrent(t, s, id) {
			if want[c] == nil {
				want[c] = map[string]int{}
			}
			want[c][iv.Status]++
		}
	}
	if got := mustFleet(t, s); !reflect.DeepEqual(got.Controls, want) {
		t.Errorf("FleetCounts.Controls = %v, but the open intervals count %v", got.Controls, want)
	}
}

// --- DailyCounts ---

func utcDay(n int) time.Time { return time.Date(2026, 1, 2+n, 0, 0, 0, 0, time.UTC) } // utcDay(0) is t0's

func mustDaily(t *testing.T, s store.Store, from, to time.Time) []store.DayCounts {
	t.Helper()
	got, err := s.DailyCounts(t.Context(), from, to)
	if err != nil {
		t.Fatalf("DailyCounts(%v, %v): %v", from, to, err)
	}
	return got
}

func testDailyCounts(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	hour := func(d, n int) time.Time { return utcDay(d).Add(time.Duration(n) * time.Hour) }
	if got := mustDaily(t, s, utcDay(0), utcDay(2)); len(got) != 3 {
		t.Fatalf("DailyCounts on an empty store = %d days, want 3", len(got))
	} else {
		for _, dc := range got {
			if !sameCounts(dc.FleetCounts, fleet(0, 0, nil)) {
				t.Errorf("DailyCounts on an empty store: %v = %+v, want zero", dc.Day, dc.FleetCounts)
			}
		}
	}

	a, b, c := device("dev-a", "machine-a"), device("dev-b", "machine-b"), device("dev-c", "machine-c")
	a.EnrolledAt, b.EnrolledAt, c.EnrolledAt = hour(0, 3), hour(0, 4), hour(3, 1)
	mustEnroll(t, s, a)
	mustEnroll(t, s, b)
	mustRecord(t, s, "dev-a", hour(0, 5), nil, st("c1", store.Pass))
	mustRecord(t, s, "dev-b", hour(0, 6), nil, st("c1", store.Fail))
	// Day 1: nothing. Day 2: a fails, b passes, a passes again.
	mustRecord(t, s, "dev-a", hour(2, 1), nil, st("c1", store.Fail))
	mustRecord(t, s, "dev-b", hour(2, 2), nil, st("c1", store.Pass))
	mustRecord(t, s, "dev-a", hour(2, 3), nil, st("c1", store.Pass))
	// Day 3: c enrolls; b's confirmation changes nothing. Then quiet.
	mustEnroll(t, s, c)
	mustRecord(t, s, "dev-b", hour(3, 2), nil, st("c1", store.Pass))

	// want is the end of day n.
	want := func(n int) store.FleetCounts {
		switch {
		case n < 0:
			return fleet(0, 0, nil)
		case n <= 1:
			return fleet(2, 1, counts{"c1": {store.Pass: 1, store.Fail: 1}})
		case n == 2:
			return fleet(2, 2, counts{"c1": {store.Pass: 2}})
		default:
			return fleet(3, 2, counts{"c1": {store.Pass: 2}})
		}
	}
	east, west := time.FixedZone("UTC+9", 9*3600), time.FixedZone("UTC-5", -5*3600)
	tests := []struct {
		name        string
		from, to    time.Time
		first, last int // days wanted, as utcDay numbers
	}{
		{"whole history with quiet days around", utcDay(-3), hour(6, 23), -3, 6},
		{"one day from mid-day times", hour(1, 12), hour(1, 13), 1, 1},
		{"same instant", hour(2, 1), hour(2, 1), 2, 2},
		{"midnights", utcDay(2), utcDay(3), 2, 3},
		{"a range after the last change carries it", utcDay(4), utcDay(5), 4, 5},
		{"a range before any record", utcDay(-10), utcDay(-8), -10, -8},
		{"days are UTC days whatever the zone", time.Date(2026, 1, 3, 5, 0, 0, 0, east), time.Date(2026, 1, 3, 20, 0, 0, 0, west), 0, 2},
		{"a year", utcDay(0), utcDay(365), 0, 365},
	}
	// Every range reads the same before the changes are folded into the
	// daily history (as the changes not folded yet) and after.
	for _, folded := range []bool{false, true} {
		if folded {
			if n := mustFold(t, s); n == 0 {
				t.Fatal("FoldCounts folded nothing after enrollments and status changes")
			}
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/folded=%v", tc.name, folded), func(t *testing.T) {
				got := mustDaily(t, s, tc.from, tc.to)
				if len(got) != tc.last-tc.first+1 {
					t.Fatalf("DailyCounts = %d days, want %d (days %d..%d)", len(got), tc.last-tc.first+1, tc.first, tc.last)
				}
				for i, dc := range got {
					n := tc.first + i
					if !dc.Day.Equal(utcDay(n)) {
						t.Errorf("day %d: Day = %v, want %v", i, dc.Day, utcDay(n))
					}
					checkUTC(t, "Day", dc.Day)
					if !sameCounts(dc.FleetCounts, want(n)) {
						t.Errorf("%s: counts %+v, want %+v", utcDay(n).Format(time.DateOnly), dc.FleetCounts, want(n))
					}
				}
			})
		}
	}
	if n := mustFold(t, s); n != 0 {
		t.Errorf("a second FoldCounts folded %d changes, want 0", n)
	}
	// The days returned are copies: changing one changes no other.
	days := mustDaily(t, s, utcDay(3), utcDay(4))
	days[0].Controls["c1"][store.Pass] = 99
	if days[1].Controls["c1"][store.Pass] != 2 {
		t.Errorf("changing one day's counts changed the next day's to %d", days[1].Controls["c1"][store.Pass])
	}
	// Today's counts are the current ones.
	if last := mustDaily(t, s, utcDay(3), utcDay(3))[0]; !sameCounts(last.FleetCounts, mustFleet(t, s)) {
		t.Errorf("DailyCounts of the last day = %+v, FleetCounts = %+v", last.FleetCounts, mustFleet(t, s))
	}

	for _, tc := range []struct {
		name     string
		from, to time.Time
	}{
		{"reversed", utcDay(2), utcDay(1)},
		{"reversed by days", utcDay(10), utcDay(-10)},
		{"more than 3700 days", utcDay(0), utcDay(3700)},
		{"a century", utcDay(0), utcDay(0).AddDate(100, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := s.DailyCounts(t.Context(), tc.from, tc.to); err == nil {
				t.Errorf("DailyCounts(%v, %v) = %d days, want an error", tc.from, tc.to, len(got))
			}
		})
	}
}

// testDailyCountsLate: an evaluation recorded after later ones (a late
// evaluation, or two racing across midnight) never leaves the daily
// history disagreeing with the current counts, nor changes the days before
// its own.
func testDailyCountsLate(t *testing.T, open func(*testing.T) store.Store) {
	// Folded after every evaluation, late changes land on the newest day
	// recorded; folded once at the end, on their own days. Either way the
	// history agrees with the current counts and keeps its earlier days,
	// and reads the same before and after the last fold.
	for _, foldEach := range []bool{false, true} {
		t.Run(fmt.Sprintf("fold each=%v", foldEach), func(t *testing.T) {
			s := open(t)
			hour := func(d, n int) time.Time { return utcDay(d).Add(time.Duration(n) * time.Hour) }
			fold := func() {
				if foldEach {
					mustFold(t, s)
				}
			}
			for _, id := range []string{"a", "b", "c"} {
				mustEnroll(t, s, device("dev-"+id, "machine-"+id))
			}
			fold()
			mustRecord(t, s, "dev-a", hour(0, 5), nil, st("c1", store.Pass))
			fold()
			mustRecord(t, s, "dev-b", hour(3, 1), nil, st("c1", store.Fail))
			fold()
			day0 := mustDaily(t, s, utcDay(0), utcDay(0))[0]

			// Late, for days 1 and 2: a changes (its interval opened on day 0), c
			// opens its first interval.
			mustRecord(t, s, "dev-a", hour(1, 1), nil, st("c1", store.Fail))
			fold()
			mustRecord(t, s, "dev-c", hour(2, 1), nil, st("c1", store.Pass))
			fold()
			mustHistory(t, s, "dev-a")

			got := mustDaily(t, s, utcDay(0), utcDay(5))
			if !sameCounts(got[0].FleetCounts, day0.FleetCounts) {
				t.Errorf("day 0 changed by later days' evaluations: %+v, was %+v", got[0].FleetCounts, day0.FleetCounts)
			}
			now := mustFleet(t, s)
			if want := fleet(3, 1, counts{"c1": {store.Fail: 2, store.Pass: 1}}); !sameCounts(now, want) {
				t.Errorf("FleetCounts = %+v, want %+v", now, want)
			}
			for _, dc := range got[3:] {
				if !sameCounts(dc.FleetCounts, now) {
					t.Errorf("%s (after every evaluation) = %+v, but FleetCounts = %+v", dc.Day.Format(time.DateOnly), dc.FleetCounts, now)
				}
			}
			mustFold(t, s)
			if again := mustDaily(t, s, utcDay(0), utcDay(5)); !reflect.DeepEqual(again, got) {
				t.Errorf("DailyCounts changed by folding:\n%+v\nwas\n%+v", again, got)
			}
		})
	}
}

// --- DevicePage ---

// pageDevice is a device of the device list fixture and what the list
// must say about it.
type pageDevice struct {
	id, host, goos string
	seen           time.Time // zero: never seen
	groups         []string
	states         map[string]string // control -> status of the open interval
	compliant      bool
}

// pageFixture enrolls and evaluates the device list's devices. Its
// hostnames tie case-insensitively, contain LIKE's wildcards, and its
// last-seen times tie and differ by a nanosecond.
func pageFixture(t *testing.T, s store.Store) []pageDevice {
	h := func(n int) time.Time { return at(time.Duration(n) * time.Hour) }
	devs := []pageDevice{
		{"dev-1", "alpha", "linux", h(5), []string{"eng", "laptops"}, map[string]string{"c1": store.Pass, "c2": store.Pass}, true},
		{"dev-2", "Beta", "darwin", h(1), []string{"eng"}, map[string]string{"c1": store.Fail, "c2": store.Pass}, false},
		{"dev-3", "beta", "linux", h(1), []string{"ops"}, map[string]string{"c1": store.Pass, "c2": store.Unknown}, false},
		{"dev-4", "gamma_1", "windows", h(3), []string{"laptops"}, map[string]string{"c1": store.Pass, "c2": store.NotApplicable}, true},
		{"dev-5", "gammax1", "linux", time.Time{}, nil, map[string]string{"c1": store.Fail}, false},
		{"dev-6", "100%host", "linux", h(2), []string{"eng"}, map[string]string{"c1": store.Fail, "c2": store.Pass}, false},
		{"dev-7", "WEB0-host", "darwin", h(4), []string{"eng"}, map[string]string{"c2": store.Fail}, false},
		{"dev-8", "zeta", "linux", time.Time{}, nil, nil, false},
		{"dev-9", "alpha", "linux", h(1).Add(1), []string{"laptops"}, map[string]string{"c1": store.Pass, "c2": store.Pass, "c3": store.Fail}, true},
	}
	ev := json.RawMessage(`{"evidence":"not for lists"}`)
	next := func(d pageDevice) []store.ControlState {
		var out []store.ControlState
		for c, status := range d.states {
			out = append(out, store.ControlState{ControlID: c, Status: status, Reason: "r-" + c, EvidenceSeq: 1, Evidence: ev})
		}
		slices.SortFunc(out, func(a, b store.ControlState) int { return strings.Compare(a.ControlID, b.ControlID) })
		return out
	}
	for _, d := range devs {
		dev := device(d.id, "machine-"+d.id)
		dev.Hostname, dev.GOOS = d.host, d.goos
		mustEnroll(t, s, dev)
		if !d.seen.IsZero() {
			mustIngest(t, s, d.id, []store.Observation{obs(1, "os")}, d.seen, 1)
		}
		switch d.id {
		case "dev-6":
			// From compliant in ops to failing c1 in eng: the latest
			// evaluation's posture and groups replace the earlier.
			mustRecord(t, s, d.id, h(1), []string{"ops"}, st("c1", store.Pass), st("c2", store.Pass))
			mustRecord(t, s, d.id, h(2), d.groups, next(d)...)
		case "dev-9":
			// c3 leaves the policy failing: its open interval stays, the
			// device is compliant on the policy's controls.
			mustRecord(t, s, d.id, h(1), []string{"eng"}, next(d)...)
			delete(d.states, "c3")
			mustRecord(t, s, d.id, h(2), d.groups, next(d)...)
			d.states["c3"] = store.Fail
		case "dev-8":
		default:
			mustRecord(t, s, d.id, h(1), d.groups, next(d)...)
		}
	}
	return devs
}

// byHostname and byLastSeen are the fixture's two orders.
var (
	byHostname = []string{"dev-6", "dev-1", "dev-9", "dev-2", "dev-3", "dev-4", "dev-5", "dev-7", "dev-8"}
	byLastSeen = []string{"dev-5", "dev-8", "dev-2", "dev-3", "dev-9", "dev-6", "dev-4", "dev-7", "dev-1"}
)

// allPages reads every page of q, checking each page's size and cursor,
// and returns the devices in the order given.
func allPages(t *testing.T, s store.Store, q store.DeviceQuery) []store.DeviceStatus {
	t.Helper()
	var out []store.DeviceStatus
	for pages := 1; ; pages++ {
		if pages > len(byHostname)+2 {
			t.Fatalf("sort %q: %d pages of %d for %d devices: the cursors never end", q.Sort, pages, q.Limit, len(byHostname))
		}
		page, err := s.DevicePage(t.Context(), q)
		if err != nil {
			t.Fatalf("DevicePage page %d: %v", pages, err)
		}
		if len(page.Devices) > q.Limit {
			t.Fatalf("page %d has %d devices, limit %d", pages, len(page.Devices), q.Limit)
		}
		out = append(out, page.Devices...)
		if page.Next == "" {
			return out
		}
		if len(page.Devices) < q.Limit {
			t.Errorf("page %d has %d devices, fewer than the limit %d, but a Next cursor", pages, len(page.Devices), q.Limit)
		}
		q.After = page.Next
	}
}

func testDevicePage(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	devs := pageFixture(t, s)
	fixture := map[string]pageDevice{}
	stored := map[string]store.Device{}
	for _, d := range devs {
		fixture[d.id], stored[d.id] = d, mustDevice(t, s, d.id)
	}
	policy := []string{"c1", "c2"}
	h := func(n int) time.Time { return at(time.Duration(n) * time.Hour) }

	tests := []struct {
		name string
		q    store.DeviceQuery
		want []string // in hostname order
	}{
		{"everything", store.DeviceQuery{}, byHostname},
		{"control passes", store.DeviceQuery{Control: "c1", Status: store.Pass}, []string{"dev-1", "dev-9", "dev-3", "dev-4"}},
		{"control fails", store.DeviceQuery{Control: "c1", Status: store.Fail}, []string{"dev-6", "dev-2", "dev-5"}},
		{"control unknown", store.DeviceQuery{Control: "c2", Status: store.Unknown}, []string{"dev-3"}},
		{"control not applicable", store.DeviceQuery{Control: "c2", Status: store.NotApplicable}, []string{"dev-4"}},
		{"control no data", store.DeviceQuery{Control: "c1", Status: store.NoData}, []string{"dev-7", "dev-8"}},
		{"other control no data", store.DeviceQuery{Control: "c2", Status: store.NoData, Controls: policy}, []string{"dev-5", "dev-8"}},
		{"control without a status is no filter", store.DeviceQuery{Control: "c1"}, byHostname},
		{"status of no device", store.DeviceQuery{Control: "c1", Status: store.Unknown}, nil},
		{"unknown control", store.DeviceQuery{Control: "nope", Status: store.Pass}, nil},
		{"any control fails", store.DeviceQuery{Status: store.Fail, Controls: policy}, []string{"dev-6", "dev-2", "dev-5", "dev-7"}},
		{"any control passes", store.DeviceQuery{Status: store.Pass, Controls: policy}, []string{"dev-6", "dev-1", "dev-9", "dev-2", "dev-3", "dev-4"}},
		{"any control no data", store.DeviceQuery{Status: store.NoData, Controls: policy}, []string{"dev-5", "dev-7", "dev-8"}},
		{"controls outside the policy are not matched", store.DeviceQuery{Status: store.Fail, Controls: []string{"c2"}}, []string{"dev-7"}},
		{"compliant", store.DeviceQuery{Compliant: ptr(true)}, []string{"dev-1", "dev-9", "dev-4"}},
		{"not compliant", store.DeviceQuery{Compliant: ptr(false)}, []string{"dev-6", "dev-2", "dev-3", "dev-5", "dev-7", "dev-8"}},
		{"goos", store.DeviceQuery{GOOS: "darwin"}, []string{"dev-2", "dev-7"}},
		{"goos of none", store.DeviceQuery{GOOS: "plan9"}, nil},
		{"group", store.DeviceQuery{Group: "eng"}, []string{"dev-6", "dev-1", "dev-2", "dev-7"}},
		{"group left", store.DeviceQuery{Group: "ops"}, []string{"dev-3"}},
		{"group of none", store.DeviceQuery{Group: "nope"}, nil},
		{"seen before, or never", store.DeviceQuery{SeenBefore: h(2)}, []string{"dev-9", "dev-2", "dev-3", "dev-5", "dev-8"}},
		{"seen before a nanosecond after", store.DeviceQuery{SeenBefore: h(1).Add(1)}, []string{"dev-2", "dev-3", "dev-5", "dev-8"}},
		{"hostname prefix, any case", store.DeviceQuery{Hostname: "BETA"}, []string{"dev-2", "dev-3"}},
		{"hostname prefix", store.DeviceQuery{Hostname: "alp"}, []string{"dev-1", "dev-9"}},
		{"hostname prefix of two", store.DeviceQuery{Hostname: "gamma"}, []string{"dev-4", "dev-5"}},
		{"hostname whole", store.DeviceQuery{Hostname: "zeta"}, []string{"dev-8"}},
		{"hostname inside is no prefix", store.DeviceQuery{Hostname: "eta"}, nil},
		{"hostname longer than any", store.DeviceQuery{Hostname: "alphabet"}, nil},
		{"hostname underscore is literal", store.DeviceQuery{Hostname: "gamma_"}, []string{"dev-4"}},
		{"hostname underscore alone", store.DeviceQuery{Hostname: "_"}, nil},
		{"hostname percent is literal", store.DeviceQuery{Hostname: "100%"}, []string{"dev-6"}},
		{"hostname percent inside", store.DeviceQuery{Hostname: "w%"}, nil},
		{"hostname percent alone", store.DeviceQuery{Hostname: "%"}, nil},
		{"hostname backslash", store.DeviceQuery{Hostname: `\`}, nil},
		{"hostname exact", store.DeviceQuery{Hostname: "alpha", HostnameExact: true}, []string{"dev-1", "dev-9"}},
		{"hostname exact is not contains", store.DeviceQuery{Hostname: "alph", HostnameExact: true}, nil},
		{"hostname exact wildcard is literal", store.DeviceQuery{Hostname: "gamma%", HostnameExact: true}, nil},
		{"filters combine", store.DeviceQuery{Control: "c1", Status: store.Pass, GOOS: "linux", Group: "laptops"}, []string{"dev-1", "dev-9"}},
		{"filters combine to none", store.DeviceQuery{Compliant: ptr(true), GOOS: "darwin"}, nil},
		{"not compliant in eng, seen before 3h", store.DeviceQuery{Compliant: ptr(false), Group: "eng", SeenBefore: h(3)}, []string{"dev-6", "dev-2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := map[string]bool{}
			for _, id := range tc.want {
				in[id] = true
			}
			wantLastSeen := slices.DeleteFunc(slices.Clone(byLastSeen), func(id string) bool { return !in[id] })
			for _, sort := range []struct {
				name string
				want []string
			}{{"", tc.want}, {store.SortHostname, tc.want}, {store.SortLastSeen, wantLastSeen}} {
				for _, limit := range []int{1, 2, 3, 50} {
					q := tc.q
					q.Sort, q.Limit = sort.name, limit
					got := allPages(t, s, q)
					var ids []string
					for _, d := range got {
						ids = append(ids, d.ID)
						checkPageDevice(t, d, fixture[d.ID], stored[d.ID])
					}
					if !slices.Equal(ids, sort.want) {
						t.Errorf("sort %q, limit %d: devices %v, want %v", sort.name, limit, ids, sort.want)
					}
				}
			}
		})
	}
}

// checkPageDevice checks a listed device against the fixture: the device as
// stored, its posture and groups, its open intervals without evidence.
func checkPageDevice(t *testing.T, got store.DeviceStatus, want pageDevice, stored store.Device) {
	t.Helper()
	if d := diff(got.Device, stored); d != "" {
		t.Errorf("%s differs from Device:\n%s", got.ID, d)
	}
	if got.Compliant != want.compliant {
		t.Errorf("%s: Compliant = %v, want %v", got.ID, got.Compliant, want.compliant)
	}
	groups := slices.Sorted(slices.Values(got.Groups))
	if !slices.Equal(groups, want.groups) {
		t.Errorf("%s: Groups = %v, want %v", got.ID, got.Groups, want.groups)
	}
	states := map[string]string{}
	for _, s := range got.States {
		if _, dup := states[s.ControlID]; dup {
			t.Errorf("%s: two open %s intervals", got.ID, s.ControlID)
		}
		states[s.ControlID] = s.Status
		if s.Evidence != nil {
			t.Errorf("%s %s: Evidence = %s, want none in a list", got.ID, s.ControlID, s.Evidence)
		}
		if s.Until != nil || s.Since.IsZero() || s.Evaluations < 1 || s.Reason != "r-"+s.ControlID {
			t.Errorf("%s %s: not an open interval as recorded: %+v", got.ID, s.ControlID, s)
		}
		checkUTC(t, "Since", s.Since)
	}
	if len(want.states) == 0 && len(states) == 0 {
		return
	}
	if !reflect.DeepEqual(states, want.states) {
		t.Errorf("%s: States %v, want %v", got.ID, states, want.states)
	}
}

func testDevicePageErrors(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	pageFixture(t, s)
	next := func(sort string) string {
		page, err := s.DevicePage(ctx, store.DeviceQuery{Sort: sort, Limit: 2})
		if err != nil || page.Next == "" {
			t.Fatalf("DevicePage(sort %q, limit 2) = next %q, %v; want a cursor", sort, page.Next, err)
		}
		return page.Next
	}
	byHost, bySeen := next(store.SortHostname), next(store.SortLastSeen)
	// Both cursors work in their own order.
	for sort, after := range map[string]string{store.SortHostname: byHost, store.SortLastSeen: bySeen} {
		if _, err := s.DevicePage(ctx, store.DeviceQuery{Sort: sort, After: after, Limit: 2}); err != nil {
			t.Errorf("DevicePage(sort %q) with its own cursor: %v", sort, err)
		}
	}

	tests := []struct {
		name    string
		q       store.DeviceQuery
		wantErr error // nil: any error
	}{
		{"hostname cursor in last_seen order", store.DeviceQuery{Sort: store.SortLastSeen, After: byHost}, store.ErrBadCursor},
		{"last_seen cursor in hostname order", store.DeviceQuery{Sort: store.SortHostname, After: bySeen}, store.ErrBadCursor},
		{"last_seen cursor in the default order", store.DeviceQuery{After: bySeen}, store.ErrBadCursor},
		{"garbage cursor", store.DeviceQuery{After: "not a cursor"}, store.ErrBadCursor},
		{"garbage cursor, last_seen", store.DeviceQuery{Sort: store.SortLastSeen, After: "!!"}, store.ErrBadCursor},
		{"truncated cursor", store.DeviceQuery{After: byHost[:len(byHost)/2]}, store.ErrBadCursor},
		{"huge cursor", store.DeviceQuery{After: strings.Repeat("A", 100000)}, store.ErrBadCursor},
		{"status without a control or the policy's controls", store.DeviceQuery{Status: store.Fail}, nil},
		{"no data without a control or the policy's controls", store.DeviceQuery{Status: store.NoData}, nil},
		{"unknown sort", store.DeviceQuery{Sort: "color"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, err := s.DevicePage(ctx, tc.q)
			switch {
			case err == nil:
				t.Errorf("DevicePage = %d devices, want an error", len(page.Devices))
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("DevicePage error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
