package states_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// t0 is the tests' fixed clock; nothing here reads the wall clock.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func h(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }

func ptr[T any](v T) *T { return &v }

func TestPlan(t *testing.T) {
	ev := json.RawMessage(`{"v":1}`)
	open := func(id int64, control, status string, since, evaluated time.Time, n int) store.ControlState {
		return store.ControlState{ID: id, ControlID: control, Status: status, Reason: "old", EvidenceSeq: 1,
			Since: since, EvaluatedAt: evaluated, Evaluations: n}
	}
	tests := []struct {
		name    string
		current []store.ControlState
		next    []store.ControlState
		groups  []string
		at      time.Time
		want    store.StatePlan
	}{
		{
			name: "no open interval opens at at",
			next: []store.ControlState{{ControlID: "c1", Status: store.Pass, Reason: "on", EvidenceSeq: 3, Evidence: ev}},
			at:   h(2),
			want: store.StatePlan{DeviceID: "dev", At: h(2), Compliant: true, Open: []store.ControlState{
				{ControlID: "c1", Status: store.Pass, Reason: "on", EvidenceSeq: 3, Evidence: ev, Since: h(2), EvaluatedAt: h(2), Evaluations: 1},
			}},
		},
		{
			// Whatever the evaluation carried in the interval fields, a
			// new interval starts fresh.
			name: "open resets id, until and evaluations",
			next: []store.ControlState{{ID: 99, ControlID: "c1", Status: store.Fail, Since: h(-5), Until: ptr(h(9)), EvaluatedAt: h(-5), Evaluations: 7}},
			at:   h(2),
			want: store.StatePlan{DeviceID: "dev", At: h(2), Open: []store.ControlState{
				{ControlID: "c1", Status: store.Fail, Since: h(2), EvaluatedAt: h(2), Evaluations: 1},
			}},
		},
		{
			name:    "same status confirms the open interval",
			current: []store.ControlState{open(7, "c1", store.Pass, h(1), h(1), 3)},
			next:    []store.ControlState{{ControlID: "c1", Status: store.Pass, Reason: "still on", EvidenceSeq: 5, Evidence: ev}},
			at:      h(2),
			want: store.StatePlan{DeviceID: "dev", At: h(2), Compliant: true, Confirm: []store.ControlState{
				{ID: 7, ControlID: "c1", Status: store.Pass, Reason: "still on", EvidenceSeq: 5, Evidence: ev, Since: h(1), EvaluatedAt: h(2)},
			}},
		},
		{
			name:    "late same status keeps evaluated_at",
			current: []store.ControlState{open(7, "c1", store.Pass, h(1), h(3), 3)},
			next:    []store.ControlState{{ControlID: "c1", Status: store.Pass}},
			at:      h(2),
			want: store.StatePlan{DeviceID: "dev", At: h(2), Compliant: true, Confirm: []store.ControlState{
				{ID: 7, ControlID: "c1", Status: store.Pass, Since: h(1), EvaluatedAt: h(3)},
			}},
		},
		{
			name:    "different status closes and opens at at",
			current: []store.ControlState{open(7, "c1", store.Pass, h(1), h(2), 2)},
			next:    []store.ControlState{{ControlID: "c1", Status: store.Fail, Reason: "off", EvidenceSeq: 9}},
			at:      h(3),
			want: store.StatePlan{DeviceID: "dev", At: h(3),
				Close: []store.ControlState{{ID: 7, ControlID: "c1", Status: store.Pass, Reason: "old", EvidenceSeq: 1,
					Since: h(1), Until: ptr(h(3)), EvaluatedAt: h(2), Evaluations: 2}},
				Open: []store.ControlState{{ControlID: "c1", Status: store.Fail, Reason: "off", EvidenceSeq: 9,
					Since: h(3), EvaluatedAt: h(3), Evaluations: 1}},
			},
		},
		{
			// Intervals never run backwards: the late change closes and
			// opens at the open interval's start, not at its own time.
			name:    "late different status closes and opens at the open interval's since",
			current: []store.ControlState{open(7, "c1", store.Fail, h(3), h(3), 1)},
			next:    []store.ControlState{{ControlID: "c1", Status: store.Pass}},
			at:      h(2),
			want: store.StatePlan{DeviceID: "dev", At: h(2), Compliant: true,
				Close: []store.ControlState{{ID: 7, ControlID: "c1", Status: store.Fail, Reason: "old", EvidenceSeq: 1,
					Since: h(3), Until: ptr(h(3)), EvaluatedAt: h(3), Evaluations: 1}},
				Open: []store.ControlState{{ControlID: "c1", Status: store.Pass, Since: h(3), EvaluatedAt: h(2), Evaluations: 1}},
			},
		},
		{
			name: "mixed: confirm, change, new control; open intervals not evaluated are left alone",
			current: []store.ControlState{
				open(1, "c1", store.Pass, h(1), h(1), 1),
				open(2, "c2", store.Pass, h(1), h(1), 1),
				open(3, "gone", store.Fail, h(1), h(1), 1),
			},
			next: []store.ControlState{
				{ControlID: "c1", Status: store.Pass},
				{ControlID: "c2", Status: store.Unknown},
				{ControlID: "c3", Status: store.NotApplicable},
			},
			groups: []string{"laptops", "eng"},
			at:     h(4),
			want: store.StatePlan{DeviceID: "dev", At: h(4), Groups: []string{"laptops", "eng"},
				Confirm: []store.ControlState{{ID: 1, ControlID: "c1", Status: store.Pass, Since: h(1), EvaluatedAt: h(4)}},
				Close: []store.ControlState{{ID: 2, ControlID: "c2", Status: store.Pass, Reason: "old", EvidenceSeq: 1,
					Since: h(1), Until: ptr(h(4)), EvaluatedAt: h(1), Evaluations: 1}},
				Open: []store.ControlState{
					{ControlID: "c2", Status: store.Unknown, Since: h(4), EvaluatedAt: h(4), Evaluations: 1},
					{ControlID: "c3", Status: store.NotApplicable, Since: h(4), EvaluatedAt: h(4), Evaluations: 1},
				},
			},
		},
		{
			name: "no controls is not compliant",
			at:   h(1),
			want: store.StatePlan{DeviceID: "dev", At: h(1)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := states.Plan("dev", tc.current, tc.next, tc.groups, tc.at)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Plan =\n  %+v\nwant\n  %+v", got, tc.want)
			}
			for _, c := range got.Close {
				if c.Until == nil || c.Until.Before(c.Since) {
					t.Errorf("closed %s runs backwards: since %v until %v", c.ControlID, c.Since, c.Until)
				}
			}
		})
	}
}

