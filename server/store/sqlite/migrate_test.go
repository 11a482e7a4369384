package sqlite_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// stmt is one SQL statement of a fixture.
type stmt struct {
	q    string
	args []any
}

// openSchema5 writes a database as the server wrote it before the read
// model (migrations 1-5, then stmts), and opens it with this binary, which
// migrates it.
func openSchema5(t *testing.T, stmts ...stmt) *sqlite.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "evident.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/000[1-5]_*.sql")
	if err != nil || len(files) != 5 {
		t.Fatalf("migrations 1-5: %v %v", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	for _, st := range append(stmts, stmt{`PRAGMA user_version = 5`, nil}) {
		if _, err := db.Exec(st.q, st.args...); err != nil {
			t.Fatalf("%s: %v", st.q, err)
		}
	}
	db.Close()
	st, err := sqlite.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestPostureMigration: a database written before the read model (schema 5)
// gets its aggregates and devices' posture from the intervals it holds when
// the server upgrades it, so the first page after an upgrade is right.
func TestPostureMigration(t *testing.T) {
	ns := t0.UnixNano()
	st := openSchema5(t,
		stmt{`INSERT INTO devices (id, hostname, goos, enrolled_at) VALUES ('good', 'Alpha', 'linux', ?1), ('bad', 'beta', 'darwin', ?1), ('new', 'gamma', 'linux', ?1)`, []any{ns}},
		// good: pass and n/a open, an older fail closed; bad: one fail open;
		// new: nothing recorded.
		stmt{`INSERT INTO control_states (device_id, control_id, status, since_at, until_at, evaluated_at) VALUES
			('good', 'c1', 'fail', ?1, ?1 + 10, ?1), ('good', 'c1', 'pass', ?1 + 10, NULL, ?1),
			('good', 'c2', 'not_applicable', ?1, NULL, ?1),
			('bad', 'c1', 'pass', ?1, NULL, ?1), ('bad', 'c2', 'fail', ?1, NULL, ?1)`, []any{ns}},
	)
	fc, err := st.FleetCounts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := store.FleetCounts{Devices: 3, Compliant: 1, Controls: map[string]map[string]int{
		"c1": {store.Pass: 2}, "c2": {store.NotApplicable: 1, store.Fail: 1}}}
	if !reflect.DeepEqual(fc, want) {
		t.Errorf("FleetCounts after the migration = %+v, want %+v", fc, want)
	}
	yes, no := true, false
	for _, tc := range []struct {
		q    store.DeviceQuery
		want []string
	}{
		{store.DeviceQuery{Compliant: &yes}, []string{"good"}},
		{store.DeviceQuery{Compliant: &no}, []string{"bad", "new"}},
		{store.DeviceQuery{Control: "c2", Status: store.Fail}, []string{"bad"}},
		{store.DeviceQuery{Control: "c1", Status: store.NoData}, []string{"new"}},
		{store.DeviceQuery{Hostname: "AL"}, []string{"good"}}, // prefix, case-insensitive
		{store.DeviceQuery{}, []string{"good", "bad", "new"}}, // Alpha, beta, gamma
	} {
		page, err := st.DevicePage(t.Context(), tc.q)
		if err != nil {
			t.Fatalf("DevicePage(%+v): %v", tc.q, err)
		}
		var got []string
		for _, d := range page.Devices {
			got = append(got, d.ID)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DevicePage(%+v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

// TestPostureMigrationChart: the upgrade rebuilds the last 30 days of daily
// aggregates from the intervals, so the fleet page's chart is not blank
// after it. (The migration runs on the real clock: so does this fixture.)
func TestPostureMigrationChart(t *testing.T) {
	// The migration reads the real clock: a run that crosses midnight UTC
	// between the fixture and the upgrade is run again, on the new day.
	for attempt := 0; ; attempt++ {
		today := time.Now().UTC().Truncate(24 * time.Hour)
		days := migratedChart(t, today)
		if !time.Now().UTC().Truncate(24*time.Hour).Equal(today) && attempt == 0 {
			continue
		}
		type fig struct{ devices, compliant, pass, fail int }
		want := map[int]fig{-25: {0, 0, 0, 0}, -15: {1, 1, 1, 0}, -8: {2, 2, 2, 0}, -3: {2, 1, 1, 1}, 0: {2, 1, 1, 1}}
		for off, w := range want {
			d := days[29+off]
			got := fig{d.Devices, d.Compliant, d.Controls["c1"][store.Pass], d.Controls["c1"][store.Fail]}
			if got != w || !d.Day.Equal(today.AddDate(0, 0, off)) {
				t.Errorf("day %+d (%s): %+v, want %+v", off, d.Day.Format(time.DateOnly), got, w)
			}
		}
		return
	}
}

// migratedChart upgrades a schema-5 fleet recorded relative to today and
// returns the last 30 days of daily figures. a: enrolled 20 days ago,
// pass, fails from 5 days ago; b: enrolled 10 days ago, pass throughout.
func migratedChart(t *testing.T, today time.Time) []store.DayCounts {
	at := func(days int) int64 { return today.AddDate(0, 0, days).Add(12 * time.Hour).UnixNano() }
	st := openSchema5(t,
		stmt{`INSERT INTO devices (id, hostname, enrolled_at) VALUES ('a', 'a', ?), ('b', 'b', ?)`, []any{at(-20), at(-10)}},
		stmt{`INSERT INTO control_states (device_id, control_id, status, since_at, until_at, evaluated_at) VALUES
			('a', 'c1', 'pass', ?1, ?2, ?1), ('a', 'c1', 'fail', ?2, NULL, ?2), ('b', 'c1', 'pass', ?3, NULL, ?3)`,
			[]any{at(-20), at(-5), at(-10)}},
	)
	days, err := st.DailyCounts(t.Context(), today.AddDate(0, 0, -29), today)
	if err != nil {
		t.Fatal(err)
	}
	return days
}
