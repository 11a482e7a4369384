package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
)

// testIngestScored holds store.ScoredIngester to its contract: the
// evaluation reads what the report's transaction wrote and is recorded with
// it; an evaluation that fails or conflicts undoes its own writes only,
// never the evidence; a report with nothing new is not evaluated.
func testIngestScored(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	errScore := errors.New("evaluation failed")
	// plan evaluates control C1 as status on what r reads, after checking
	// that r sees the report: its newest seq and the device's last seen.
	plan := func(t *testing.T, deviceID, status string, seq uint64, received time.Time) store.ScoreFunc {
		return func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
			latest, err := r.Latest(ctx, deviceID)
			if err != nil {
				return store.StatePlan{}, err
			}
			if got := latest["os"].Seq; got != seq {
				t.Errorf("the evaluation read latest seq %d, want %d (the report being stored)", got, seq)
			}
			d, err := r.Device(ctx, deviceID)
			if err != nil {
				return store.StatePlan{}, err
			}
			if d.LastSeenAt == nil || !d.LastSeenAt.Equal(received) {
				t.Errorf("the evaluation read last seen %v, want %v", d.LastSeenAt, received)
			}
			if _, err := r.History(ctx, deviceID, "os", 1); err != nil {
				return store.StatePlan{}, err
			}
			if _, err := r.DeviceTPM(ctx, deviceID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DeviceTPM of a device without one: %v, want ErrNotFound", err)
			}
			if _, err := r.LatestAttestation(ctx, deviceID, false); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("LatestAttestation of a device without one: %v, want ErrNotFound", err)
			}
			current, err := r.CurrentStates(ctx, deviceID)
			if err != nil {
				return store.StatePlan{}, err
			}
			return states.Plan(deviceID, current, []store.ControlState{st("C1", status)}, nil, received), nil
		}
	}
	failing := func(context.Context, store.ScoreReader) (store.StatePlan, error) {
		return store.StatePlan{}, errScore
	}
	// conflicting closes the open interval of C1 and then confirms one
	// that is not open: the plan must not be half applied.
	conflicting := func(deviceID string, at time.Time) store.ScoreFunc {
		return func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
			current, err := r.CurrentStates(ctx, deviceID)
			if err != nil || len(current) != 1 {
				return store.StatePlan{}, fmt.Errorf("current states %v, %v; want one", current, err)
			}
			closed := current[0]
			closed.Until = &at
			return store.StatePlan{DeviceID: deviceID, At: at, Close: []store.ControlState{closed},
				Confirm: []store.ControlState{{ID: closed.ID + 1<<40, ControlID: "C2", Status: "pass"}}}, nil
		}
	}
	notCalled := func(t *testing.T) store.ScoreFunc {
		return func(context.Context, store.ScoreReader) (store.StatePlan, error) {
			t.Error("a report with nothing new was evaluated")
			return store.StatePlan{}, errScore
		}
	}
	steps := []struct {
		name       string
		obs        []store.Observation
		received   time.Time
		score      func(t *testing.T) store.ScoreFunc
		wantNew    int
		wantScored bool
		wantStates map[string]string // open intervals after the step
		compliant  int               // compliant devices after the step
	}{
		{"first report scored with it", seqs(1, 3, "os"), at(time.Hour),
			func(t *testing.T) store.ScoreFunc { return plan(t, "dev-a", "pass", 3, at(time.Hour)) }, 3, true, map[string]string{"C1": "pass"}, 1},
		{"status change scored with it", seqs(4, 5, "os"), at(2 * time.Hour),
			func(t *testing.T) store.ScoreFunc { return plan(t, "dev-a", "fail", 5, at(2*time.Hour)) }, 2, true, map[string]string{"C1": "fail"}, 0},
		{"failed evaluation keeps the evidence", seqs(6, 7, "os"), at(3 * time.Hour),
			func(*testing.T) store.ScoreFunc { return failing }, 2, false, map[string]string{"C1": "fail"}, 0},
		{"conflicting plan undone whole, evidence kept", seqs(8, 8, "os"), at(4 * time.Hour),
			func(*testing.T) store.ScoreFunc { return conflicting("dev-a", at(4*time.Hour)) }, 1, false, map[string]string{"C1": "fail"}, 0},
		{"resend is not evaluated", seqs(1, 8, "os"), at(5 * time.Hour), notCalled, 0, false, map[string]string{"C1": "fail"}, 0},
		{"scored again after the failures", seqs(9, 9, "os"), at(6 * time.Hour),
			func(t *testing.T) store.ScoreFunc { return plan(t, "dev-a", "pass", 9, at(6*time.Hour)) }, 1, true, map[string]string{"C1": "pass"}, 1},
		{"confirmed with it", seqs(10, 10, "os"), at(7 * time.Hour),
			func(t *testing.T) store.ScoreFunc { return plan(t, "dev-a", "pass", 10, at(7*time.Hour)) }, 1, true, map[string]string{"C1": "pass"}, 1},
	}
	s := open(t)
	si, ok := s.(store.ScoredIngester)
	if !ok {
		t.Fatalf("%T does not implement store.ScoredIngester", s)
	}
	mustEnroll(t, s, device("dev-a", "machine-a"))
	total := 0
	for _, step := range steps {
		n, scoreErr, err := si.IngestScored(ctx, "dev-a", step.obs, step.received, step.score(t))
		if err != nil {
			t.Fatalf("%s: IngestScored: %v", step.name, err)
		}
		scored := n > 0 && scoreErr == nil
		total += n
		if n != step.wantNew || scored != step.wantScored {
			t.Errorf("%s: IngestScored = %d new, scored %v; want %d, %v", step.name, n, scored, step.wantNew, step.wantScored)
		}
		if c := mustCounts(t, s, "dev-a"); c.Total != total {
			t.Errorf("%s: %d observations stored, want %d", step.name, c.Total, total)
		}
		if got := openStates(t, s, "dev-a"); fmt.Sprint(got) != fmt.Sprint(step.wantStates) {
			t.Errorf("%s: open intervals %v, want %v", step.name, got, step.wantStates)
		}
		// Every contact moves last seen, evaluated or not.
		if d, err := s.Device(ctx, "dev-a"); err != nil || d.LastSeenAt == nil || !d.LastSeenAt.Equal(step.received) {
			t.Errorf("%s: last seen %v (%v), want %v", step.name, d.LastSeenAt, err, step.received)
		}
		if got := mustFleet(t, s).Compliant; got != step.compliant {
			t.Errorf("%s: %d compliant devices, want %d", step.name, got, step.compliant)
		}
	}
	if _, _, err := si.IngestScored(ctx, "dev-nobody", seqs(1, 1, "os"), at(8*time.Hour), notCalled(t)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("IngestScored for a device never enrolled = %v, want ErrNotFound", err)
	}

	// Concurrent reports of many devices (one group transaction on
	// SQLite), every third evaluation failing: each report's evidence is
	// stored, and only the evaluations that succeeded are recorded.
	const devs = 24
	for i := range devs {
		mustEnroll(t, s, device(fmt.Sprintf("dev-%02d", i), fmt.Sprintf("machine-%02d", i)))
	}
	var wg sync.WaitGroup
	for i := range devs {
		wg.Go(func() {
			id := fmt.Sprintf("dev-%02d", i)
			score := plan(t, id, "pass", 4, at(time.Hour))
			if i%3 == 0 {
				score = failing
			}
			n, scoreErr, err := si.IngestScored(ctx, id, seqs(1, 4, "os"), at(time.Hour), score)
			if wantErr := map[bool]error{true: errScore}[i%3 == 0]; err != nil || n != 4 || !errors.Is(scoreErr, wantErr) || (wantErr == nil && scoreErr != nil) {
				t.Errorf("%s: IngestScored = %d new, evaluation error %v, %v; want 4, %v, nil", id, n, scoreErr, err, wantErr)
			}
		})
	}
	wg.Wait()
	for i := range devs {
		id := fmt.Sprintf("dev-%02d", i)
		if c := mustCounts(t, s, id); c.Total != 4 {
			t.Errorf("%s: %d observations stored, want 4", id, c.Total)
		}
		want := map[string]string{"C1": "pass"}
		if i%3 == 0 {
			want = map[string]string{}
		}
		if got := openStates(t, s, id); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: open intervals %v, want %v", id, got, want)
		}
	}
}

