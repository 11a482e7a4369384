package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// Store is the store.Store of a SQL database.
type Store struct {
	db DB
	// rdb reads: a pool of its own for SQLite (WAL readers do not wait for
	// the one writer), db itself otherwise.
	rdb DB
	d   *Dialect

	// group commits writes together (Dialect.GroupCommit, writable only).
	group *group

	// alerting: transitions to fail or unknown write alerts (EnableAlerts).
	alerting atomic.Bool
}

var _ store.Store = (*Store)(nil)

// New returns the store over db, which the caller has opened and migrated.
// reads, when not nil, is a pool the reads go to (SQLite's readers beside
// its one writer). A writable store prepares its hot write statements;
// Close closes db and reads.
func New(db, reads *sql.DB, d *Dialect, writable bool) (*Store, error) {
	if reads == nil {
		reads = db
	}
	s := &Store{db: newDB(db, d), d: d}
	s.rdb = s.db
	if reads != db {
		s.rdb = newDB(reads, d)
	}
	if writable {
		if err := s.db.prepare(context.Background(), s.hotStatements()); err != nil {
			return nil, fmt.Errorf("prepare statements: %w", err)
		}
		if d.GroupCommit {
			s.startGroup()
		}
	}
	return s, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.stopGroup()
	s.db.stmts.close()
	if s.rdb.raw != s.db.raw {
		s.rdb.stmts.close()
		s.rdb.raw.Close()
	}
	return s.db.raw.Close()
}

func nanos(t time.Time) int64 { return t.UTC().UnixNano() }

// oneRow is store.ErrNotFound when an update changed no row.
func oneRow(res sql.Result) error {
	n, err := res.RowsAffected()
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullNanos(t *time.Time) any {
	if t == nil {
		return nil
	}
	return nanos(*t)
}

func timePtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

// CreateEnrollSecret implements store.Enrollment.
func (s *Store) CreateEnrollSecret(ctx context.Context, e store.EnrollSecret) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO enroll_secrets (id, hash, label, created_at, expires_at, single_use, uses, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.ID, e.Hash, e.Label, nanos(e.CreatedAt), nullNanos(e.ExpiresAt), e.SingleUse, e.Uses, nullNanos(e.RevokedAt))
	return err
}

// EnrollSecrets implements store.Enrollment.
func (s *Store) EnrollSecrets(ctx context.Context) ([]store.EnrollSecret, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, hash, label, created_at, expires_at, single_use,
		uses + COALESCE((SELECT sum(u.uses) FROM enroll_secret_uses u WHERE u.secret_id = s.id), 0), revoked_at
		FROM enroll_secrets s ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.EnrollSecret
	for rows.Next() {
		var e store.EnrollSecret
		var exp, rev sql.NullInt64
		var created int64
		if err := rows.Scan(&e.ID, &e.Hash, &e.Label, &created, &exp, &e.SingleUse, &e.Uses, &rev); err != nil {
			return nil, err
		}
		e.CreatedAt, e.ExpiresAt, e.RevokedAt = fromNanos(created), timePtr(exp), timePtr(rev)
		out = append(out, e)
	}
	return out, rows.Err()
}

// RevokeEnrollSecret implements store.Enrollment.
func (s *Store) RevokeEnrollSecret(ctx context.Context, id string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE enroll_secrets SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, nanos(at), id)
	if err != nil {
		return err
	}
	if err := oneRow(res); err != nil {
		return err
	}
	return nil
}

// UseEnrollSecret implements store.Enrollment.
func (s *Store) UseEnrollSecret(ctx context.Context, hash []byte, now time.Time) (store.EnrollSecret, error) {
	return s.enrollSecret(ctx, hash, now, true)
}

// PeekEnrollSecret implements store.Enrollment.
func (s *Store) PeekEnrollSecret(ctx context.Context, hash []byte, now time.Time) (store.EnrollSecret, error) {
	return s.enrollSecret(ctx, hash, now, false)
}

