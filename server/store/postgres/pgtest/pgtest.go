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
	"errors"
	"fmt"
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, drop, err := Schema(ctx, base, "evident_test_")
	if errors.Is(err, errUnreachable) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: PostgreSQL is required under CI: %v", err)
		}
		t.Skipf("pgtest: %v (set EVIDENT_TEST_POSTGRES)", err)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return u
}

var errUnreachable = errors.New("no PostgreSQL")

// Schema creates an empty schema named prefix plus a random suffix on the
// server at base, and returns a URL whose connections use it (search_path)
// and a function that drops it with everything in it. The load generator's
// scale runs use it too, one fresh schema a run.
func Schema(ctx context.Context, base, prefix string) (string, func() error, error) {
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("%w at %s: %v", errUnreachable, redact(base), err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema := prefix + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create schema at %s: %v", redact(base), err)
	}
	drop := func() error {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			return fmt.Errorf("drop schema %s: %w", schema, err)
		}
		return nil
	}
	u, err := url.Parse(base)
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("%s: not a URL", redact(base))
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
