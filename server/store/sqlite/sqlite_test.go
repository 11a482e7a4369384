package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/store/storetest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func open(t *testing.T, path string, readOnly bool) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path, readOnly)
	if err != nil {
		t.Fatalf("Open(%s, readOnly=%v): %v", path, readOnly, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatalf("read user_version: %v", err)
	}
	return v
}

func setUserVersion(t *testing.T, path string, v int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		t.Fatalf("set user_version: %v", err)
	}
}

func enrollAndIngest(t *testing.T, s store.Store, id string, from, to uint64) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.EnrollDevice(ctx, store.Device{ID: id, Hostname: "h-" + id, MachineID: "m-" + id, EnrolledAt: t0}); err != nil {
		t.Fatalf("EnrollDevice: %v", err)
	}
	ingest(t, s, id, from, to)
}

func ingest(t *testing.T, s store.Store, id string, from, to uint64) {
	t.Helper()
	var obs []store.Observation
	for i := from; i <= to; i++ {
		obs = append(obs, store.Observation{Seq: i, Collector: "os", Status: "ok",
			CollectedAt: t0.Add(time.Duration(i) * time.Second), Payload: json.RawMessage(`{}`)})
	}
	if _, err := s.Ingest(t.Context(), id, obs, t0.Add(time.Hour)); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
}

func total(t *testing.T, s store.Store, id string) int {
	t.Helper()
	c, err := s.Counts(t.Context(), id)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c.Total
}

func TestSchemaVersion(t *testing.T) {
	if v := sqlite.SchemaVersion(); v < 1 {
		t.Fatalf("SchemaVersion() = %d, want >= 1 (migrations embedded)", v)
	}
	path := filepath.Join(t.TempDir(), "evident.db")
	s := open(t, path, false)
	s.Close()
	if got := userVersion(t, path); got != sqlite.SchemaVersion() {
		t.Errorf("user_version after Open = %d, want %d", got, sqlite.SchemaVersion())
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evident.db")
	s, err := sqlite.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	enrollAndIngest(t, s, "dev-1", 1, 10)
	if err := s.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "s1", Hash: []byte("h"), CreatedAt: t0, SingleUse: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseEnrollSecret(ctx, []byte("h"), t0); err != nil {
		t.Fatal(err)
	}
	if err := states.Record(ctx, s, "dev-1", []store.ControlState{{ControlID: "c1", Status: store.Pass}}, nil, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Reopen twice: migrations already applied must not run again.
	for i := range 2 {
		s := open(t, path, false)
		if d, err := s.Device(ctx, "dev-1"); err != nil || d.Hostname != "h-dev-1" || d.LastSeenAt == nil {
			t.Errorf("reopen %d: Device = %+v, %v", i, d, err)
		}
		if n := total(t, s, "dev-1"); n != 10 {
			t.Errorf("reopen %d: observations = %d, want 10", i, n)
		}
		if _, err := s.UseEnrollSecret(ctx, []byte("h"), t0); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("reopen %d: used single-use secret usable again: %v", i, err)
		}
		if cur, err := s.CurrentStates(ctx, "dev-1"); err != nil || len(cur) != 1 || !cur[0].Since.Equal(t0) {
			t.Errorf("reopen %d: CurrentStates = %+v, %v", i, cur, err)
		}
		// Still idempotent across restarts.
		if n, err := s.Ingest(ctx, "dev-1", []store.Observation{{Seq: 10, Collector: "os", CollectedAt: t0}}, t0); err != nil || n != 0 {
			t.Errorf("reopen %d: resend of seq 10 = %d, %v; want 0 new", i, n, err)
		}
		s.Close()
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	newer := sqlite.SchemaVersion() + 1
	tests := []struct {
		name     string
		prepare  func(t *testing.T, path string)
		readOnly bool
	}{
		{"migrated then bumped", migratedThenBumped(newer), false},
		{"migrated then bumped, read-only", migratedThenBumped(newer), true},
		{"bare file from a newer binary", func(t *testing.T, path string) { setUserVersion(t, path, newer) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "evident.db")
			tc.prepare(t, path)
			s, err := sqlite.Open(path, tc.readOnly)
			if err == nil {
				s.Close()
				t.Fatalf("Open on schema %d succeeded; want refusal", newer)
			}
			if !strings.Contains(err.Error(), "newer") {
				t.Errorf("Open error = %q, want it to mention \"newer\"", err)
			}
			// Refused means untouched.
			if got := userVersion(t, path); got != newer {
				t.Errorf("user_version after refused Open = %d, want %d", got, newer)
			}
		})
	}
}

func migratedThenBumped(v int) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		s, err := sqlite.Open(path, false)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		setUserVersion(t, path, v)
	}
}

func TestReadOnlyRefusesMissingOrEmpty(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
	}{
		{"missing", func(*testing.T, string) {}},
		{"zero-byte file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"sqlite file never migrated", func(t *testing.T, path string) {
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE other (x)"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "evident.db")
			tc.prepare(t, path)
			_, statErr := os.Stat(path)
			s, err := sqlite.Open(path, true)
			if err == nil {
				s.Close()
				t.Fatal("read-only Open succeeded; want an error")
			}
			t.Logf("error: %v", err)
			msg := err.Error()
			if !strings.Contains(msg, path) && !strings.Contains(msg, "evident-server") {
				t.Errorf("error %q names neither the file nor what to do", msg)
			}
			if _, err := os.Stat(path); os.IsNotExist(statErr) && !os.IsNotExist(err) {
				t.Errorf("read-only Open created %s", path)
			}
		})
	}
}

func TestReadOnlyAlongsideWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evident.db")
	w := open(t, path, false)
	enrollAndIngest(t, w, "dev-1", 1, 10)

	r := open(t, path, true)
	ctx := t.Context()
	if d, err := r.Device(ctx, "dev-1"); err != nil || d.ID != "dev-1" {
		t.Fatalf("reader Device = %+v, %v", d, err)
	}
	if n := total(t, r, "dev-1"); n != 10 {
		t.Errorf("reader sees %d observations, want 10", n)
	}

	// The writer keeps writing; the reader sees the commits (WAL: no
	// blocking either way).
	ingest(t, w, "dev-1", 11, 20)
	if n := total(t, r, "dev-1"); n != 20 {
		t.Errorf("reader sees %d observations after more writes, want 20", n)
	}
	if ds, err := r.Devices(ctx); err != nil || len(ds) != 1 {
		t.Errorf("reader Devices = %d, %v", len(ds), err)
	}

	// A reader holding a read transaction open (rows not yet drained) does
	// not block the writer.
	h, err := r.History(ctx, "dev-1", "os", 100)
	if err != nil || len(h) != 20 {
		t.Fatalf("reader History = %d, %v", len(h), err)
	}
	ingest(t, w, "dev-1", 21, 25)

	// The reader cannot write, whatever it tries.
	writes := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"Ingest", func(ctx context.Context) error {
			_, err := r.Ingest(ctx, "dev-1", []store.Observation{{Seq: 100, Collector: "os", Status: "ok", CollectedAt: t0}}, t0)
			return err
		}},
		{"EnrollDevice", func(ctx context.Context) error {
			_, err := r.EnrollDevice(ctx, store.Device{ID: "dev-2", EnrolledAt: t0})
			return err
		}},
		{"CreateEnrollSecret", func(ctx context.Context) error {
			return r.CreateEnrollSecret(ctx, store.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: t0})
		}},
		{"RecordStates", func(ctx context.Context) error {
			return r.RecordStates(ctx, store.StatePlan{DeviceID: "dev-1", At: t0, Open: []store.ControlState{{ControlID: "c1", Status: store.Pass, Since: t0, EvaluatedAt: t0}}})
		}},
	}
	for _, wr := range writes {
		t.Run(wr.name, func(t *testing.T) {
			if err := wr.fn(t.Context()); err == nil {
				t.Errorf("read-only %s succeeded, want an error", wr.name)
			}
		})
	}
	if n := total(t, w, "dev-1"); n != 25 {
		t.Errorf("observations = %d after refused reader writes, want 25", n)
	}
	if _, err := w.Device(ctx, "dev-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("reader's EnrollDevice landed: %v", err)
	}
	// The writer is unaffected by the reader's failures.
	ingest(t, w, "dev-1", 26, 30)
	if n := total(t, r, "dev-1"); n != 30 {
		t.Errorf("reader sees %d observations, want 30", n)
	}
}

// BenchmarkIngest measures batches of 100 new observations with ~1 KiB
// payloads, one transaction per batch, on a real file with the production
// pragmas (WAL, synchronous=FULL).
func BenchmarkIngest(b *testing.B) {
	s, err := sqlite.Open(filepath.Join(b.TempDir(), "evident.db"), false)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.EnrollDevice(ctx, store.Device{ID: "dev-1", MachineID: "m", EnrolledAt: t0}); err != nil {
		b.Fatal(err)
	}
	const batch = 100
	payload := json.RawMessage(`{"data":"` + strings.Repeat("x", 1000) + `"}`)
	sources := json.RawMessage(`["/etc/os-release"]`)
	obs := make([]store.Observation, batch)
	var seq uint64
	b.SetBytes(int64(batch * len(payload)))
	for b.Loop() {
		for i := range obs {
			seq++
			obs[i] = store.Observation{Seq: seq, Collector: fmt.Sprintf("c%d", i%10), Status: "ok",
				CollectedAt: t0.Add(time.Duration(seq) * time.Second), Payload: payload, Sources: sources, DurationMS: 3}
		}
		n, err := s.Ingest(ctx, "dev-1", obs, t0)
		if err != nil {
			b.Fatal(err)
		}
		if n != batch {
			b.Fatalf("Ingest = %d new, want %d", n, batch)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "obs/s")
}

// TestReadOnlyRefusesOlderSchema: a report (read-only, never migrating) on a
// database an older server left says how to upgrade it instead of failing
// on a missing table; a writer migrates it.
func TestReadOnlyRefusesOlderSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evident.db")
	migratedThenBumped(sqlite.SchemaVersion()-1)(t, path)
	if s, err := sqlite.Open(path, true); err == nil {
		s.Close()
		t.Fatal("read-only Open on an older schema succeeded")
	} else if !strings.Contains(err.Error(), "older than this binary's") || !strings.Contains(err.Error(), "evident-server run") {
		t.Errorf("error %q does not say how to upgrade", err)
	}
	if got := userVersion(t, path); got != sqlite.SchemaVersion()-1 {
		t.Errorf("a read-only Open changed the schema version to %d", got)
	}
}

// TestDataFilesPrivate: the database and its WAL and shared-memory files
// are 0600 even in a directory anyone can read, and a database left
// readable by an older version is made private at the next open.
func TestDataFilesPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX modes")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "evident.db")
	st, err := sqlite.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnrollDevice(context.Background(), store.Device{ID: "dev-1", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatalf("%s: %s: %v", when, f, err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s is %v, want 0600", when, filepath.Base(f), fi.Mode().Perm())
			}
		}
	}
	check("created")
	st.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = sqlite.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.EnrollDevice(context.Background(), store.Device{ID: "dev-2", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	check("reopened")
}
