package sqlstore

import (
	"context"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// pruneBatch bounds the observations one device's pruning transaction
// looks at; a device with more is continued at the next run.
const pruneBatch = 5000

// Prune implements store.Store. Each device is pruned in a transaction of
// its own, from where the previous run stopped (devices.pruned_seq) up to
// its first observation received at or after before.
func (s *Store) Prune(ctx context.Context, before, now time.Time) (store.PruneResult, error) {
	var res store.PruneResult
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, pruned_seq FROM devices ORDER BY id`)
	if err != nil {
		return res, err
	}
	type mark struct {
		id   string
		from int64
	}
	var devs []mark
	for rows.Next() {
		var m mark
		if err := rows.Scan(&m.id, &m.from); err != nil {
			rows.Close()
			return res, err
		}
		devs = append(devs, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, err
	}
	for _, d := range devs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := s.write(ctx, func(tx Tx) error {
			// Attestations: the raw message of all but the newest.
			r, err := tx.ExecContext(ctx, `UPDATE attestations SET raw = NULL, raw_pruned_at = ?
				WHERE device_id = ? AND received_at < ? AND raw_pruned_at IS NULL
				AND id < (SELECT max(a.id) FROM attestations a WHERE a.device_id = ?)`, nanos(now), d.id, nanos(before), d.id)
			if err != nil {
				return err
			}
			n, err := r.RowsAffected()
			if err != nil {
				return err
			}
			res.Attestations += int(n)
			// The contiguous run of seqs received before the cut-off (a
			// resend can store seqs slightly out of order: stop at the
			// first newer one, it is pruned at a later run).
			rows, err := tx.QueryContext(ctx, `SELECT seq, received_at FROM observations WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
				d.id, d.from, pruneBatch)
			if err != nil {
				return err
			}
			upto := d.from
			for rows.Next() {
				var seq, rec int64
				if err := rows.Scan(&seq, &rec); err != nil {
					rows.Close()
					return err
				}
				if rec >= nanos(before) {
					break
				}
				upto = seq
			}
			rows.Close()
			if err := rows.Err(); err != nil || upto == d.from {
				return err
			}
			r, err = tx.ExecContext(ctx, `UPDATE observations SET payload = NULL, sources = NULL, error = '', pruned_at = ?
				WHERE device_id = ? AND seq > ? AND seq <= ? AND pruned_at IS NULL
				AND seq NOT IN (SELECT l.seq FROM latest_observations l WHERE l.device_id = ?)`, nanos(now), d.id, d.from, upto, d.id)
			if err != nil {
				return err
			}
			if n, err = r.RowsAffected(); err != nil {
				return err
			}
			res.Observations += int(n)
			_, err = tx.ExecContext(ctx, `UPDATE devices SET pruned_seq = ? WHERE id = ?`, upto, d.id)
			return err
		})
		if err != nil {
			return res, err
		}
	}
	// Alerts done (delivered, or given up) before the cut-off: the audit
	// log keeps each delivery.
	r, err := s.db.ExecContext(ctx, `DELETE FROM alerts WHERE done_at < ?`, nanos(before))
	if err != nil {
		return res, err
	}
	n, err := r.RowsAffected()
	res.Alerts = int(n)
	return res, err
}