func TestPlanCompliant(t *testing.T) {
	st := func(statuses ...string) []store.ControlState {
		var out []store.ControlState
		for i, s := range statuses {
			out = append(out, store.ControlState{ControlID: string(rune('a' + i)), Status: s})
		}
		return out
	}
	tests := []struct {
		name string
		next []store.ControlState
		want bool
	}{
		{"none", nil, false},
		{"one pass", st(store.Pass), true},
		{"one not applicable", st(store.NotApplicable), true},
		{"pass and not applicable", st(store.Pass, store.NotApplicable, store.Pass), true},
		{"one fail", st(store.Fail), false},
		{"one unknown", st(store.Unknown), false},
		{"fail among passes", st(store.Pass, store.Pass, store.Fail), false},
		{"unknown among passes", st(store.Unknown, store.Pass), false},
		{"unrecognised status", st(store.Pass, "weird"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The same answer whatever was open before.
			for _, cur := range [][]store.ControlState{nil, {{ID: 1, ControlID: "a", Status: store.Fail, Since: h(0)}}} {
				if got := states.Plan("dev", cur, tc.next, nil, h(1)).Compliant; got != tc.want {
					t.Errorf("Compliant with %d open = %v, want %v", len(cur), got, tc.want)
				}
			}
		})
	}
}

func TestPlanCopiesGroups(t *testing.T) {
	groups := []string{"a", "b"}
	p := states.Plan("dev", nil, nil, groups, h(1))
	groups[0] = "changed"
	if !reflect.DeepEqual(p.Groups, []string{"a", "b"}) {
		t.Errorf("Plan.Groups = %v after the caller changed its slice, want a copy [a b]", p.Groups)
	}
	if p := states.Plan("dev", nil, nil, nil, h(1)); len(p.Groups) != 0 {
		t.Errorf("Plan.Groups with no groups = %v, want none", p.Groups)
	}
}

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if _, err := s.EnrollDevice(t.Context(), store.Device{ID: "dev", Hostname: "h", MachineID: "m", EnrolledAt: t0}); err != nil {
		t.Fatalf("EnrollDevice: %v", err)
	}
	return s
}

