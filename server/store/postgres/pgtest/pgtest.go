// Package pgtest gives tests a PostgreSQL database of their own: a fresh
// schema in the test server (EVIDENT_TEST_POSTGRES, default the local
// server's database "test" with trust auth), dropped when the test ends.
// Without a reachable server the test skips, except under CI (CI=true),
// where it fails: PostgreSQL is part of the test environment there.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// DefaultURL is the test server when EVIDENT_TEST_POSTGRES is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ServerURL is the test server's URL.
func ServerURL() string {
	if u := os.Getenv("EVIDENT_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultURL
}

// URL creates an empty schema for t and returns a URL whose connections use
// it (search_path). The schema is dropped with everything in it when t ends.
func URL(t testing.TB) string {
	t.Helper()
	base := ServerURL()
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: PostgreSQL at %s is required under CI: %v", redact(base), err)
		}
		t.Skipf("pgtest: no PostgreSQL at %s (set EVIDENT_TEST_POSTGRES): %v", redact(base), err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := "evident_test_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		db.Close()
		t.Fatalf("pgtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
