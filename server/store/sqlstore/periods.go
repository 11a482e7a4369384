package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// StatesOverlapping implements store.Periods. The order is that of the
// control_states_range index (device_id, control_id, since_at), so SQLite
// walks the index instead of sorting (EXPLAIN QUERY PLAN: SCAN control_states
// USING INDEX control_states_range), and checks since_at < to on the index
// entry before it reads the row.
func (s *Store) StatesOverlapping(ctx context.Context, from, to time.Time, fn func(store.DeviceState) error) error {
	rows, err := s.rdb.QueryContext(ctx, `SELECT device_id, control_id, status, reason, evidence_seq, since_at, until_at,
		evaluated_at, evaluations FROM control_states
		WHERE since_at < ? AND (until_at IS NULL OR until_at > ?)
		ORDER BY device_id, control_id, since_at`, nanos(to), nanos(from))
	if err != nil {
		return err
	}
	defer rows.Close()
	var st store.DeviceState
	var seq, since, eval int64
	var until sql.NullInt64
	for rows.Next() {
		if err := rows.Scan(&st.DeviceID, &st.ControlID, &st.Status, &st.Reason, &seq, &since, &until, &eval, &st.Evaluations); err != nil {
			return err
		}
		st.EvidenceSeq, st.Since, st.Until, st.EvaluatedAt = uint64(seq), fromNanos(since), timePtr(until), fromNanos(eval)
		if err := fn(st); err != nil {
			return err
		}
	}
	return rows.Err()
}

// DevicesReportedBetween implements store.Periods. last_seen_at is the
// newest receipt of a device, so a device last seen before from is skipped
// without reading its observations; for the others, the first observation
// received in the period ends the search.
func (s *Store) DevicesReportedBetween(ctx context.Context, from, to time.Time) (map[string]bool, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT d.id FROM devices d
		WHERE d.last_seen_at >= ? AND EXISTS (SELECT 1 FROM observations o
			WHERE o.device_id = d.id AND o.received_at >= ? AND o.received_at < ?)`, nanos(from), nanos(from), nanos(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out[id] = true
	}
	return out, rows.Err()
}
