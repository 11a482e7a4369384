package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/evident-dev/evident/server/store"
)

type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// stmtReadChainHead reads a device's chain head: every report's
// transaction starts its chain from it (prepared ahead: ingestStatements).
const stmtReadChainHead = `SELECT chain_index, chain_hash FROM chain_heads WHERE device_id = ?`

func chainHead(ctx context.Context, q queryer, deviceID string) (store.ChainLink, error) {
	var idx int64
	var h []byte
	err := q.QueryRowContext(ctx, stmtReadChainHead, deviceID).Scan(&idx, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ChainLink{Hash: bytes.Clone(store.GenesisHash)}, nil
	}
	if err != nil {
		return store.ChainLink{}, fmt.Errorf("read chain head of %s: %w", deviceID, err)
	}
	return store.ChainLink{Index: uint64(idx), Hash: h}, nil
}

// ChainHead implements store.Chain.
func (s *Store) ChainHead(ctx context.Context, deviceID string) (store.ChainLink, error) {
	return chainHead(ctx, s.rdb, deviceID)
}

// ObservationsForExport implements store.Chain.
func (s *Store) ObservationsForExport(ctx context.Context, deviceID string, from, to time.Time, fn func(store.ChainedObservation) error) error {
	// One read transaction: the segment bounds and the rows agree even
	// while the server ingests.
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+obsCols+`, pruned_at IS NOT NULL FROM observations
		WHERE device_id = ? AND chain_index IS NULL AND received_at >= ? AND received_at < ? ORDER BY received_at, seq`,
		deviceID, nanos(from), nanos(to))
	if err != nil {
		return err
	}
	err = eachObs(rows, func(o store.Observation, _ sql.NullInt64, _ []byte, pruned bool) error {
		return fn(store.ChainedObservation{DeviceID: deviceID, Observation: o, Pruned: pruned})
	})
	if err != nil {
		return err
	}
	var lo, hi sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MIN(chain_index), MAX(chain_index) FROM observations
		WHERE device_id = ? AND chain_index IS NOT NULL AND received_at >= ? AND received_at < ?`,
		deviceID, nanos(from), nanos(to)).Scan(&lo, &hi); err != nil {
		return err
	}
	if !lo.Valid {
		return nil
	}
	prev := bytes.Clone(store.GenesisHash)
	if lo.Int64 > 1 {
		if err := tx.QueryRowContext(ctx, `SELECT chain_hash FROM observations WHERE device_id = ? AND chain_index = ?`,
			deviceID, lo.Int64-1).Scan(&prev); err != nil {
			return fmt.Errorf("chain of %s: link %d before the export: %w", deviceID, lo.Int64-1, err)
		}
	}
	rows, err = tx.QueryContext(ctx, `SELECT `+obsCols+`, pruned_at IS NOT NULL, chain_index, chain_hash FROM observations
		WHERE device_id = ? AND chain_index BETWEEN ? AND ? ORDER BY chain_index`, deviceID, lo.Int64, hi.Int64)
	if err != nil {
		return err
	}
	return eachObs(rows, func(o store.Observation, idx sql.NullInt64, h []byte, pruned bool) error {
		c := store.ChainedObservation{DeviceID: deviceID, Observation: o, ChainIndex: uint64(idx.Int64), PrevHash: prev, ChainHash: h, Pruned: pruned}
		prev = h
		return fn(c)
	})
}

// eachObs scans rows of obsCols and "pruned", optionally followed by
// chain_index and chain_hash, and closes them.
func eachObs(rows *sql.Rows, fn func(store.Observation, sql.NullInt64, []byte, bool) error) error {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	chained := len(cols) > 12
	for rows.Next() {
		var o store.Observation
		var seq, col, rec int64
		var payload, sources, h []byte
		var idx sql.NullInt64
		var pruned bool
		dst := []any{&seq, &o.Collector, &col, &rec, &o.ClockSkew, &o.Status, &o.Error, &o.ParserVersion, &payload, &sources, &o.DurationMS, &pruned}
		if chained {
			dst = append(dst, &idx, &h)
		}
		if err := rows.Scan(dst...); err != nil {
			return err
		}
		o.Seq, o.CollectedAt, o.ReceivedAt, o.Payload, o.Sources = uint64(seq), fromNanos(col), fromNanos(rec), payload, sources
		if err := fn(o, idx, h, pruned); err != nil {
			return err
		}
	}
	return rows.Err()
}