// testIngestScoredBesideEvaluation runs another evaluation of a device
// (a rescore on another replica) while a report of the device is stored and
// scored: both must be recorded. They lock the device's row and its
// intervals in the same order; when they did not, PostgreSQL found a
// deadlock and aborted one of them.
func testIngestScoredBesideEvaluation(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	si := s.(store.ScoredIngester)
	mustEnroll(t, s, device("dev-a", "machine-a"))
	mustIngest(t, s, "dev-a", seqs(1, 1, "os"), at(time.Hour), 1)
	mustRecord(t, s, "dev-a", at(time.Hour), nil, st("C1", "pass"))
	other := make(chan error, 1)
	n, scoreErr, err := si.IngestScored(ctx, "dev-a", seqs(2, 2, "os"), at(2*time.Hour), func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
		current, err := r.CurrentStates(ctx, "dev-a")
		if err != nil {
			return store.StatePlan{}, err
		}
		go func() {
			// As a real evaluation does, it moves the device's next
			// rescore time (a write to the device's row).
			p := states.Plan("dev-a", current, []store.ControlState{st("C1", "pass")}, nil, at(2*time.Hour))
			p.RescoreAt = at(26 * time.Hour)
			other <- s.RecordStates(context.WithoutCancel(ctx), p)
		}()
		// Long enough for the other evaluation to take its first locks
		// (it then waits for this transaction), shorter than PostgreSQL's
		// deadlock_timeout.
		time.Sleep(300 * time.Millisecond)
		return states.Plan("dev-a", current, []store.ControlState{st("C1", "pass")}, nil, at(2*time.Hour)), nil
	})
	if err != nil || n != 1 || scoreErr != nil {
		t.Errorf("IngestScored beside another evaluation = %d new, evaluation error %v, %v; want 1, nil, nil", n, scoreErr, err)
	}
	if err := <-other; err != nil {
		t.Errorf("the other evaluation: %v", err)
	}
	if got := openStates(t, s, "dev-a"); fmt.Sprint(got) != "map[C1:pass]" {
		t.Errorf("open intervals %v, want map[C1:pass]", got)
	}
}

