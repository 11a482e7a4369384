package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/evident-dev/evident/server/store"
)

var _ store.ScoredIngester = (*Store)(nil)

// reader runs queries: the read pool, or a write transaction.
type reader interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// scoreStatements are what scoring reads, prepared on the writer for the
// transactions of IngestScored.
func (s *Store) scoreStatements() []string {
	return []string{stmtDeviceLocked + s.d.ForUpdate, stmtCompliantNow + s.d.ForUpdate, stmtDevice, stmtLatestObs, stmtHistory,
		stmtCurrentStatesLazy, stmtStateEvidence, stmtDeviceTPM, stmtLatestAttestation}
}

// stmtDeviceLocked reads a device's row and whether it is compliant, the
// first statement of a report's transaction (with Dialect.ForUpdate).
const stmtDeviceLocked = `SELECT ` + deviceCols + `, compliant FROM devices WHERE id = ?`

// txReader is a store.ScoreReader over a write transaction: it sees what
// the transaction wrote. dev, when set, is the device as the transaction
// has it (read at its start, last contact moved to the report).
type txReader struct {
	tx  Tx
	dev *store.Device
}

func (r txReader) Device(ctx context.Context, id string) (store.Device, error) {
	if r.dev != nil && r.dev.ID == id {
		return *r.dev, nil
	}
	return readDevice(ctx, r.tx, id)
}

func (r txReader) Latest(ctx context.Context, deviceID string) (map[string]store.Observation, error) {
	return readLatest(ctx, r.tx, deviceID)
}

func (r txReader) History(ctx context.Context, deviceID, collector string, limit int) ([]store.Observation, error) {
	return readHistory(ctx, r.tx, deviceID, collector, limit)
}

// CurrentStates reads the open intervals with their evidence left to
// ControlState.LoadEvidence, which reads it in this transaction.
func (r txReader) CurrentStates(ctx context.Context, deviceID string) ([]store.ControlState, error) {
	states, err := readStates(ctx, r.tx, false, stmtCurrentStatesLazy, deviceID)
	for i := range states {
		id := states[i].ID
		states[i].LoadEvidence = func() (json.RawMessage, error) {
			var ev []byte
			err := r.tx.QueryRowContext(ctx, stmtStateEvidence, id).Scan(&ev)
			return ev, err
		}
	}
	return states, err
}

func (r txReader) DeviceTPM(ctx context.Context, deviceID string) (store.DeviceTPM, error) {
	return readDeviceTPM(ctx, r.tx, deviceID)
}

func (r txReader) LatestAttestation(ctx context.Context, deviceID string, verifiedOnly bool) (store.Attestation, error) {
	return readLatestAttestation(ctx, r.tx, deviceID, verifiedOnly)
}

// IngestScored implements store.ScoredIngester. The evaluation runs in a
// savepoint of the report's transaction: when it fails or conflicts, only
// its own writes are undone and the evidence commits. On SQLite the
// writer's page cache serves its reads (a reader connection reloads pages
// after every commit), and the report costs one commit instead of two.
//
// The device's row is read (and, on PostgreSQL, locked) first and written
// once, at the end: last contact, rescore time and compliance in one
// update, where a report wrote it twice (each a new version of the row and,
// its last contact and rescore time being indexed, of every index on it).
func (s *Store) IngestScored(ctx context.Context, deviceID string, obs []store.Observation, receivedAt time.Time, score store.ScoreFunc) (int, error, error) {
	var n int
	var scoreErr error
	err := s.write(ctx, func(tx Tx) error {
		var compliant bool
		dev, err := scanDevice(tx.QueryRowContext(ctx, stmtDeviceLocked+s.d.ForUpdate, deviceID), &compliant)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if n, err = s.ingest(ctx, tx, deviceID, obs, receivedAt, false); err != nil {
			return err
		}
		touch := func() error {
			_, err := tx.ExecContext(ctx, stmtLastSeen, nanos(receivedAt), deviceID)
			return err
		}
		if n == 0 {
			return touch()
		}
		seen := fromNanos(nanos(receivedAt))
		if dev.LastSeenAt == nil || dev.LastSeenAt.Before(seen) {
			dev.LastSeenAt = &seen
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT score`); err != nil {
			return err
		}
		if scoreErr = s.scoreIn(ctx, tx, &dev, compliant, score); scoreErr != nil {
			if s.d.Contended != nil && s.d.Contended(scoreErr) {
				scoreErr = fmt.Errorf("%w: %v", store.ErrConflict, scoreErr)
			}
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT score`); err != nil {
				return err
			}
			if err := touch(); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `RELEASE SAVEPOINT score`)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return n, scoreErr, nil
}

func (s *Store) scoreIn(ctx context.Context, tx Tx, dev *store.Device, compliant bool, score store.ScoreFunc) error {
	p, err := score(ctx, txReader{tx: tx, dev: dev})
	if err != nil {
		return err
	}
	if p.DeviceID != dev.ID {
		return fmt.Errorf("a plan for device %q in the report of %q", p.DeviceID, dev.ID)
	}
	return s.applyPlan(ctx, tx, p, compliant, dev.LastSeenAt)
}
