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

	"github.com/evident-dev/evident/server/store"
)

// Dialect is what differs between the SQL backends.
type Dialect struct {
	// Numbered is true when placeholders are $1, $2, … rather than ?.
	Numbered bool
	// Max2 is the name of the two-argument scalar maximum: SQLite's max,
	// PostgreSQL's greatest. Queries are written with GREATEST(.
	Max2 string
	// Blob is the name of the byte-string type: SQLite's BLOB,
	// PostgreSQL's BYTEA. Queries are written with AS BLOB).
	Blob string
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
	// ForUpdate, appended to a SELECT of one device's row, locks the row
	// until the transaction ends (PostgreSQL's " FOR NO KEY UPDATE", the
	// lock an UPDATE of the row takes: foreign-key checks of rows that
	// refer to the device do not wait for it). Every evaluation reads its
	// device's row that way first, so it locks rows in the order a report
	// does (the device, then its intervals): without it a report scored in
	// its own transaction and another evaluation of the same device
	// deadlocked on PostgreSQL. SQLite has one writer and needs none.
	ForUpdate string
	// GroupCommit commits concurrent evidence and state writes together
	// (see group): for a database with one writer, where each commit is
	// an fsync the next write waits for.
	GroupCommit bool
	// CacheStatements keeps every query prepared on the connections it ran
	// on, for a driver that would otherwise parse it on every call (SQLite;
	// pgx caches its own).
	CacheStatements bool
	// Isolation is the isolation level of transactions that write, set
	// explicitly: their statements each read what was committed when they
	// started, after the row lock they wait for (PostgreSQL's read
	// committed, whatever default_transaction_isolation says). SQLite's
	// default serialises writers.
	Isolation sql.IsolationLevel
	// Snapshot is the isolation level that gives a read transaction one
	// snapshot of the database for all its statements: PostgreSQL's
	// repeatable read. SQLite's default already does.
	Snapshot sql.IsolationLevel
	// Maintain, when set, is the dialect's store.Maintainer over the
	// writer's connections (PostgreSQL: statistics and vacuum where
	// autovacuum does not run).
	Maintain func(ctx context.Context, db *sql.DB) (store.Maintenance, error)
	// Trace, when set, sees every statement as sent to the database (tests
	// check the query plans of the hot paths with it). Set it before the
	// store is used.
	Trace func(query string)
	// Unprepared, when set, sees every statement a transaction runs
	// without a prepared statement while CacheStatements is set: SQLite
	// then parses it on every call (tests check that a report's
	// statements are prepared ahead).
	Unprepared func(query string)

	cache sync.Map // query as written -> query in this dialect
}

// rewrite returns q in the dialect: placeholders numbered when Numbered,
// GREATEST( and AS BLOB) renamed. Results are cached; the queries are a fixed set plus
// the device list's filter combinations.
func (d *Dialect) rewrite(q string) string {
	if v, ok := d.cache.Load(q); ok {
		if d.Trace != nil {
			d.Trace(v.(string))
		}
		return v.(string)
	}
	out := q
	if d.Max2 != "" && d.Max2 != "GREATEST" {
		out = strings.ReplaceAll(out, "GREATEST(", d.Max2+"(")
	}
	if d.Blob != "" && d.Blob != "BLOB" {
		out = strings.ReplaceAll(out, " AS BLOB)", " AS "+d.Blob+")")
	}
	if d.Numbered {
		out = numberPlaceholders(out)
	}
	d.cache.Store(q, out)
	if d.Trace != nil {
		d.Trace(out)
	}
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

// maxCachedStatements bounds a statement cache: the queries are a fixed
// set plus the device list's filter combinations.
const maxCachedStatements = 256

// stmtCache holds the prepared statements of one *sql.DB, by query as sent:
// the ones prepared ahead (DB.prepare), and, when lazy, every query the
// first time it runs outside a transaction.
type stmtCache struct {
	mu   sync.Mutex
	m    map[string]*sql.Stmt
	lazy bool
}

// get returns q prepared on db, or nil when it is not (not prepared ahead
// and not lazy, the cache is full, or preparing failed: the caller runs q
// unprepared and gets the error). The lock is not held while preparing,
// which waits for a connection: a caller holding one (iterating rows) must
// never wait on the lock.
func (c *stmtCache) get(ctx context.Context, db *sql.DB, q string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[q]
	skip := ok || !c.lazy || c.m == nil || len(c.m) >= maxCachedStatements
	c.mu.Unlock()
	if skip {
		return st
	}
	st, err := db.PrepareContext(context.WithoutCancel(ctx), q)
	if err != nil {
		return nil
	}
	return c.put(q, st)
}

// put keeps st for q and returns what the cache holds for q (st, or one
// put meanwhile; nil after close).
func (c *stmtCache) put(q string, st *sql.Stmt) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil { // closed meanwhile
		st.Close()
		return nil
	}
	if prev, ok := c.m[q]; ok {
		st.Close()
		return prev
	}
	c.m[q] = st
	return st
}

