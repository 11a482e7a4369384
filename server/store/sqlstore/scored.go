package sqlstore

import (
	"context"
	"database/sql"
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
func scoreStatements() []string {
	return []string{stmtDevice, stmtLatestObs, stmtHistory, stmtCurrentStates, stmtDeviceTPM, stmtLatestAttestation}
}

// txReader is a store.ScoreReader over a write transaction: it sees what
// the transaction wrote.
type txReader struct{ tx Tx }

func (r txReader) Device(ctx context.Context, id string) (store.Device, error) {
	return readDevice(ctx, r.tx, id)
}

func (r txReader) Latest(ctx context.Context, deviceID string) (map[string]store.Observation, error) {
	return readLatest(ctx, r.tx, deviceID)
}

func (r txReader) History(ctx context.Context, deviceID, collector string, limit int) ([]store.Observation, error) {
	return readHistory(ctx, r.tx, deviceID, collector, limit)
}

func (r txReader) CurrentStates(ctx context.Context, deviceID string) ([]store.ControlState, error) {
	return readStates(ctx, r.tx, stmtCurrentStates, deviceID)
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
func (s *Store) IngestScored(ctx context.Context, deviceID string, obs []store.Observation, receivedAt time.Time, score store.ScoreFunc) (int, error, error) {
	var n int
	var scoreErr error
	err := s.write(ctx, func(tx Tx) error {
		var err error
		if n, err = s.ingest(ctx, tx, deviceID, obs, receivedAt); err != nil || n == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT score`); err != nil {
			return err
		}
		if scoreErr = s.scoreIn(ctx, tx, score); scoreErr != nil {
			if s.d.Contended != nil && s.d.Contended(scoreErr) {
				scoreErr = fmt.Errorf("%w: %v", store.ErrConflict, scoreErr)
			}
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT score`); err != nil {
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

func (s *Store) scoreIn(ctx context.Context, tx Tx, score store.ScoreFunc) error {
	p, err := score(ctx, txReader{tx})
	if err != nil {
		return err
	}
	return s.applyPlan(ctx, tx, p)
}
