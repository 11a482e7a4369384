package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// ReplaceInventory implements store.Inventory.
func (s *Store) ReplaceInventory(ctx context.Context, imp store.InventoryImport, rows []store.InventoryRow) (store.InventoryImport, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return imp, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM inventory`); err != nil {
		return imp, err
	}
	imp.Rows = len(rows)
	if err := tx.QueryRowContext(ctx, `INSERT INTO inventory_imports (imported_at, source, filename, row_count, sha256) VALUES (?,?,?,?,?)
		RETURNING id`, nanos(imp.ImportedAt), imp.Source, imp.Filename, imp.Rows, imp.SHA256).Scan(&imp.ID); err != nil {
		return imp, err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO inventory (import_id, line, serial_number, hostname, owner) VALUES (?,?,?,?,?)`)
	if err != nil {
		return imp, err
	}
	defer ins.Close()
	for i, r := range rows {
		if _, err := ins.ExecContext(ctx, imp.ID, r.Line, r.SerialNumber, r.Hostname, r.Owner); err != nil {
			return imp, fmt.Errorf("inventory row %d (line %d): %w", i+1, r.Line, err)
		}
	}
	return imp, tx.Commit()
}

// Inventory implements store.Inventory.
func (s *Store) Inventory(ctx context.Context) (store.InventoryImport, []store.InventoryRow, error) {
	var imp store.InventoryImport
	var at int64
	err := s.rdb.QueryRowContext(ctx, `SELECT id, imported_at, source, filename, row_count, sha256 FROM inventory_imports
		ORDER BY id DESC LIMIT 1`).Scan(&imp.ID, &at, &imp.Source, &imp.Filename, &imp.Rows, &imp.SHA256)
	if errors.Is(err, sql.ErrNoRows) {
		return imp, nil, store.ErrNotFound
	}
	if err != nil {
		return imp, nil, err
	}
	imp.ImportedAt = fromNanos(at)
	rows, err := s.rdb.QueryContext(ctx, `SELECT line, serial_number, hostname, owner FROM inventory WHERE import_id = ? ORDER BY line`, imp.ID)
	if err != nil {
		return imp, nil, err
	}
	defer rows.Close()
	out := []store.InventoryRow{}
	for rows.Next() {
		var r store.InventoryRow
		if err := rows.Scan(&r.Line, &r.SerialNumber, &r.Hostname, &r.Owner); err != nil {
			return imp, nil, err
		}
		out = append(out, r)
	}
	return imp, out, rows.Err()
}

const waiverCols = `id, device_id, control_id, reason, approver, created_by, created_at, starts_at, expires_at, revoked_at`

func scanWaiver(sc interface{ Scan(...any) error }) (store.Waiver, error) {
	var w store.Waiver
	var created, starts, expires int64
	var revoked sql.NullInt64
	err := sc.Scan(&w.ID, &w.DeviceID, &w.ControlID, &w.Reason, &w.Approver, &w.CreatedBy, &created, &starts, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return w, store.ErrNotFound
	}
	w.CreatedAt, w.StartsAt, w.ExpiresAt, w.RevokedAt = fromNanos(created), fromNanos(starts), fromNanos(expires), timePtr(revoked)
	return w, err
}

func (s *Store) waivers(ctx context.Context, query string, args ...any) ([]store.Waiver, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+waiverCols+` FROM waivers `+query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []store.Waiver{}
	for rows.Next() {
		w, err := scanWaiver(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// CreateWaiver implements store.Waivers.
func (s *Store) CreateWaiver(ctx context.Context, w store.Waiver) error {
	if err := w.Validate(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO waivers (`+waiverCols+`) VALUES (?,?,?,?,?,?,?,?,?,?)`,
		w.ID, w.DeviceID, w.ControlID, w.Reason, w.Approver, w.CreatedBy, nanos(w.CreatedAt), nanos(w.StartsAt),
		nanos(w.ExpiresAt), nullNanos(w.RevokedAt))
	return err
}

// Waiver implements store.Waivers.
func (s *Store) Waiver(ctx context.Context, id string) (store.Waiver, error) {
	return scanWaiver(s.rdb.QueryRowContext(ctx, `SELECT `+waiverCols+` FROM waivers WHERE id = ?`, id))
}

// ListWaivers implements store.Waivers.
func (s *Store) ListWaivers(ctx context.Context) ([]store.Waiver, error) {
	return s.waivers(ctx, `ORDER BY created_at, id`)
}

// WaiversOverlapping implements store.Waivers.
func (s *Store) WaiversOverlapping(ctx context.Context, from, to time.Time) ([]store.Waiver, error) {
	return s.waivers(ctx, `WHERE starts_at < ?1 AND expires_at > ?2 AND (revoked_at IS NULL OR revoked_at > ?2)
		AND (revoked_at IS NULL OR revoked_at > starts_at) ORDER BY device_id, starts_at, id`, nanos(to), nanos(from))
}

// RevokeWaiver implements store.Waivers.
func (s *Store) RevokeWaiver(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE waivers SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, nanos(at), id)
	if err != nil {
		return err
	}
	if err := oneRow(res); err != nil {
		return err
	}
	return nil
}
