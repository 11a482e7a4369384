// Package postgres is the store for fleets that outgrow one machine: the
// shared SQL store (package sqlstore) over PostgreSQL through pgx, so that
// several server replicas share one database. Its schema is its own
// numbered migrations (migrations/), applied at open under an advisory lock
// so replicas starting together migrate once.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/evident-dev/evident/server/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the PostgreSQL store.
type Store = sqlstore.Store

// dialect is PostgreSQL's: numbered placeholders, greatest, and hostnames
// case-folded with lower() and ordered bytewise (COLLATE "C"), which the
// hostname indexes are built on.
var dialect = &sqlstore.Dialect{
	Numbered:  true,
	Max2:      "GREATEST",
	Blob:      "BYTEA",
	Snapshot:  sql.LevelRepeatableRead,
	Isolation: sql.LevelReadCommitted,
	CaseFold:  func(expr string) string { return "lower(" + expr + `) COLLATE "C"` },
	Unique:    func(err error) bool { return code(err) == "23505" },
	ForUpdate: " FOR NO KEY UPDATE",
	Maintain:  maintain,
	Contended: func(err error) bool {
		c := code(err)
		return c == "40001" || c == "40P01" // serialization failure, deadlock
	},
}

func code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// migrationLock is the advisory lock key replicas migrate under.
const migrationLock = 0x65766964 // "evid"

// MaxConns is the connection pool's size per server process.
const MaxConns = 16

// Open connects to the database at url (postgres://…) and, unless
// readOnly, migrates it. A read-only open (reports alongside running
// servers) checks that the schema is this binary's and never migrates.
func Open(ctx context.Context, url string, readOnly bool) (*Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if readOnly {
		err = checkVersion(ctx, db)
	} else {
		err = migrate(ctx, db)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	s, err := sqlstore.New(db, nil, dialect, !readOnly)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func loadMigrations() ([]sqlstore.Migration, error) {
	return sqlstore.Migrations(migrations, "migrations")
}

// SchemaVersion is the newest migration this binary knows.
func SchemaVersion() int {
	ms, _ := loadMigrations()
	return sqlstore.Newest(ms)
}

type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// version reads the schema version, 0 for an empty database.
func version(ctx context.Context, q queryer) (int, error) {
	if _, err := q.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS evident_schema (version INTEGER NOT NULL)`); err != nil {
		return 0, fmt.Errorf("postgres: schema version table: %w", err)
	}
	var v int
	err := q.QueryRowContext(ctx, `SELECT version FROM evident_schema`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: read schema version: %w", err)
	}
	return v, nil
}

func checkVersion(ctx context.Context, db *sql.DB) error {
	var v int
	err := db.QueryRowContext(ctx, `SELECT version FROM evident_schema`).Scan(&v)
	if err != nil {
		if code(err) == "42P01" || errors.Is(err, sql.ErrNoRows) { // undefined table
			return errors.New("database is empty: start evident-server once to create it")
		}
		return fmt.Errorf("postgres: read schema version: %w", err)
	}
	switch {
	case v > SchemaVersion():
		return fmt.Errorf("database schema version %d is newer than this binary understands (%d): upgrade evident-server", v, SchemaVersion())
	case v < SchemaVersion():
		return fmt.Errorf("database schema version %d is older than this binary's (%d): start `evident-server run` once to upgrade it", v, SchemaVersion())
	}
	return nil
}

// migrate applies the migrations the database lacks, each in its own
// transaction under an advisory lock: replicas starting together wait for
// the first and then find nothing to do.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := apply(ctx, db, m); err != nil {
			return err
		}
	}
	return nil
}

func apply(ctx context.Context, db *sql.DB, m sqlstore.Migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	v, err := version(ctx, tx)
	if err != nil {
		return err
	}
	if v > SchemaVersion() {
		return fmt.Errorf("database schema version %d is newer than this binary understands (%d): upgrade evident-server", v, SchemaVersion())
	}
	if m.Version <= v {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM evident_schema`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO evident_schema (version) VALUES ($1)`, m.Version); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %s: %w", m.Name, err)
	}
	return nil
}
