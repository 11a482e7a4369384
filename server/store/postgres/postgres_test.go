package postgres_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/devices"
	"github.com/evident-dev/evident/server/states"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/postgres"
	"github.com/evident-dev/evident/server/store/postgres/pgtest"
	"github.com/evident-dev/evident/server/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := postgres.Open(context.Background(), pgtest.URL(t), false)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// Replicas starting together on an empty database: every one opens, the
// schema is migrated once, and all agree on its version.
func TestConcurrentMigration(t *testing.T) {
	url := pgtest.URL(t)
	const replicas = 4
	errs := make(chan error, replicas)
	for range replicas {
		go func() {
			s, err := postgres.Open(context.Background(), url, false)
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	for range replicas {
		if err := <-errs; err != nil {
			t.Fatalf("Open: %v", err)
		}
	}
	s, err := postgres.Open(context.Background(), url, true)
	if err != nil {
		t.Fatalf("read-only Open after migration: %v", err)
	}
	s.Close()
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name    string
		prepare string // SQL run on the empty schema first
		want    string
	}{
		{"read-only on an empty database", "", "database is empty"},
		{"read-only on an older schema", "CREATE TABLE evident_schema (version INTEGER NOT NULL); INSERT INTO evident_schema VALUES (0)", "older than this binary"},
		{"a newer schema", "CREATE TABLE evident_schema (version INTEGER NOT NULL); INSERT INTO evident_schema VALUES (9999)", "newer than this binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := pgtest.URL(t)
			if tt.prepare != "" {
				db, err := sql.Open("pgx", url)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec(tt.prepare); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			for _, ro := range []bool{true, false} {
				if !ro && !strings.Contains(tt.want, "newer") {
					continue // a writable open migrates what is older or empty
				}
				s, err := postgres.Open(context.Background(), url, ro)
				if err == nil {
					s.Close()
					t.Fatalf("Open(readOnly=%v) succeeded, want %q", ro, tt.want)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Open(readOnly=%v) = %v, want %q", ro, err, tt.want)
				}
			}
		})
	}
}

// Unreachable: a clear error, not a hang.
func TestOpenUnreachable(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=2", false)
	if err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("Open(unreachable) = %v, want a connect error", err)
	}
}

