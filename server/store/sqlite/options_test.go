package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"
)

// TestWriteOptions reads back what the writing connection runs with: SQLite
// ignores a pragma it does not know, so a misspelt option would otherwise
// go unnoticed (and a weaker synchronous would acknowledge reports before
// they are durable).
func TestWriteOptions(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "evident.db")+writeOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL: the WAL is synced at every commit
		{"foreign_keys", "1"},
		{"temp_store", "2"}, // MEMORY
		{"busy_timeout", "10000"},
	} {
		var got string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
}