// openStates is a device's open intervals, control to status.
func openStates(t *testing.T, s store.Store, deviceID string) map[string]string {
	t.Helper()
	cur, err := s.CurrentStates(t.Context(), deviceID)
	if err != nil {
		t.Fatalf("CurrentStates(%s): %v", deviceID, err)
	}
	out := map[string]string{}
	for _, c := range cur {
		out[c.ControlID] = c.Status
	}
	return out
}

// testScoredBesideRecorded: reports scored in their transactions and
// separate evaluations of the same devices, flipping compliance, all at
// once: the fleet's compliant count and control counts (moved by deltas
// worked out from the device's row as each transaction read it) end equal
// to what the devices' open intervals say, and no report's evaluation
// fails (a conflict is retried by the caller; anything else is a bug).
func testScoredBesideRecorded(t *testing.T, open func(*testing.T) store.Store) {
	ctx := t.Context()
	s := open(t)
	si := s.(store.ScoredIngester)
	devs := []string{"dev-a", "dev-b"}
	for i, id := range devs {
		mustEnroll(t, s, device(id, fmt.Sprintf("machine-%d", i)))
	}
	status := func(k int) string { return []string{store.Pass, store.Fail}[k%2] }
	var wg sync.WaitGroup
	seq := map[string]*atomic.Uint64{} // the devices' last seq sent
	for _, id := range devs {
		seq[id] = new(atomic.Uint64)
	}
	for w := range 8 {
		wg.Go(func() {
			for k := range 12 {
				id := devs[(w+k)%len(devs)]
				when := at(time.Duration(w*100+k) * time.Minute)
				if w%2 == 0 {
					next := seq[id].Add(1)
					_, scoreErr, err := si.IngestScored(ctx, id, []store.Observation{obs(next, "os")}, when,
						func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
							cur, err := r.CurrentStates(ctx, id)
							if err != nil {
								return store.StatePlan{}, err
							}
							return states.Plan(id, cur, []store.ControlState{st("C1", status(k)), st("C2", store.Pass)}, nil, when), nil
						})
					if err != nil || (scoreErr != nil && !errors.Is(scoreErr, store.ErrConflict)) {
						t.Errorf("IngestScored(%s): %v, evaluation %v", id, err, scoreErr)
					}
					continue
				}
				if err := states.Record(ctx, s, id, []store.ControlState{st("C1", status(k+1)), st("C2", store.Pass)}, nil, when); err != nil {
					t.Errorf("states.Record(%s): %v", id, err)
				}
			}
		})
	}
	wg.Wait()
	want := fleet(len(devs), 0, counts{})
	for _, id := range devs {
		cur := openStates(t, s, id)
		compliant := len(cur) > 0
		for c, status := range cur {
			if want.Controls[c] == nil {
				want.Controls[c] = map[string]int{}
			}
			want.Controls[c][status]++
			compliant = compliant && status == store.Pass
		}
		if compliant {
			want.Compliant++
		}
	}
	if got := mustFleet(t, s); !sameCounts(got, want) {
		t.Errorf("FleetCounts = %+v, want %+v (from the open intervals)", got, want)
	}
	if err := s.RecordStates(ctx, store.StatePlan{DeviceID: "dev-nobody", At: at(time.Hour)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordStates for a device never enrolled = %v, want ErrNotFound", err)
	}
}
