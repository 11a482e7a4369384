package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
)

// testConcurrentSecretUse: a single-use secret presented by many enrollments
// at once (several server replicas on one database) enrolls exactly one.
func testConcurrentSecretUse(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	tests := []struct {
		name   string
		secret store.EnrollSecret
		want   int // successful uses of 16
	}{
		{"single use", store.EnrollSecret{ID: "once", Hash: []byte("h-once"), CreatedAt: t0, SingleUse: true}, 1},
		{"reusable", store.EnrollSecret{ID: "many", Hash: []byte("h-many"), CreatedAt: t0}, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateEnrollSecret(t.Context(), tt.secret); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			ok := 0
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := s.UseEnrollSecret(t.Context(), tt.secret.Hash, at(time.Minute))
					switch {
					case err == nil:
						mu.Lock()
						ok++
						mu.Unlock()
					case err != store.ErrNotFound:
						t.Errorf("UseEnrollSecret: %v", err)
					}
				}()
			}
			wg.Wait()
			if ok != tt.want {
				t.Errorf("%d of 16 concurrent uses succeeded, want %d", ok, tt.want)
			}
			// The same before and after the uses are folded into the
			// secret's row.
			for _, folded := range []bool{false, true} {
				if folded {
					mustFold(t, s)
				}
				got, err := s.PeekEnrollSecret(t.Context(), tt.secret.Hash, at(time.Minute))
				if tt.secret.SingleUse {
					if err != store.ErrNotFound {
						t.Errorf("single-use secret after use (folded: %v): %v, want ErrNotFound", folded, err)
					}
				} else if err != nil || got.Uses != tt.want {
					t.Errorf("uses recorded (folded: %v) = %d (%v), want %d", folded, got.Uses, err, tt.want)
				}
			}
			// One more use counts on top of the folded ones.
			got, err := s.UseEnrollSecret(t.Context(), tt.secret.Hash, at(time.Minute))
			switch {
			case tt.secret.SingleUse && err != store.ErrNotFound:
				t.Errorf("a single-use secret used again after folding: %v, want ErrNotFound", err)
			case !tt.secret.SingleUse && (err != nil || got.Uses != tt.want+1):
				t.Errorf("use after folding = %d uses (%v), want %d", got.Uses, err, tt.want+1)
			}
		})
	}
}

// testConcurrentEvaluations: many devices evaluated at once, every
// evaluation moving the same fleet-wide aggregates, and each device's
// evaluations raced by a second one of the same states (a report's scoring
// against a rescore on another replica): no evaluation fails for another's
// sake, and the aggregates end equal to the devices' final states.
func testConcurrentEvaluations(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	const devices, rounds = 12, 6
	for i := range devices {
		mustEnroll(t, s, device(fmt.Sprintf("dev-%02d", i), fmt.Sprintf("m-%02d", i)))
	}
	statuses := []string{store.Pass, store.Fail, store.Unknown}
	// Round r of device i: c1 and c2 take statuses that differ by device
	// and round, so evaluations close and open intervals of every status.
	next := func(i, r int) []store.ControlState {
		return []store.ControlState{
			{ControlID: "c1", Status: statuses[(i+r)%3], Reason: "r"},
			{ControlID: "c2", Status: statuses[(i*2+r)%3], Reason: "r"},
		}
	}
	// Folds run all along, several at once (as every replica folds): each
	// change must be folded exactly once.
	stopFolds := make(chan struct{})
	var folds sync.WaitGroup
	for range 3 {
		folds.Add(1)
		go func() {
			defer folds.Done()
			for {
				select {
				case <-stopFolds:
					return
				default:
				}
				if _, err := s.FoldCounts(t.Context()); err != nil {
					t.Errorf("FoldCounts during evaluations: %v", err)
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("dev-%02d", i)
			for r := range rounds {
				when := at(time.Duration(r) * time.Second)
				var race sync.WaitGroup
				for range 2 {
					race.Add(1)
					go func() {
						defer race.Done()
						if err := states.Record(t.Context(), s, id, next(i, r), nil, when); err != nil {
							t.Errorf("states.Record(%s, round %d): %v", id, r, err)
						}
					}()
				}
				race.Wait()
			}
		}()
	}
	wg.Wait()
	close(stopFolds)
	folds.Wait()
	if t.Failed() {
		t.FailNow()
	}
	want := store.FleetCounts{Devices: devices, Controls: map[string]map[string]int{}}
	for i := range devices {
		cur, err := s.CurrentStates(t.Context(), fmt.Sprintf("dev-%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		if len(cur) != 2 {
			t.Errorf("dev-%02d has %d open intervals, want 2", i, len(cur))
		}
		compliant := true
		for _, c := range cur {
			if want.Controls[c.ControlID] == nil {
				want.Controls[c.ControlID] = map[string]int{}
			}
			want.Controls[c.ControlID][c.Status]++
			compliant = compliant && c.Status == store.Pass
		}
		if compliant {
			want.Compliant++
		}
	}
	for _, folded := range []bool{false, true} {
		if folded {
			mustFold(t, s)
		}
		got := mustFleet(t, s)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("FleetCounts after concurrent evaluations (folded: %v) = %+v, want %+v (from the open intervals)", folded, got, want)
		}
		// The daily history ends on the same counts.
		days := mustDaily(t, s, at(0), at(0))
		if fmt.Sprint(days[0].FleetCounts) != fmt.Sprint(want) {
			t.Errorf("DailyCounts of the evaluations' day (folded: %v) = %+v, want %+v", folded, days[0].FleetCounts, want)
		}
	}
}
