package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// EnableAlerts implements store.Alerts.
func (s *Store) EnableAlerts() { s.alerting.Store(true) }

const stmtAddAlert = `INSERT INTO alerts (created_at, kind, subject, control_id, status, previous, reason, next_at)
	VALUES (?,?,?,?,?,?,?,?)`

// maxAlertReason bounds the reason an alert carries (a reason names
// packages, rules, paths: it can be long).
const maxAlertReason = 2048

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// alertsOf writes, in tx, an alert for each control p opens with status
// fail or unknown: a transition (Close then Open of the same control) or
// the device's first interval of it.
func (s *Store) alertsOf(ctx context.Context, tx Tx, p store.StatePlan) error {
	var prev map[string]string
	for _, o := range p.Open {
		if o.Status != store.Fail && o.Status != store.Unknown {
			continue
		}
		if prev == nil {
			prev = make(map[string]string, len(p.Close))
			for _, c := range p.Close {
				prev[c.ControlID] = c.Status
			}
		}
		at := nanos(p.At)
		if _, err := tx.ExecContext(ctx, stmtAddAlert, at, store.AlertControl, p.DeviceID, o.ControlID, o.Status,
			prev[o.ControlID], clip(o.Reason, maxAlertReason), at); err != nil {
			return err
		}
	}
	return nil
}

const alertCols = `id, created_at, kind, subject, control_id, status, previous, reason, delivered_to, attempts, next_at, done_at, last_error`

func scanAlert(sc interface{ Scan(...any) error }) (store.Alert, error) {
	var a store.Alert
	var created, next int64
	var done sql.NullInt64
	var to string
	err := sc.Scan(&a.ID, &created, &a.Kind, &a.Subject, &a.ControlID, &a.Status, &a.Previous, &a.Reason, &to, &a.Attempts, &next, &done, &a.LastError)
	if to != "" {
		a.DeliveredTo = strings.Split(to, ",")
	}
	a.CreatedAt, a.NextAt, a.DoneAt = fromNanos(created), fromNanos(next), timePtr(done)
	return a, err
}

// PendingAlerts implements store.Alerts.
func (s *Store) PendingAlerts(ctx context.Context, now time.Time, limit int) ([]store.Alert, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+alertCols+` FROM alerts WHERE done_at IS NULL AND next_at <= ?
		ORDER BY next_at, id LIMIT ?`, nanos(now), max(limit, 1))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ClaimAlert implements store.Alerts.
func (s *Store) ClaimAlert(ctx context.Context, a store.Alert, until time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE alerts SET next_at = ? WHERE id = ? AND done_at IS NULL AND next_at = ?`,
		nanos(until), a.ID, nanos(a.NextAt))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// AlertAttempted implements store.Alerts.
func (s *Store) AlertAttempted(ctx context.Context, a store.Alert) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE alerts SET delivered_to = ?, attempts = ?, next_at = ?, done_at = ?, last_error = ?
		WHERE id = ? AND done_at IS NULL AND attempts = ?`,
		strings.Join(a.DeliveredTo, ","), a.Attempts, nanos(a.NextAt), nullNanos(a.DoneAt), clip(a.LastError, maxAlertReason), a.ID, a.Attempts-1)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// GroupCompliance implements store.Alerts.
func (s *Store) GroupCompliance(ctx context.Context, group string) (int, int, error) {
	var n, ok sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT count(*), sum(CASE WHEN d.compliant THEN 1 ELSE 0 END)
		FROM device_groups g JOIN devices d ON d.id = g.device_id WHERE g.grp = ? AND d.revoked_at IS NULL`, group).Scan(&n, &ok)
	return int(n.Int64), int(ok.Int64), err
}

// MarkGroup implements store.Alerts.
func (s *Store) MarkGroup(ctx context.Context, group string, below bool, a store.Alert) (bool, error) {
	changed := false
	err := s.write(ctx, func(tx Tx) error {
		changed = false
		var was bool
		err := tx.QueryRowContext(ctx, `SELECT below FROM alert_marks WHERE grp = ?`, group).Scan(&was)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, `INSERT INTO alert_marks (grp, below) VALUES (?, ?)`, group, below); err != nil {
				return err
			}
			if !below {
				return nil
			}
		case err != nil:
			return err
		case was == below:
			return nil
		default:
			if _, err := tx.ExecContext(ctx, `UPDATE alert_marks SET below = ? WHERE grp = ?`, below, group); err != nil {
				return err
			}
		}
		changed = true
		at := nanos(a.CreatedAt)
		_, err = tx.ExecContext(ctx, stmtAddAlert, at, store.AlertGroup, group, "", a.Status, a.Previous, clip(a.Reason, maxAlertReason), at)
		return err
	})
	return changed, err
}