// cached returns q when it is already prepared, without preparing it.
func (c *stmtCache) cached(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[q]
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

func newDB(raw *sql.DB, d *Dialect) DB {
	return DB{raw: raw, d: d, stmts: &stmtCache{m: map[string]*sql.Stmt{}, lazy: d.CacheStatements}}
}

// prepare prepares qs on the database now, for transactions to use (a
// transaction never prepares on the database itself: a database with one
// connection, SQLite's writer, would wait for the very connection the
// transaction holds).
func (db DB) prepare(ctx context.Context, qs []string) error {
	for _, q := range qs {
		q = db.d.rewrite(q)
		st, err := db.raw.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		db.stmts.put(q, st)
	}
	return nil
}

// DB is a *sql.DB whose queries are written in the shared SQL and rewritten
// for the dialect on the way in.
type DB struct {
	raw   *sql.DB
	d     *Dialect
	stmts *stmtCache
}

// ExecContext runs q.
func (db DB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	q = db.d.rewrite(q)
	if st := db.stmts.get(ctx, db.raw, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return db.raw.ExecContext(ctx, q, args...)
}

// QueryContext runs q.
func (db DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = db.d.rewrite(q)
	if st := db.stmts.get(ctx, db.raw, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.raw.QueryContext(ctx, q, args...)
}

// QueryRowContext runs q.
func (db DB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	q = db.d.rewrite(q)
	if st := db.stmts.get(ctx, db.raw, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.raw.QueryRowContext(ctx, q, args...)
}

// PrepareContext prepares q.
func (db DB) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return db.raw.PrepareContext(ctx, db.d.rewrite(q))
}

// BeginTx starts a transaction: without opts, at the dialect's Isolation.
func (db DB) BeginTx(ctx context.Context, opts *sql.TxOptions) (Tx, error) {
	if opts == nil && db.d.Isolation != sql.LevelDefault {
		opts = &sql.TxOptions{Isolation: db.d.Isolation}
	}
	tx, err := db.raw.BeginTx(ctx, opts)
	return Tx{tx, db}, err
}

// Tx is a *sql.Tx speaking the shared SQL.
type Tx struct {
	raw *sql.Tx
	db  DB
}

// stmt returns q prepared for this transaction when it was prepared on the
// database before (DB.prepare, or a lazy cache), or nil.
func (tx Tx) stmt(ctx context.Context, q string) *sql.Stmt {
	if st := tx.db.stmts.cached(q); st != nil {
		return tx.raw.StmtContext(ctx, st)
	}
	if tx.db.d.Unprepared != nil && tx.db.d.CacheStatements {
		tx.db.d.Unprepared(q)
	}
	return nil
}

// ExecContext runs q.
func (tx Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	q = tx.db.d.rewrite(q)
	if st := tx.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return tx.raw.ExecContext(ctx, q, args...)
}

// QueryContext runs q.
func (tx Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	q = tx.db.d.rewrite(q)
	if st := tx.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return tx.raw.QueryContext(ctx, q, args...)
}

// QueryRowContext runs q.
func (tx Tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	q = tx.db.d.rewrite(q)
	if st := tx.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return tx.raw.QueryRowContext(ctx, q, args...)
}

// PrepareContext prepares q for this transaction.
func (tx Tx) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return tx.raw.PrepareContext(ctx, tx.db.d.rewrite(q))
}

// StmtContext returns st bound to this transaction.
func (tx Tx) StmtContext(ctx context.Context, st *sql.Stmt) *sql.Stmt {
	return tx.raw.StmtContext(ctx, st)
}

// Commit commits.
func (tx Tx) Commit() error { return tx.raw.Commit() }

// Rollback rolls back; after Commit it is a no-op.
func (tx Tx) Rollback() error { return tx.raw.Rollback() }
