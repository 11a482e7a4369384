package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// RequestCollection implements store.Commands.
func (s *Store) RequestCollection(ctx context.Context, r store.CollectRequest) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO collect_requests (device_id, collectors, requested_at, requested_by) VALUES (?,?,?,?) RETURNING id`,
		r.DeviceID, strings.Join(r.Collectors, ","), nanos(r.RequestedAt), r.RequestedBy).Scan(&id)
	return id, err
}

const collectCols = `id, device_id, collectors, requested_at, requested_by, sent_at`

func scanCollect(sc interface{ Scan(...any) error }) (store.CollectRequest, error) {
	var r store.CollectRequest
	var cols string
	var at int64
	var sent sql.NullInt64
	err := sc.Scan(&r.ID, &r.DeviceID, &cols, &at, &r.RequestedBy, &sent)
	if cols != "" {
		r.Collectors = strings.Split(cols, ",")
	}
	r.RequestedAt, r.SentAt = fromNanos(at), timePtr(sent)
	return r, err
}

// PendingCollections implements store.Commands.
func (s *Store) PendingCollections(ctx context.Context, since time.Time) ([]store.CollectRequest, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+collectCols+` FROM collect_requests WHERE sent_at IS NULL AND requested_at >= ?
		ORDER BY requested_at, id`, nanos(since))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.CollectRequest
	for rows.Next() {
		r, err := scanCollect(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// MarkCollectionSent implements store.Commands.
func (s *Store) MarkCollectionSent(ctx context.Context, id int64, at time.Time) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE collect_requests SET sent_at = ? WHERE id = ? AND sent_at IS NULL`, nanos(at), id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Collection implements store.Commands.
func (s *Store) Collection(ctx context.Context, id int64) (store.CollectRequest, error) {
	r, err := scanCollect(s.rdb.QueryRowContext(ctx, `SELECT `+collectCols+` FROM collect_requests WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}
