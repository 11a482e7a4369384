// Package sqlite is the default store: one embedded SQLite file
// (modernc.org/sqlite, pure Go, no cgo) under the server's data directory.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/evident-dev/evident/server/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQLite store: the shared SQL store over a SQLite database.
type Store = sqlstore.Store

// dialect is SQLite's: ? placeholders, max for the scalar maximum, ASCII
// case folding (NOCASE, which the hostname indexes are built with).
var dialect = &sqlstore.Dialect{
	Max2:     "max",
	CaseFold: func(expr string) string { return expr + " COLLATE NOCASE" },
	Unique:   func(err error) bool { return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") },
	// One connection writes: without grouping, every report waits for the
	// fsync of the one before.
	GroupCommit: true,
	// The driver parses a statement on every call unless it is prepared.
	CacheStatements: true,
}

// writeOptions open the one writing connection. Besides WAL and a commit
// that is durable before a report is acknowledged:
//   - temp_store(MEMORY) keeps savepoint journals in memory: a group commit
//     runs each report in a savepoint, and every page a report changes first
//     was copied to a temporary file (one write syscall per page and
//     header, 8 % of the server's CPU saturated) once the journal passed
//     64 KiB. (A page cache of 32 MiB instead of the default 2 MiB was
//     measured beside it and changed nothing but the server's RSS.)
const writeOptions = "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
	"&_pragma=temp_store(MEMORY)&_txlock=immediate"

// Open opens (creating and migrating) the database at path. readOnly opens
// it for reports alongside a running server; a read-only open never
// migrates.
func Open(path string, readOnly bool) (*Store, error) {
	q := writeOptions
	if readOnly {
		q = "?mode=ro&_pragma=busy_timeout(10000)"
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("database %s does not exist: start evident-server once to create it", path)
		}
	}
	if !readOnly {
		if err := privateFiles(path); err != nil {
			return nil, err
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+q)
	if err != nil {
		return nil, err
	}
	if readOnly {
		db.SetMaxOpenConns(4)
		if err := checkVersion(context.Background(), db); err != nil {
			db.Close()
			return nil, err
		}
		return sqlstore.New(db, nil, dialect, false)
	}
	// One writer: SQLite serialises writes anyway, and a single connection
	// avoids SQLITE_BUSY between our own goroutines.
	db.SetMaxOpenConns(1)
	if err := migrate(context.Background(), db); err != nil {
		db.Close()
		return nil, err
	}
	// Readers beside the writer: in WAL mode they read the last commit
	// without waiting for the writer's transaction, so scoring and pages
	// do not queue behind the next report's commit.
	reads, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, err
	}
	reads.SetMaxOpenConns(4)
	s, err := sqlstore.New(db, reads, dialect, true)
	if err != nil {
		db.Close()
		reads.Close()
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

func checkVersion(ctx context.Context, db *sql.DB) error {
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > SchemaVersion() {
		return fmt.Errorf("database schema version %d is newer than this binary understands (%d): upgrade evident-server", v, SchemaVersion())
	}
	if v == 0 {
		return errors.New("database is empty: start evident-server once to create it")
	}
	if v < SchemaVersion() {
		return fmt.Errorf("database schema version %d is older than this binary's (%d): start `evident-server run` once to upgrade it", v, SchemaVersion())
	}
	return nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > SchemaVersion() {
		return fmt.Errorf("database schema version %d is newer than this binary understands (%d): upgrade evident-server", v, SchemaVersion())
	}
	for _, m := range ms {
		if m.Version <= v {
			continue
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.Version)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// Backup writes a consistent copy of the database at path to out, which
// must not exist: SQLite's VACUUM INTO, a snapshot of the last commit taken
// through a read-only connection, so a running server keeps writing.
func Backup(ctx context.Context, path, out string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", out); err != nil {
		return fmt.Errorf("back up %s: %w", path, err)
	}
	return nil
}

// CheckFile checks a database file a backup holds: SQLite's integrity
// check, and a schema this binary can open (older ones are migrated at the
// next start). It returns the schema version.
func CheckFile(ctx context.Context, path string) (int, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil {
		return 0, fmt.Errorf("integrity check: %w", err)
	}
	if res != "ok" {
		return 0, fmt.Errorf("integrity check: %s", res)
	}
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, err
	}
	if v == 0 || v > SchemaVersion() {
		return v, fmt.Errorf("schema version %d: not a database this binary can open (it knows 1 to %d)", v, SchemaVersion())
	}
	return v, nil
}

// privateFiles makes the database file (created empty when missing) and its
// WAL and shared-memory files readable by the owner only, whatever the
// directory's mode or the umask: evidence is not for other local users.
// SQLite creates the -wal and -shm files with the database file's mode.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("make %s private: %w", p, err)
			}
		}
	}
	return nil
}