// The fleet's aggregate rows are shared by every device. An evaluation or
// an enrollment must not wait on them: PostgreSQL holds a row's lock until
// its transaction commits, so writing them in each evaluation made every
// replica's evaluations queue behind each other. Here another transaction
// holds every aggregate row locked while a device enrolls and is
// evaluated; both must complete, and the counts must still be exact.
func TestEvaluationsDoNotLockAggregates(t *testing.T) {
	url := pgtest.URL(t)
	s, err := postgres.Open(t.Context(), url, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dev := func(id string) store.Device {
		return store.Device{ID: id, Hostname: "host-" + id, GOOS: "linux", GOARCH: "amd64", MachineID: "m-" + id, SecretID: "s", EnrolledAt: t0}
	}
	if _, err := devices.Enroll(t.Context(), s, dev("dev-a")); err != nil {
		t.Fatal(err)
	}
	if err := states.Record(t.Context(), s, "dev-a", []store.ControlState{{ControlID: "c1", Status: store.Fail}}, nil, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FoldCounts(t.Context()); err != nil {
		t.Fatal(err)
	}

	lock := lockRows(t, url, `SELECT 1 FROM posture_counts FOR UPDATE`)
	if _, err := lock.Exec(`LOCK TABLE posture_daily IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	// A deadline, not a measurement: waiting on the lock would last until
	// the holder's rollback, after the test gave up.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := devices.Enroll(ctx, s, dev("dev-b")); err != nil {
		t.Fatalf("enrolling while the aggregate rows are locked: %v", err)
	}
	for _, id := range []string{"dev-a", "dev-b"} {
		if err := states.Record(ctx, s, id, []store.ControlState{{ControlID: "c1", Status: store.Pass}}, nil, t0.Add(time.Minute)); err != nil {
			t.Fatalf("evaluating %s while the aggregate rows are locked: %v", id, err)
		}
	}
	want := store.FleetCounts{Devices: 2, Compliant: 2, Controls: map[string]map[string]int{"c1": {store.Pass: 2}}}
	for _, folded := range []bool{false, true} {
		if folded {
			lock.Rollback()
			if _, err := s.FoldCounts(ctx); err != nil {
				t.Fatalf("FoldCounts after the lock: %v", err)
			}
		}
		got, err := s.FleetCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("FleetCounts (folded: %v) = %+v, want %+v", folded, got, want)
		}
	}
}

// A reusable enrollment secret enrolls a whole fleet: its uses must not be
// counted under its row's lock, or every enrollment waits for the one
// before it to commit. Here another transaction holds the secret's row
// locked while it is used; the uses must complete and be counted.
func TestSecretUsesDoNotLockSecret(t *testing.T) {
	url := pgtest.URL(t)
	s, err := postgres.Open(t.Context(), url, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hash := []byte("fleet-secret-hash")
	if err := s.CreateEnrollSecret(t.Context(), store.EnrollSecret{ID: "fleet", Hash: hash, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	lock := lockRows(t, url, `SELECT 1 FROM enroll_secrets WHERE id = 'fleet' FOR UPDATE`)
	// A deadline, not a measurement.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		got, err := s.UseEnrollSecret(ctx, hash, now)
		if err != nil || got.Uses != i+1 {
			t.Fatalf("use %d while the secret's row is locked: %d uses, %v", i+1, got.Uses, err)
		}
	}
	lock.Rollback()
	if _, err := s.FoldCounts(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := s.PeekEnrollSecret(ctx, hash, now); err != nil || got.Uses != 3 {
		t.Errorf("after folding: %d uses, %v; want 3", got.Uses, err)
	}
}

// lockRows runs query (a SELECT … FOR UPDATE) in a transaction of its own
// connection and returns it, holding the rows' locks until it is rolled
// back (at the end of the test at the latest).
func lockRows(t *testing.T, url, query string) *sql.Tx {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tx, err := db.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	var locked int
	if err := tx.QueryRow(`SELECT count(*) FROM (` + query + `) l`).Scan(&locked); err != nil || locked == 0 {
		t.Fatalf("locking rows (%s): %d rows, %v", query, locked, err)
	}
	return tx
}

// An installation whose default isolation is repeatable read (an operator's
// default_transaction_isolation): writes of one device at two replicas
// still wait for each other and then succeed, instead of failing with a
// serialization error after the wait.
func TestWritesUnderRepeatableReadDefault(t *testing.T) {
	ctx := context.Background()
	s, err := postgres.Open(ctx, pgtest.URL(t)+"&default_transaction_isolation=repeatable%20read", false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.EnrollDevice(ctx, store.Device{ID: "dev-a", Hostname: "a", GOOS: "linux", MachineID: "m-a", EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	const writers = 8
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			var obs []store.Observation
			for i := range 4 {
				obs = append(obs, store.Observation{Seq: uint64(w*4 + i + 1), Collector: "os", CollectedAt: t0,
					Status: "ok", ParserVersion: 1, Payload: []byte(`{}`)})
			}
			_, scoreErr, err := s.IngestScored(ctx, "dev-a", obs, t0.Add(time.Duration(w)*time.Minute),
				func(ctx context.Context, r store.ScoreReader) (store.StatePlan, error) {
					cur, err := r.CurrentStates(ctx, "dev-a")
					if err != nil {
						return store.StatePlan{}, err
					}
					return states.Plan("dev-a", cur, []store.ControlState{{ControlID: "C1", Status: store.Pass}}, nil, t0), nil
				})
			errs <- errors.Join(err, scoreErr)
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Errorf("IngestScored: %v", err)
		}
	}
	if c, err := s.Counts(ctx, "dev-a"); err != nil || c.Total != writers*4 {
		t.Errorf("Counts = %+v, %v; want %d observations", c, err, writers*4)
	}
}
