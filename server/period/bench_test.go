package period_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/period"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

const (
	benchDevices = 10_000
	benchDays    = 365
)

var (
	benchStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	benchEnd   = benchStart.AddDate(0, 0, benchDays)

	benchOnce sync.Once
	benchDir  string
	benchDB   string
	benchRows int
	benchErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchFleet generates, once per process, a year of history for 10,000
// devices: every device runs the default policy's controls, each passing
// most of the time and flipping to fail or unknown a few times a month for
// hours to days; one device in five has no TPM (not applicable); one in
// ten enrolls during the year; each reports weekly. Rows go in directly,
// in one transaction, in the schema's own format.
func benchFleet(b *testing.B) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "evident-period-bench-")
		if benchErr != nil {
			return
		}
		benchDB = filepath.Join(benchDir, "evident.db")
		start := time.Now()
		benchRows, benchErr = generate(benchDB, controls.Default())
		b.Logf("generated %d control intervals for %d devices x %d days in %v", benchRows, benchDevices, benchDays, time.Since(start).Round(time.Millisecond))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB
}

func generate(path string, p *controls.Policy) (int, error) {
	st, err := sqlite.Open(path, false) // creates the schema
	if err != nil {
		return 0, err
	}
	st.Close()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	devStmt, err := tx.Prepare(`INSERT INTO devices (id, hostname, goos, os_version, enrolled_at, last_seen_at) VALUES (?,?,?,?,?,?)`)
	if err != nil {
		return 0, err
	}
	stateStmt, err := tx.Prepare(`INSERT INTO control_states (device_id, control_id, status, reason, evidence_seq, evidence,
		since_at, until_at, evaluated_at, evaluations) VALUES (?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return 0, err
	}
	obsStmt, err := tx.Prepare(`INSERT INTO observations (device_id, seq, collector, collected_at, received_at, status, payload)
		VALUES (?,?,?,?,?,?,?)`)
	if err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(2026, 6))
	end := benchEnd.UnixNano()
	rows := 0
	for i := range benchDevices {
		id := fmt.Sprintf("%08x-bench", i*2654435761%(1<<32))
		enrolled := benchStart.Add(-time.Duration(rng.IntN(30*24)) * time.Hour)
		if i%10 == 0 {
			enrolled = benchStart.Add(time.Duration(rng.IntN(benchDays*24)) * time.Hour)
		}
		e := enrolled.UnixNano()
		if _, err := devStmt.Exec(id, "host-"+id[:8], "linux", "Ubuntu 24.04", e, end); err != nil {
			return 0, err
		}
		seq := int64(0)
		for t := e; t < end; t += int64(7 * 24 * time.Hour) {
			seq++
			if _, err := obsStmt.Exec(id, seq, "os", t, t, "ok", []byte(`{"name":"Ubuntu","version":"24.04"}`)); err != nil {
				return 0, err
			}
		}
		for _, c := range p.Controls {
			put := func(status, reason string, since, until int64, open bool) error {
				rows++
				var u any = until
				if open {
					u = nil
				}
				ev := fmt.Sprintf(`{"collector":"%s","seq":%d,"collected_at":"%s","facts":{"status":%q}}`,
					c.Check, seq, time.Unix(0, since).UTC().Format(time.RFC3339), status)
				_, err := stateStmt.Exec(id, c.ID, status, reason, seq, []byte(ev), since, u, max(since, until-int64(time.Hour)), 1+rng.IntN(500))
				return err
			}
			if c.ID == "DC-TPM-01" && i%5 == 0 {
				if err := put(store.NotApplicable, "no TPM", e, end, true); err != nil {
					return 0, err
				}
				continue
			}
			// About three flips a month across the nine controls: a
			// control fails or goes stale every ~3 months, for 1 h to 5 days.
			cursor := e
			for {
				next := cursor + int64(time.Duration(1+rng.IntN(180*24))*time.Hour)
				if next >= end {
					break
				}
				if err := put(store.Pass, "ok", cursor, next, false); err != nil {
					return 0, err
				}
				status, reason := store.Fail, "setting off"
				if rng.IntN(2) == 0 {
					status, reason = store.Unknown, "evidence older than 72h"
				}
				back := next + int64(time.Duration(1+rng.IntN(5*24))*time.Hour)
				if back >= end {
					cursor = next
					if err := put(status, reason, next, 0, true); err != nil {
						return 0, err
					}
					goto done
				}
				if err := put(status, reason, next, back, false); err != nil {
					return 0, err
				}
				cursor = back
			}
			if err := put(store.Pass, "ok", cursor, 0, true); err != nil {
				return 0, err
			}
		done:
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	_, err = db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return rows, err
}

// BenchmarkPeriodReport builds the year's period report of 10,000 devices
// and, alongside, times the bare scan of the same rows (the range query's
// rows iterated, nothing computed): the floor the report cannot beat.
func BenchmarkPeriodReport(b *testing.B) {
	path := benchFleet(b)
	st, err := sqlite.Open(path, true)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	raw, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	ctx := context.Background()
	p := controls.Default()
	opt := period.Options{From: benchStart, To: benchEnd, Now: benchEnd, Seed: 1}

	var scan time.Duration
	var scanned int
	b.ResetTimer()
	for range b.N {
		r, err := period.Build(ctx, st, p, opt)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Sample) != period.DefaultSampleSize || len(r.Devices) != benchDevices {
			b.Fatalf("report has %d devices, sample %d", len(r.Devices), len(r.Sample))
		}
		b.StopTimer()
		t := time.Now()
		scanned, err = scanRows(ctx, raw, opt.From, opt.To)
		if err != nil {
			b.Fatal(err)
		}
		scan += time.Since(t)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/report")
	b.ReportMetric(scan.Seconds()/float64(b.N), "scan-s")
	b.ReportMetric(float64(scanned), "rows")
}

// scanRows iterates the range query's rows, scanning the same columns as
// StatesOverlapping, and counts them.
func scanRows(ctx context.Context, db *sql.DB, from, to time.Time) (int, error) {
	rows, err := db.QueryContext(ctx, `SELECT device_id, control_id, status, reason, evidence_seq, since_at, until_at,
		evaluated_at, evaluations FROM control_states
		WHERE since_at < ? AND (until_at IS NULL OR until_at > ?)
		ORDER BY device_id, control_id, since_at`, to.UnixNano(), from.UnixNano())
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	var dev, ctl, status, reason string
	var seq, since, eval, evals int64
	var until sql.NullInt64
	for rows.Next() {
		if err := rows.Scan(&dev, &ctl, &status, &reason, &seq, &since, &until, &eval, &evals); err != nil {
			return 0, err
		}
		n++
	}
	return n, rows.Err()
}