func (s *Store) enrollSecret(ctx context.Context, hash []byte, now time.Time, use bool) (store.EnrollSecret, error) {
	if !use {
		return readSecret(ctx, s.rdb, hash, now, 0)
	}
	var e store.EnrollSecret
	err := s.write(ctx, func(tx Tx) error {
		var err error
		if e, err = readSecret(ctx, tx, hash, now, 0); err != nil {
			return err
		}
		if e.SingleUse {
			// The conditional update locks the row: of two concurrent uses
			// (two replicas), the second finds it used.
			res, err := tx.ExecContext(ctx, `UPDATE enroll_secrets SET uses = uses + 1 WHERE id = ? AND uses = 0`, e.ID)
			if err := affectedOne(res, err); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return store.ErrNotFound
				}
				return err
			}
			e.Uses = 1
			return nil
		}
		// A reusable secret enrolls a whole fleet (an MDM pushes one to
		// every device): its uses are counted in rows of their own, folded
		// into its row by FoldCounts, so enrollments never wait on each
		// other's commits for that row.
		if _, err := tx.ExecContext(ctx, `INSERT INTO enroll_secret_uses (secret_id, uses) VALUES (?, 1)`, e.ID); err != nil {
			return err
		}
		e.Uses++
		return nil
	})
	return e, err
}

// readSecret reads the secret of hash (its uses: the folded count plus the
// uses not folded yet) and checks that it can enroll at now, given that
// counted of its uses are the present one's.
func readSecret(ctx context.Context, q queryer, hash []byte, now time.Time, counted int) (store.EnrollSecret, error) {
	var e store.EnrollSecret
	var exp, rev sql.NullInt64
	var created int64
	err := q.QueryRowContext(ctx, `SELECT id, hash, label, created_at, expires_at, single_use,
		uses + COALESCE((SELECT sum(u.uses) FROM enroll_secret_uses u WHERE u.secret_id = s.id), 0), revoked_at
		FROM enroll_secrets s WHERE hash = ?`, hash).Scan(&e.ID, &e.Hash, &e.Label, &created, &exp, &e.SingleUse, &e.Uses, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return e, store.ErrNotFound
	}
	if err != nil {
		return e, err
	}
	e.CreatedAt, e.ExpiresAt, e.RevokedAt = fromNanos(created), timePtr(exp), timePtr(rev)
	if e.RevokedAt != nil || (e.ExpiresAt != nil && !now.Before(*e.ExpiresAt)) || (e.SingleUse && e.Uses-counted > 0) {
		return e, store.ErrNotFound
	}
	return e, nil
}

// EnrollDevice implements store.Enrollment.
func (s *Store) EnrollDevice(ctx context.Context, d store.Device) (store.Device, error) {
	var stored store.Device
	err := s.write(ctx, func(tx Tx) error {
		var err error
		stored, err = s.enrollDevice(ctx, tx, d)
		return err
	})
	if err != nil {
		return d, err
	}
	return stored, nil
}

