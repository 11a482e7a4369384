package postgres_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"

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
