package sqlite_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestPostureMigration: a database written before the read model (schema 5)
// gets its aggregates and devices' posture from the intervals it holds when
// the server upgrades it, so the first page after an upgrade is right.
func TestPostureMigration(t *testing.T) {
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
	ns := t0.UnixNano()
	for _, st := range []struct {
		q    string
		args []any
	}{
		{`INSERT INTO devices (id, hostname, goos, enrolled_at) VALUES ('good', 'Alpha', 'linux', ?1), ('bad', 'beta', 'darwin', ?1), ('new', 'gamma', 'linux', ?1)`, []any{ns}},
		// good: pass and n/a open, an older fail closed; bad: one fail open;
		// new: nothing recorded.
		{`INSERT INTO control_states (device_id, control_id, status, since_at, until_at, evaluated_at) VALUES
			('good', 'c1', 'fail', ?1, ?1 + 10, ?1), ('good', 'c1', 'pass', ?1 + 10, NULL, ?1),
			('good', 'c2', 'not_applicable', ?1, NULL, ?1),
			('bad', 'c1', 'pass', ?1, NULL, ?1), ('bad', 'c2', 'fail', ?1, NULL, ?1)`, []any{ns}},
		{`PRAGMA user_version = 5`, nil},
	} {
		if _, err := db.Exec(st.q, st.args...); err != nil {
			t.Fatalf("%s: %v", st.q, err)
		}
	}
	db.Close()

	st, err := sqlite.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
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