// competing is a Recorder whose first competitors RecordStates calls each
// let another evaluation of the same device land first (recorded straight
// in the store), so the plan made before it conflicts.
type competing struct {
	store.Recorder
	rival       func(context.Context, store.Recorder) error
	competitors int
	calls       int
}

func (c *competing) RecordStates(ctx context.Context, p store.StatePlan) error {
	c.calls++
	if c.calls <= c.competitors {
		if err := c.rival(ctx, c.Recorder); err != nil {
			return err
		}
	}
	return c.Recorder.RecordStates(ctx, p)
}

type span struct {
	Status       string
	Since, Until time.Time // zero Until: open
}

func spans(t *testing.T, s store.Scores, deviceID string) map[string][]span {
	t.Helper()
	hist, err := s.StateHistory(t.Context(), deviceID)
	if err != nil {
		t.Fatalf("StateHistory: %v", err)
	}
	out := map[string][]span{}
	for _, iv := range hist {
		sp := span{Status: iv.Status, Since: iv.Since}
		if iv.Until != nil {
			sp.Until = *iv.Until
		}
		out[iv.ControlID] = append(out[iv.ControlID], sp)
	}
	return out
}

func TestRecord(t *testing.T) {
	ctx := t.Context()
	s := openStore(t)
	steps := []struct {
		at   time.Time
		next []store.ControlState
	}{
		{h(1), []store.ControlState{{ControlID: "c1", Status: store.Pass}, {ControlID: "c2", Status: store.Fail}}},
		{h(2), []store.ControlState{{ControlID: "c1", Status: store.Pass}, {ControlID: "c2", Status: store.Pass}}},
		{h(3), []store.ControlState{{ControlID: "c1", Status: store.Fail}, {ControlID: "c2", Status: store.Pass}}},
		{h(2), []store.ControlState{{ControlID: "c1", Status: store.Pass}}}, // late: at c1's open since
	}
	for _, st := range steps {
		if err := states.Record(ctx, s, "dev", st.next, []string{"g"}, st.at); err != nil {
			t.Fatalf("Record at %v: %v", st.at, err)
		}
	}
	want := map[string][]span{
		"c1": {{store.Pass, h(1), h(3)}, {store.Fail, h(3), h(3)}, {store.Pass, h(3), time.Time{}}},
		"c2": {{store.Fail, h(1), h(2)}, {store.Pass, h(2), time.Time{}}},
	}
	if got := spans(t, s, "dev"); !reflect.DeepEqual(got, want) {
		t.Errorf("history =\n  %+v\nwant\n  %+v", got, want)
	}
	cur, err := s.CurrentStates(ctx, "dev")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cur {
		if c.ControlID == "c2" && (c.Evaluations != 2 || !c.EvaluatedAt.Equal(h(3))) {
			t.Errorf("c2 confirmed once at 3h: evaluations %d evaluated %v, want 2 at %v", c.Evaluations, c.EvaluatedAt, h(3))
		}
	}

	// An unknown device: the store's error, not a retry loop.
	if err := states.Record(ctx, s, "no-such-device", steps[0].next, nil, h(1)); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("Record for an unenrolled device = %v, want a store error", err)
	}
}

