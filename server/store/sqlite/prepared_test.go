package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/proto/evidence"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/scorer"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestReportStatementsPrepared sends reports through IngestScored, scored
// with the default policy, alone and several devices at once (a group
// commit), with statuses that open, confirm and close intervals, then
// folds their aggregate deltas and an enrollment secret's use
// (FoldCounts, every second on every replica), and fails on any statement
// of those transactions that SQLite had to parse: a statement prepared
// ahead is parsed once per server, the others on every report (a
// chain-head read parsed per report was 4 % of an idle fleet's server
// CPU; the fold's, 5 % at 1,000 devices reporting every 5 minutes).
func TestReportStatementsPrepared(t *testing.T) {
	ctx := context.Background()
	st := open(t, filepath.Join(t.TempDir(), "evident.db"), false)
	const devices = 6
	for i := range devices {
		d := store.Device{ID: fmt.Sprintf("dev-%d", i), Hostname: fmt.Sprintf("host-%d", i), GOOS: "linux",
			MachineID: fmt.Sprintf("%032x", i), EnrolledAt: t0}
		if _, err := st.EnrollDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var unprepared []string
	recording := true
	record := func(on bool) {
		mu.Lock()
		defer mu.Unlock()
		recording = on
	}
	sqlite.Dialect.Unprepared = func(q string) {
		mu.Lock()
		defer mu.Unlock()
		if recording && !slices.Contains(unprepared, q) {
			unprepared = append(unprepared, q)
		}
	}
	t.Cleanup(func() { sqlite.Dialect.Unprepared = nil })

	policy := controls.Default()
	collectors := []string{evidence.OSInfo, evidence.DiskEncryption, evidence.Firewall, evidence.Patches,
		evidence.ScreenLock, evidence.SecureBoot, evidence.Antimalware, evidence.TPM}
	report := func(dev string, round int) error {
		at := t0.Add(time.Duration(round) * time.Minute)
		status := string(evidence.StatusOK)
		if round%2 == 1 { // every control's status moves: intervals close and open
			status = string(evidence.StatusError)
		}
		var obs []store.Observation
		for i, c := range collectors {
			obs = append(obs, store.Observation{Seq: uint64(round*len(collectors) + i + 1), Collector: c, CollectedAt: at, ReceivedAt: at,
				Status: status, ParserVersion: 1, Payload: []byte(`{}`), Sources: []byte(`[]`)})
		}
		return ingestScored(ctx, st, policy, dev, obs, at)
	}
	for round := range 4 {
		// One device alone (a transaction of its own), then all at once.
		if err := report("dev-0", round); err != nil {
			t.Fatalf("report of dev-0, round %d: %v", round, err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, devices)
		for i := 1; i < devices; i++ {
			wg.Go(func() { errs <- report(fmt.Sprintf("dev-%d", i), round) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	if c, err := st.Counts(ctx, "dev-3"); err != nil || c.Total != 4*len(collectors) {
		t.Fatalf("dev-3 holds %+v (%v), want %d observations", c, err, 4*len(collectors))
	}
	// Enrollment's statements are not checked: they are not on a report's
	// path, nor run every second.
	record(false)
	if err := st.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "fleet", Hash: []byte("fleet-hash"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UseEnrollSecret(ctx, []byte("fleet-hash"), t0); err != nil {
		t.Fatal(err)
	}
	record(true)
	if n, err := st.FoldCounts(ctx); err != nil || n == 0 {
		t.Fatalf("FoldCounts = %d, %v: want the reports' deltas and the secret's use", n, err)
	}
	record(false)
	if sec, err := st.PeekEnrollSecret(ctx, []byte("fleet-hash"), t0); err != nil || sec.Uses != 1 {
		t.Fatalf("the secret after the fold: %+v, %v; want 1 use", sec, err)
	}
	sqlite.Dialect.Unprepared = nil
	for _, q := range unprepared {
		switch strings.ToUpper(strings.Fields(q)[0]) {
		case "SELECT", "INSERT", "UPDATE", "DELETE", "WITH":
			t.Errorf("a report's or a fold's transaction runs a statement that is not prepared ahead (add it to hotStatements):\n%s", q)
		}
	}
}

// ingestScored stores a report of dev as the ingest server does: in one
// transaction with its evaluation under policy, as of at.
func ingestScored(ctx context.Context, st *sqlite.Store, policy *controls.Policy, dev string, obs []store.Observation, at time.Time) error {
	_, scoreErr, err := st.IngestScored(ctx, dev, obs, at, func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
		return scorer.Plan(ctx, r, policy, dev, at)
	})
	return errors.Join(err, scoreErr)
}
