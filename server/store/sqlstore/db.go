// Package sqlstore is the store.Store both SQL backends share: the queries,
// the transactions and the read model, written once in the SQL SQLite and
// PostgreSQL both speak. A Dialect says the little that differs (the
// placeholder style, case-insensitive ordering, which errors mean a
// conflict); packages sqlite and postgres open the database, migrate it with
// their own numbered migrations and hand it to New.
package sqlstore

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// Dialect is what differs between the SQL backends.
type Dialect struct {
	// Numbered is true when placeholders are $1, $2, … rather than ?.
	Numbered bool
	// Max2 is the name of the two-argument scalar maximum: SQLite's max,
	// PostgreSQL's greatest. Queries are written with GREATEST(.
	Max2 string
	// CaseFold returns expr in the case-insensitive order hostnames sort
	// and are searched by; the same function is applied to both sides of
	// a comparison and to the ORDER BY term.
	CaseFold func(expr string) string
	// Unique reports a unique-constraint violation.
	Unique func(error) bool
	// Contended reports a transaction the database aborted because a
	// concurrent one got in its way (a deadlock or serialization failure):
	// retrying it is safe. SQLite serialises writers and never does.
	Contended func(error) bool
	// GroupCommit commits concurrent evidence and state writes together
	// (see group): for a database with one writer, where each commit is
	// an fsync the next write waits for.
	GroupCommit bool

	cache sync.Map // query as written -> query in this dialect
}

// rewrite returns q in the dialect: placeholders numbered when Numbered,
// GREATEST( renamed. Results are cached; the queries are a fixed set plus
// the device list's filter combinations.
func (d *Dialect) rewrite(q string) string {
	if v, ok := d.cache.Load(q); ok {
		return v.(string)
	}
	out := q
	if d.Max2 != "" && d.Max2 != "GREATEST" {
		out = strings.ReplaceAll(out, "GREATEST(", d.Max2+"(")
	}
	if d.Numbered {
		out = numberPlaceholders(out)
	}
	d.cache.Store(q, out)
	return out
}

// numberPlaceholders turns each ? outside quotes into $1, $2, … and each
// ?N into $N. A query uses one form or the other, never both.
func numberPlaceholders(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			// ?NNN (SQLite's numbered form) keeps its number.
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			b.WriteByte('$')
			if j > i+1 {
				b.WriteString(q[i+1 : j])
				i = j - 1
				continue
			}
			n++
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// DB is a *sql.DB whose queries are written in the shared SQL and rewritten
// for the dialect on the way in.
type DB struct {
	raw *sql.DB
	d   *Dialect
}

// ExecContext runs q.
func (db DB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return db.raw.ExecContext(ctx, db.d.rewrite(q), args...)
}

// QueryContext runs q.
func (db DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return db.raw.QueryContext(ctx, db.d.rewrite(q), args...)
}

// QueryRowContext runs q.
func (db DB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return db.raw.QueryRowContext(ctx, db.d.rewrite(q), args...)
}

// PrepareContext prepares q.
func (db DB) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return db.raw.PrepareContext(ctx, db.d.rewrite(q))
}

// BeginTx starts a transaction.
func (db DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (Tx, error) {
	tx, err := db.raw.BeginTx(ctx, opts)
	return Tx{tx, db.d}, err
}

// Tx is a *sql.Tx speaking the shared SQL.
type Tx struct {
	raw *sql.Tx
	d   *Dialect
}

// ExecContext runs q.
func (tx Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.raw.ExecContext(ctx, tx.d.rewrite(q), args...)
}

// QueryContext runs q.
func (tx Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.raw.QueryContext(ctx, tx.d.rewrite(q), args...)
}

// QueryRowContext runs q.
func (tx Tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.raw.QueryRowContext(ctx, tx.d.rewrite(q), args...)
}

// PrepareContext prepares q for this transaction.
func (tx Tx) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return tx.raw.PrepareContext(ctx, tx.d.rewrite(q))
}

// StmtContext returns st bound to this transaction.
func (tx Tx) StmtContext(ctx context.Context, st *sql.Stmt) *sql.Stmt {
	return tx.raw.StmtContext(ctx, st)
}

// Commit commits.
func (tx Tx) Commit() error { return tx.raw.Commit() }

// Rollback rolls back; after Commit it is a no-op.
func (tx Tx) Rollback() error { return tx.raw.Rollback() }