func TestRecordRetriesConflicts(t *testing.T) {
	pass := []store.ControlState{{ControlID: "c1", Status: store.Pass, Reason: "mine"}}
	tests := []struct {
		name string
		// before is recorded before Record starts.
		before []store.ControlState
		// rival is the other evaluation landing between Record's read and
		// its write.
		rival       []store.ControlState
		rivalAt     time.Time
		competitors int
		wantErr     bool
		want        map[string][]span
		wantCalls   int
	}{
		{
			// Record read c1 pass and planned a confirm; the rival closed
			// that interval first.
			name:        "confirm of a closed interval",
			before:      pass,
			rival:       []store.ControlState{{ControlID: "c1", Status: store.Fail}},
			rivalAt:     h(2),
			competitors: 1,
			want:        map[string][]span{"c1": {{store.Pass, h(1), h(2)}, {store.Fail, h(2), h(3)}, {store.Pass, h(3), time.Time{}}}},
			wantCalls:   2,
		},
		{
			// Record read no interval and planned an open; the rival
			// opened one first.
			name:        "open of an already opened control",
			rival:       []store.ControlState{{ControlID: "c1", Status: store.Fail}},
			rivalAt:     h(2),
			competitors: 1,
			want:        map[string][]span{"c1": {{store.Fail, h(2), h(3)}, {store.Pass, h(3), time.Time{}}}},
			wantCalls:   2,
		},
		{
			// Record read c1 fail and planned close + open; the rival
			// already moved it to pass.
			name:        "close of a closed interval",
			before:      []store.ControlState{{ControlID: "c1", Status: store.Fail}},
			rival:       []store.ControlState{{ControlID: "c1", Status: store.Pass, Reason: "rival"}},
			rivalAt:     h(2),
			competitors: 1,
			want:        map[string][]span{"c1": {{store.Fail, h(1), h(2)}, {store.Pass, h(2), time.Time{}}}},
			wantCalls:   2,
		},
		{
			name:        "conflicts every time gives up",
			before:      pass,
			rival:       nil, // set per attempt below: alternating statuses
			competitors: 1000,
			wantErr:     true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := openStore(t)
			if tc.before != nil {
				if err := states.Record(ctx, s, "dev", tc.before, nil, h(1)); err != nil {
					t.Fatalf("Record before: %v", err)
				}
			}
			rec := &competing{Recorder: s, competitors: tc.competitors}
			rec.rival = func(ctx context.Context, r store.Recorder) error {
				if tc.rival != nil {
					return states.Record(ctx, r, "dev", tc.rival, nil, tc.rivalAt)
				}
				// Flip c1 every time, so whatever Record read is gone.
				status := store.Fail
				if rec.calls%2 == 0 {
					status = store.Pass
				}
				return states.Record(ctx, r, "dev", []store.ControlState{{ControlID: "c1", Status: status}}, nil, h(1+rec.calls))
			}
			err := states.Record(ctx, rec, "dev", pass, []string{"g"}, h(3))
			if tc.wantErr {
				if !errors.Is(err, store.ErrConflict) {
					t.Fatalf("Record under endless conflicts = %v, want ErrConflict", err)
				}
				if rec.calls < 2 || rec.calls > 10 {
					t.Errorf("Record tried %d times, want a few retries then give up", rec.calls)
				}
			} else {
				if err != nil {
					t.Fatalf("Record: %v", err)
				}
				if rec.calls != tc.wantCalls {
					t.Errorf("RecordStates called %d times, want %d (one conflict, one retry)", rec.calls, tc.wantCalls)
				}
				if got := spans(t, s, "dev"); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("history =\n  %+v\nwant\n  %+v", got, tc.want)
				}
			}

			// Whatever happened, exactly one open interval per control,
			// and the aggregates agree with it.
			cur, err := s.CurrentStates(ctx, "dev")
			if err != nil {
				t.Fatal(err)
			}
			if len(cur) != 1 || cur[0].ControlID != "c1" || cur[0].Until != nil {
				t.Fatalf("CurrentStates = %+v, want one open c1 interval", cur)
			}
			if !tc.wantErr && (cur[0].Status != store.Pass || cur[0].Reason != "mine") {
				t.Errorf("open c1 = %s %q, want this Record's pass %q", cur[0].Status, cur[0].Reason, "mine")
			}
			fc, err := s.FleetCounts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]map[string]int{"c1": {cur[0].Status: 1}}; !reflect.DeepEqual(fc.Controls, want) {
				t.Errorf("FleetCounts.Controls = %v, want %v", fc.Controls, want)
			}
			wantCompliant := 0
			if cur[0].Status == store.Pass {
				wantCompliant = 1
			}
			if fc.Devices != 1 || fc.Compliant != wantCompliant {
				t.Errorf("FleetCounts = %d devices %d compliant, want 1, %d", fc.Devices, fc.Compliant, wantCompliant)
			}
		})
	}
}
