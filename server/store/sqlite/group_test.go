package sqlite_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// Concurrent reports are committed together, and one that fails (its
// device is unknown) fails alone: every other report of its group is
// stored, once.
func TestGroupCommit(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "evident.db"), false)
	const devices, reports = 8, 40
	for i := range devices {
		if _, err := s.EnrollDevice(t.Context(), store.Device{ID: fmt.Sprintf("dev-%d", i), EnrolledAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	commits0, writes0 := s.GroupStats()
	obs := func(seq uint64) []store.Observation {
		return []store.Observation{{Seq: seq, Collector: "osinfo", CollectedAt: t0, Status: "ok", Payload: []byte(`{}`)}}
	}
	var wg sync.WaitGroup
	errs := make(chan error, devices*reports)
	for i := range devices + 1 { // the last device was never enrolled
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range reports {
				_, err := s.Ingest(t.Context(), fmt.Sprintf("dev-%d", i), obs(uint64(r+1)), t0.Add(time.Duration(r)*time.Second))
				if i == devices {
					if err == nil {
						t.Errorf("report %d of an unknown device was stored", r)
					}
					continue
				}
				if err != nil {
					errs <- fmt.Errorf("dev-%d report %d: %w", i, r, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range devices {
		c, err := s.Counts(t.Context(), fmt.Sprintf("dev-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if c.Total != reports || c.MinSeq != 1 || c.MaxSeq != reports {
			t.Errorf("dev-%d: %d observations (seq %d..%d), want %d (1..%d)", i, c.Total, c.MinSeq, c.MaxSeq, reports, reports)
		}
		head, err := s.ChainHead(t.Context(), fmt.Sprintf("dev-%d", i))
		if err != nil || head.Index != reports {
			t.Errorf("dev-%d: chain head %d (%v), want %d", i, head.Index, err, reports)
		}
	}
	commits, writes := s.GroupStats()
	commits, writes = commits-commits0, writes-writes0
	if writes != devices*reports {
		t.Errorf("group commits held %d writes, want %d", writes, devices*reports)
	}
	if commits >= writes {
		t.Errorf("%d commits for %d concurrent writes: nothing was grouped", commits, writes)
	}
	t.Logf("%d writes in %d commits", writes, commits)
}
