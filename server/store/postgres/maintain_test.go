package postgres_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/postgres"
	"github.com/evident-dev/evident/server/store/postgres/pgtest"
)

// A new deployment, on a PostgreSQL whose autovacuum does not run (turned
// off for the store's tables here, as it is globally on CI machines):
// statements prepared while the tables were empty keep plans that walk a
// device's whole history, and rows updated on every report leave dead
// versions behind. Maintain gathers statistics (which makes every
// connection plan again) and vacuums; then it has nothing left to do.
func TestMaintainReplansAndVacuums(t *testing.T) {
	ctx := context.Background()
	const devices, reports, collectors = 20, 60, 8
	// The stale plan is what this test starts from, and anything that
	// resets the waiting connection's caches replans it early (other test
	// packages' migrations on the same server can overflow its queue of
	// catalog invalidations): then the scenario is set up again in a new
	// schema, at most three times.
	var url string
	var admin *sql.DB
	var conn *sql.Conn
	for attempt := 1; ; attempt++ {
		var n int64
		url, admin, conn, n = stalePlanScenario(t, devices, reports, collectors)
		if n > collectors {
			break
		}
		if attempt == 3 {
			t.Fatalf("precondition: the plan made on empty tables reads %d observations for %d latest, %d times; want a plan that walks the history", n, collectors, attempt)
		}
		t.Logf("attempt %d: the connection was replanned before Maintain (reads %d observations): setting up again", attempt, n)
	}
	read := func() int64 { return observationsRead(t, conn) }
	deadBefore := waitDead(t, admin, "devices", devices*reports/2)

	s, err := postgres.Open(ctx, url, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.Maintain(ctx)
	if err != nil {
		t.Fatalf("Maintain: %v", err)
	}
	for _, tb := range []string{"devices", "observations", "latest_observations", "chain_heads"} {
		if !slices.Contains(m.Analyzed, tb) {
			t.Errorf("analyzed %v, want %s among them", m.Analyzed, tb)
		}
	}
	if !slices.Contains(m.Vacuumed, "devices") {
		t.Errorf("vacuumed %v, want devices among them (autovacuum is off for it, and each report updated its row)", m.Vacuumed)
	}
	if !slices.Contains(m.Vacuumed, "observations") {
		t.Errorf("vacuumed %v, want observations among them (no dead rows, but %d new ones: its visibility map)", m.Vacuumed, devices*reports*collectors)
	}
	if n := read(); n != collectors {
		t.Errorf("after Maintain the same prepared statement reads %d observations, want %d (the latest only)", n, collectors)
	}
	var dead int64
	if err := admin.QueryRow(`SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'devices' AND schemaname = current_schema()`).Scan(&dead); err != nil {
		t.Fatal(err)
	}
	if dead > deadBefore/10 {
		t.Errorf("devices: %d dead rows after Maintain, %d before", dead, deadBefore)
	}

	again, err := s.Maintain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Analyzed)+len(again.Vacuumed) != 0 {
		t.Errorf("a second Maintain with nothing changed did %+v, want nothing", again)
	}
}

// stalePlanScenario sets up a new deployment in a fresh schema: a
// connection that prepared the latest-observations read on empty tables,
// then devices × reports reports of collectors observations each, written
// with autovacuum off for the store's tables. It returns the schema's URL,
// an admin connection pool, the connection holding the prepared statement
// and how many observations rows that statement reads for dev-0.
func stalePlanScenario(t *testing.T, devices, reports, collectors int) (string, *sql.DB, *sql.Conn, int64) {
	t.Helper()
	ctx := context.Background()
	url := pgtest.URL(t)
	s, err := postgres.Open(ctx, url, false)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	tables := []string{"devices", "observations", "latest_observations", "chain_heads"}
	for _, tb := range tables {
		if _, err := admin.Exec(`ALTER TABLE ` + tb + ` SET (autovacuum_enabled = false)`); err != nil {
			t.Fatal(err)
		}
	}

	// A connection that plans the latest-observations read on the empty
	// tables, as the store's connections do on a new database.
	conn, err := admin.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, q := range []string{
		`SET plan_cache_mode = force_generic_plan`,
		`PREPARE latest(text) AS SELECT o.seq, o.payload FROM latest_observations l
			JOIN observations o ON o.device_id = l.device_id AND o.seq = l.seq WHERE l.device_id = $1`,
		`EXPLAIN EXECUTE latest('dev-0')`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for d := range devices {
		id := fmt.Sprintf("dev-%d", d)
		if _, err := s.EnrollDevice(ctx, store.Device{ID: id, Hostname: id, GOOS: "linux", MachineID: fmt.Sprintf("%032x", d), EnrolledAt: t0}); err != nil {
			t.Fatal(err)
		}
		seq := uint64(0)
		for r := range reports {
			at := t0.Add(time.Duration(r) * time.Minute)
			var batch []store.Observation
			for c := range collectors {
				seq++
				batch = append(batch, store.Observation{Seq: seq, Collector: fmt.Sprintf("c%d", c), CollectedAt: at,
					Status: "ok", ParserVersion: 1, Payload: json.RawMessage(`{}`)})
			}
			if _, err := s.Ingest(ctx, id, batch, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The writers' statistics reach the server when their sessions end.
	s.Close()
	return url, admin, conn, observationsRead(t, conn)
}

// observationsRead runs the prepared statement latest for dev-0 and
// returns how many observations rows its plan read.
func observationsRead(t *testing.T, conn *sql.Conn) int64 {
	t.Helper()
	var out string
	if err := conn.QueryRowContext(context.Background(), `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE latest('dev-0')`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	type node struct {
		Relation string  `json:"Relation Name"`
		Rows     float64 `json:"Actual Rows"`
		Loops    float64 `json:"Actual Loops"`
		Removed  float64 `json:"Rows Removed by Filter"`
		Plans    []node  `json:"Plans"`
	}
	var plans []struct{ Plan node }
	if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", out, err)
	}
	var sum func(n node) float64
	sum = func(n node) float64 {
		v := 0.0
		if n.Relation == "observations" {
			v = (n.Rows + n.Removed) * n.Loops
		}
		for _, c := range n.Plans {
			v += sum(c)
		}
		return v
	}
	return int64(sum(plans[0].Plan))
}

// waitDead waits until the server's statistics show more than min dead
// rows in table (sessions report theirs as they end) and returns them.
func waitDead(t *testing.T, db *sql.DB, table string, min int64) int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var dead int64
		if err := db.QueryRow(`SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = $1 AND schemaname = current_schema()`, table).Scan(&dead); err != nil {
			t.Fatal(err)
		}
		if dead > min {
			return dead
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d dead rows after the updates, want more than %d", table, dead, min)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