// UpdateDeviceFacts implements store.Store.
func (s *Store) UpdateDeviceFacts(ctx context.Context, id string, f store.DeviceFacts) (bool, error) {
	var changed bool
	err := s.write(ctx, func(tx Tx) error {
		var d store.Device
		err := tx.QueryRowContext(ctx, `SELECT hostname, os_version, serial_number, agent_version FROM devices WHERE id = ?`, id).
			Scan(&d.Hostname, &d.OSVersion, &d.SerialNumber, &d.AgentVersion)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		keep := func(v *string, now string) {
			if now != "" && now != *v {
				*v, changed = now, true
			}
		}
		keep(&d.Hostname, f.Hostname)
		keep(&d.OSVersion, f.OSVersion)
		keep(&d.SerialNumber, f.SerialNumber)
		keep(&d.AgentVersion, f.AgentVersion)
		if !changed {
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE devices SET hostname = ?, os_version = ?, serial_number = ?, agent_version = ? WHERE id = ?`,
			d.Hostname, d.OSVersion, d.SerialNumber, d.AgentVersion, id)
		return err
	})
	return changed, err
}

func (s *Store) enrollDevice(ctx context.Context, tx Tx, d store.Device) (store.Device, error) {
	_, err := tx.ExecContext(ctx, `INSERT INTO devices (id, hostname, goos, goarch, os_version, machine_id, serial_number,
		agent_version, secret_id, enrolled_at, previous_id, reenrolled) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		d.ID, d.Hostname, d.GOOS, d.GOARCH, d.OSVersion, d.MachineID, d.SerialNumber, d.AgentVersion, d.SecretID,
		nanos(d.EnrolledAt), d.PreviousID, d.Reenrolled)
	if err != nil {
		return d, err
	}
	if err := s.counter(ctx, tx, "", "devices", +1, d.EnrolledAt); err != nil {
		return d, err
	}
	if c := d.Cert; c != nil {
		if err := insertCert(ctx, tx, d.ID, *c); err != nil {
			return d, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET cert_serial = ?, cert_not_after = ? WHERE id = ?`,
			c.Serial, nanos(c.NotAfter), d.ID); err != nil {
			return d, err
		}
	}
	if t := d.TPM; t != nil {
		// creds_changed_at: the replicas close the superseded identity's
		// open streams.
		_, err = tx.ExecContext(ctx, `UPDATE devices SET superseded_by = ?, creds_changed_at = ? WHERE superseded_by = '' AND id IN
			(SELECT device_id FROM device_tpm WHERE ek_hash = ?)`, d.ID, nanos(d.EnrolledAt), t.EKHash)
		if err != nil {
			return d, err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO device_tpm (device_id, ek_hash, ek_trust, ek_cert_subject, ek_cert_issuer,
			ek_cert_serial, ak_public, enrolled_at) VALUES (?,?,?,?,?,?,?,?)`,
			d.ID, t.EKHash, t.EKTrust, t.EKCertSubject, t.EKCertIssuer, t.EKCertSerial, t.AKPublic, nanos(d.EnrolledAt))
		if err != nil {
			return d, err
		}
	}
	return scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = ?`, d.ID))
}

const deviceCols = `id, hostname, goos, goarch, os_version, machine_id, serial_number, agent_version, secret_id, enrolled_at, last_seen_at, previous_id, reenrolled, superseded_by,
	cert_serial, cert_not_after, next_cert_serial, next_cert_not_after, revoked_at, revoke_reason, retired`

// scanDevice scans deviceCols, then extra.
func scanDevice(sc interface{ Scan(...any) error }, extra ...any) (store.Device, error) {
	var d store.Device
	var enrolled, certNotAfter, nextNotAfter int64
	var seen, revoked sql.NullInt64
	err := sc.Scan(append([]any{&d.ID, &d.Hostname, &d.GOOS, &d.GOARCH, &d.OSVersion, &d.MachineID, &d.SerialNumber,
		&d.AgentVersion, &d.SecretID, &enrolled, &seen, &d.PreviousID, &d.Reenrolled, &d.SupersededBy,
		&d.CertSerial, &certNotAfter, &d.NextCertSerial, &nextNotAfter, &revoked, &d.RevokeReason, &d.Retired}, extra...)...)
	d.EnrolledAt, d.LastSeenAt, d.RevokedAt = fromNanos(enrolled), timePtr(seen), timePtr(revoked)
	if certNotAfter != 0 {
		d.CertNotAfter = fromNanos(certNotAfter)
	}
	if nextNotAfter != 0 {
		d.NextCertNotAfter = fromNanos(nextNotAfter)
	}
	return d, err
}

// Device implements store.Enrollment.
func (s *Store) Device(ctx context.Context, id string) (store.Device, error) {
	return readDevice(ctx, s.rdb, id)
}

func readDevice(ctx context.Context, r reader, id string) (store.Device, error) {
	d, err := scanDevice(r.QueryRowContext(ctx, stmtDevice, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, store.ErrNotFound
	}
	return d, err
}

// DeviceByMachineID implements store.Enrollment.
func (s *Store) DeviceByMachineID(ctx context.Context, machineID string) (store.Device, error) {
	if machineID == "" {
		return store.Device{}, store.ErrNotFound
	}
	// "machine_id <> ''" lets the planner use the partial index (built
	// without empty ids); without it every enrollment read the whole table.
	d, err := scanDevice(s.rdb.QueryRowContext(ctx, `SELECT `+deviceCols+` FROM devices WHERE machine_id = ?
		AND machine_id <> '' ORDER BY enrolled_at DESC, id DESC LIMIT 1`, machineID))
	if errors.Is(err, sql.ErrNoRows) {
		return d, store.ErrNotFound
	}
	return d, err
}

// Devices implements store.Enrollment.
func (s *Store) Devices(ctx context.Context) ([]store.Device, error) {
	return s.queryDevices(ctx, `SELECT `+deviceCols+` FROM devices ORDER BY hostname, id`)
}

// queryDevices reads the devices a query of deviceCols returns.
func (s *Store) queryDevices(ctx context.Context, query string, args ...any) ([]store.Device, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Ingest implements store.Evidence. Each newly stored observation is
// appended to the device's hash chain (store.Chain); the head is read and
// written inside the same immediate transaction as the inserts, so
// concurrent batches of one device chain one after the other.
func (s *Store) Ingest(ctx context.Context, deviceID string, obs []store.Observation, receivedAt time.Time) (int, error) {
	var n int
	err := s.write(ctx, func(tx Tx) error {
		var err error
		n, err = s.ingest(ctx, tx, deviceID, obs, receivedAt, true)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

const (
	stmtLastSeen  = `UPDATE devices SET last_seen_at = GREATEST(COALESCE(last_seen_at, 0), ?) WHERE id = ?`
	stmtStored    = `SELECT seq FROM observations WHERE device_id = ? AND seq >= ? AND seq <= ?`
	stmtChainHead = `INSERT INTO chain_heads (device_id, chain_index, chain_hash) VALUES (?, ?, ?)
		ON CONFLICT (device_id) DO UPDATE SET chain_index = excluded.chain_index, chain_hash = excluded.chain_hash`
)

// rowsPerInsert bounds the rows of one multi-row insert: a report (8
// observations from the standard collectors) is one statement, and the
// statements of 1 to rowsPerInsert rows are prepared ahead.
const rowsPerInsert = 8

// stmtObserve inserts n observations.
func stmtObserve(n int) string {
	return `INSERT INTO observations (device_id, seq, collector, collected_at, received_at,
		clock_skew, status, error, parser_version, payload, sources, duration_ms, chain_index, chain_hash)
		VALUES ` + rowsOf(n, 14)
}

// stmtLatest moves n collectors' latest observations forward.
func stmtLatest(n int) string {
	return `INSERT INTO latest_observations (device_id, collector, seq) VALUES ` + rowsOf(n, 3) + `
		ON CONFLICT (device_id, collector) DO UPDATE SET seq = GREATEST(latest_observations.seq, excluded.seq)`
}

// rowsOf is n rows of k placeholders: (?,?),(?,?).
func rowsOf(n, k int) string { return repeatRows("("+placeholders(k)+")", n) }

// repeatRows is row n times, comma-separated.
func repeatRows(row string, n int) string {
	return strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// ingestStatements are the statements of every report's write, for
// DB.prepare.
func ingestStatements() []string {
	qs := []string{stmtLastSeen, stmtStored, stmtReadChainHead, stmtChainHead}
	for n := 1; n <= rowsPerInsert; n++ {
		qs = append(qs, stmtObserve(n), stmtLatest(n))
	}
	return qs
}

// ingest stores one batch of a device's observations in tx: a handful of
// statements whatever the batch's size (each is a round trip to
// PostgreSQL). touch moves the device's last contact to receivedAt first;
// a caller that does not has locked the device's row already
// (IngestScored) and moves it itself.
func (s *Store) ingest(ctx context.Context, tx Tx, deviceID string, obs []store.Observation, receivedAt time.Time, touch bool) (int, error) {
	// Last seen first: the update locks the device's row (in PostgreSQL),
	// so batches of one device arriving at two replicas chain one after
	// the other rather than both from the same head; which of the batch's
	// seqs are stored already is then settled until commit.
	if touch {
		if _, err := tx.ExecContext(ctx, stmtLastSeen, nanos(receivedAt), deviceID); err != nil {
			return 0, err
		}
	}
	if len(obs) == 0 {
		return 0, nil
	}
	head, err := chainHead(ctx, tx, deviceID)
	if err != nil {
		return 0, err
	}
	lo, hi := obs[0].Seq, obs[0].Seq
	for _, o := range obs {
		lo, hi = min(lo, o.Seq), max(hi, o.Seq)
	}
	stored := map[uint64]bool{}
	rows, err := tx.QueryContext(ctx, stmtStored, deviceID, int64(lo), int64(hi))
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return 0, err
		}
		stored[uint64(seq)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	// The new ones, chained in order: a resent observation (stored
	// already, or twice in the batch) does not advance the chain.
	args := make([]any, 0, 14*min(len(obs), rowsPerInsert))
	pending := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, stmtObserve(pending), args...)
		if err == nil {
			var k int64
			if k, err = res.RowsAffected(); err == nil && k != int64(pending) {
				err = fmt.Errorf("%d of %d observations inserted", k, pending)
			}
		}
		args, pending = args[:0], 0
		return err
	}
	n := 0
	newest := map[string]uint64{}
	rec := fromNanos(nanos(receivedAt))
	for _, o := range obs {
		if stored[o.Seq] {
			continue
		}
		stored[o.Seq] = true
		// Hash exactly what is stored: times as UTC nanoseconds.
		o.CollectedAt, o.ReceivedAt = fromNanos(nanos(o.CollectedAt)), rec
		idx := head.Index + 1
		h := store.ChainHash(head.Hash, deviceID, idx, o)
		args = append(args, deviceID, int64(o.Seq), o.Collector, nanos(o.CollectedAt), nanos(receivedAt),
			o.ClockSkew, o.Status, o.Error, o.ParserVersion, []byte(o.Payload), []byte(o.Sources), o.DurationMS, int64(idx), h)
		pending++
		n++
		head = store.ChainLink{Index: idx, Hash: h}
		if o.Seq > newest[o.Collector] {
			newest[o.Collector] = o.Seq
		}
		if pending == rowsPerInsert {
			if err := flush(); err != nil {
				return 0, fmt.Errorf("store seqs up to %d: %w", o.Seq, err)
			}
		}
	}
	if err := flush(); err != nil {
		return 0, fmt.Errorf("store seqs up to %d: %w", hi, err)
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, stmtChainHead, deviceID, int64(head.Index), head.Hash); err != nil {
		return 0, err
	}
	// In collector order: two replicas' batches lock the rows alike.
	collectors := make([]string, 0, len(newest))
	for c := range newest {
		collectors = append(collectors, c)
	}
	slices.Sort(collectors)
	for len(collectors) > 0 {
		part := collectors[:min(len(collectors), rowsPerInsert)]
		collectors = collectors[len(part):]
		args := make([]any, 0, 3*len(part))
		for _, c := range part {
			args = append(args, deviceID, c, int64(newest[c]))
		}
		if _, err := tx.ExecContext(ctx, stmtLatest(len(part)), args...); err != nil {
			return 0, err
		}
	}
	return n, nil
}

const obsCols = `seq, collector, collected_at, received_at, clock_skew, status, error, parser_version, payload, sources, duration_ms`

func scanObs(sc interface{ Scan(...any) error }) (store.Observation, error) {
	var o store.Observation
	var seq, col, rec int64
	var payload, sources []byte
	err := sc.Scan(&seq, &o.Collector, &col, &rec, &o.ClockSkew, &o.Status, &o.Error, &o.ParserVersion, &payload, &sources, &o.DurationMS)
	o.Seq, o.CollectedAt, o.ReceivedAt, o.Payload, o.Sources = uint64(seq), fromNanos(col), fromNanos(rec), payload, sources
	return o, err
}

// Latest implements store.Evidence.
func (s *Store) Latest(ctx context.Context, deviceID string) (map[string]store.Observation, error) {
	return readLatest(ctx, s.rdb, deviceID)
}

func readLatest(ctx context.Context, r reader, deviceID string) (map[string]store.Observation, error) {
	rows, err := r.QueryContext(ctx, stmtLatestObs, deviceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]store.Observation{}
	for rows.Next() {
		o, err := scanObs(rows)
		if err != nil {
			return nil, err
		}
		out[o.Collector] = o
	}
	return out, rows.Err()
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

// History implements store.Evidence.
func (s *Store) History(ctx context.Context, deviceID, collector string, limit int) ([]store.Observation, error) {
	return readHistory(ctx, s.rdb, deviceID, collector, limit)
}

func readHistory(ctx context.Context, r reader, deviceID, collector string, limit int) ([]store.Observation, error) {
	rows, err := r.QueryContext(ctx, stmtHistory, deviceID, collector, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Observation
	for rows.Next() {
		o, err := scanObs(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Counts implements store.Evidence.
func (s *Store) Counts(ctx context.Context, deviceID string) (store.ObservationCounts, error) {
	var c store.ObservationCounts
	var minSeq, maxSeq, first, last sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*), MIN(seq), MAX(seq), MIN(collected_at), MAX(collected_at)
		FROM observations WHERE device_id = ?`, deviceID).Scan(&c.Total, &minSeq, &maxSeq, &first, &last)
	if err != nil {
		return c, err
	}
	c.MinSeq, c.MaxSeq = uint64(minSeq.Int64), uint64(maxSeq.Int64)
	if first.Valid {
		c.First, c.Last = fromNanos(first.Int64), fromNanos(last.Int64)
	}
	return c, nil
}

// stateCols are an interval's columns in the order readStates scans them;
// stateColsLazy, the same without the evidence (the sixth).
const (
	stateCols     = `id, control_id, status, reason, evidence_seq, evidence, since_at, until_at, evaluated_at, evaluations`
	stateColsLazy = `id, control_id, status, reason, evidence_seq, since_at, until_at, evaluated_at, evaluations`
)

// What scoring reads (store.ScoreReader), prepared on the writer too for
// IngestScored.
var (
	stmtDevice    = `SELECT ` + deviceCols + ` FROM devices WHERE id = ?`
	stmtLatestObs = `SELECT ` + prefixed("o.", obsCols) + ` FROM latest_observations l
		JOIN observations o ON o.device_id = l.device_id AND o.seq = l.seq WHERE l.device_id = ?`
	stmtHistory = `SELECT ` + obsCols + ` FROM observations WHERE device_id = ? AND collector = ?
		ORDER BY seq DESC LIMIT ?`
	stmtCurrentStates = `SELECT ` + stateCols + ` FROM control_states WHERE device_id = ? AND until_at IS NULL ORDER BY control_id`
	// A report's scoring reads the open intervals without their evidence
	// (store.ControlState.LoadEvidence reads one when a check asks).
	stmtCurrentStatesLazy = `SELECT ` + stateColsLazy + ` FROM control_states WHERE device_id = ? AND until_at IS NULL ORDER BY control_id`
	stmtStateEvidence     = `SELECT evidence FROM control_states WHERE id = ?`
)

func (s *Store) states(ctx context.Context, q string, args ...any) ([]store.ControlState, error) {
	return readStates(ctx, s.rdb, true, q, args...)
}

// readStates reads intervals: the columns of stateCols, or of
// stateColsLazy unless withEvidence.
func readStates(ctx context.Context, r reader, withEvidence bool, q string, args ...any) ([]store.ControlState, error) {
	rows, err := r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ControlState
	for rows.Next() {
		var st store.ControlState
		var seq, since, eval int64
		var until sql.NullInt64
		var ev []byte
		dest := []any{&st.ID, &st.ControlID, &st.Status, &st.Reason, &seq, &ev, &since, &until, &eval, &st.Evaluations}
		if !withEvidence {
			dest = slices.Delete(dest, 5, 6)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		st.EvidenceSeq, st.Evidence, st.Since, st.Until, st.EvaluatedAt = uint64(seq), ev, fromNanos(since), timePtr(until), fromNanos(eval)
		out = append(out, st)
	}
	return out, rows.Err()
}

// CurrentStates implements store.Scores.
func (s *Store) CurrentStates(ctx context.Context, deviceID string) ([]store.ControlState, error) {
	return s.states(ctx, stmtCurrentStates, deviceID)
}

// StateHistory implements store.Scores.
func (s *Store) StateHistory(ctx context.Context, deviceID string) ([]store.ControlState, error) {
	return s.states(ctx, `SELECT `+stateCols+` FROM control_states WHERE device_id = ? ORDER BY control_id, since_at, id`, deviceID)
}
