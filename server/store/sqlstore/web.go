package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/store"
)

const tokenCols = `id, hash, role, label, created_at, expires_at, revoked_at`

func scanToken(sc interface{ Scan(...any) error }) (store.Token, error) {
	var t store.Token
	var created int64
	var exp, rev sql.NullInt64
	err := sc.Scan(&t.ID, &t.Hash, &t.Role, &t.Label, &created, &exp, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return t, store.ErrNotFound
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromNanos(created), timePtr(exp), timePtr(rev)
	return t, err
}

// CreateToken implements store.Web.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	if t.Role != store.RoleAdmin && t.Role != store.RoleAuditor {
		return fmt.Errorf("unknown role %q", t.Role)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO tokens (`+tokenCols+`) VALUES (?,?,?,?,?,?,?)`,
		t.ID, t.Hash, t.Role, t.Label, nanos(t.CreatedAt), nullNanos(t.ExpiresAt), nullNanos(t.RevokedAt))
	return err
}

// TokenByHash implements store.Web.
func (s *Store) TokenByHash(ctx context.Context, hash []byte, now time.Time) (store.Token, error) {
	t, err := scanToken(s.rdb.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = ?`, hash))
	if err != nil {
		return t, err
	}
	if t.RevokedAt != nil {
		return t, store.ErrNotFound
	}
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return t, store.ErrExpired
	}
	return t, nil
}

// Tokens implements store.Web.
func (s *Store) Tokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+tokenCols+` FROM tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken implements store.Web.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, nanos(at), id)
	if err != nil {
		return err
	}
	if err := oneRow(res); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE token_id = ?`, id); err != nil {
		return err
	}
	return tx.Commit()
}

// CreateSession implements store.Web.
func (s *Store) CreateSession(ctx context.Context, se store.Session) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM web_sessions WHERE expires_at <= ?`, nanos(se.CreatedAt)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO web_sessions (hash, token_id, created_at, expires_at) VALUES (?,?,?,?)`,
		se.Hash, se.TokenID, nanos(se.CreatedAt), nanos(se.ExpiresAt)); err != nil {
		return err
	}
	return tx.Commit()
}

// Session implements store.Web.
func (s *Store) Session(ctx context.Context, hash []byte, now time.Time) (store.Session, error) {
	se := store.Session{Hash: hash}
	var created, exp int64
	var tokExp, tokRev sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT s.token_id, s.created_at, s.expires_at, t.role, t.label, t.expires_at, t.revoked_at
		FROM web_sessions s JOIN tokens t ON t.id = s.token_id WHERE s.hash = ?`, hash).
		Scan(&se.TokenID, &created, &exp, &se.Role, &se.Label, &tokExp, &tokRev)
	if errors.Is(err, sql.ErrNoRows) {
		return se, store.ErrNotFound
	}
	if err != nil {
		return se, err
	}
	se.CreatedAt, se.ExpiresAt = fromNanos(created), fromNanos(exp)
	n := nanos(now)
	if exp <= n || tokRev.Valid || (tokExp.Valid && tokExp.Int64 <= n) {
		return se, store.ErrNotFound
	}
	return se, nil
}

// DeleteSession implements store.Web.
func (s *Store) DeleteSession(ctx context.Context, hash []byte) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM web_sessions WHERE hash = ?`, hash)
	return err
}

// AddAudit implements store.Web.
func (s *Store) AddAudit(ctx context.Context, e store.AuditEntry) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO audit_log (at, actor, action, detail) VALUES (?,?,?,?) RETURNING id`,
		nanos(e.Time), e.Actor, e.Action, e.Detail).Scan(&id)
	return id, err
}

// AuditQuery implements store.Web.
func (s *Store) AuditQuery(ctx context.Context, q store.AuditQuery) ([]store.AuditEntry, error) {
	if q.Limit <= 0 || q.Limit > store.MaxAuditPage {
		q.Limit = store.MaxAuditPage
	}
	where := []string{"1=1"}
	var args []any
	if q.Action != "" {
		where = append(where, `(action = ? OR action LIKE ? ESCAPE '\')`)
		args = append(args, q.Action, likeEscape(q.Action)+".%")
	}
	if q.Actor != "" {
		// lower on both sides: the same case folding on SQLite (ASCII)
		// and on PostgreSQL (Unicode).
		where = append(where, `lower(actor) LIKE lower(?) ESCAPE '\'`)
		args = append(args, "%"+likeEscape(q.Actor)+"%")
	}
	if !q.From.IsZero() {
		where = append(where, `at >= ?`)
		args = append(args, nanos(q.From))
	}
	if !q.To.IsZero() {
		where = append(where, `at < ?`)
		args = append(args, nanos(q.To))
	}
	if q.BeforeID > 0 {
		where = append(where, `id < ?`)
		args = append(args, q.BeforeID)
	}
	return s.queryAudit(ctx, strings.Join(where, " AND "), args, q.Limit)
}

// queryAudit reads up to limit audit entries matching where, newest first.
func (s *Store) queryAudit(ctx context.Context, where string, args []any, limit int) ([]store.AuditEntry, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, at, actor, action, detail FROM audit_log WHERE `+where+` ORDER BY id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = fromNanos(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// likeEscape makes s match itself in a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// AuditLog implements store.Web.
func (s *Store) AuditLog(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	return s.queryAudit(ctx, "1=1", nil, limit)
}
