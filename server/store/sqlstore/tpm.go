package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// CreateActivation implements store.TPM.
func (s *Store) CreateActivation(ctx context.Context, a store.Activation) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO tpm_activations (id, secret_hash, expected_hash, ek_hash, ak_public, expires_at)
		VALUES (?,?,?,?,?,?)`, a.ID, a.SecretHash, a.ExpectedHash, a.EKHash, a.AKPublic, nanos(a.ExpiresAt))
	return err
}

// TakeActivation implements store.TPM.
func (s *Store) TakeActivation(ctx context.Context, id string, now time.Time) (store.Activation, error) {
	a := store.Activation{ID: id}
	var exp int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM tpm_activations WHERE id = ?
		RETURNING secret_hash, expected_hash, ek_hash, ak_public, expires_at`, id).
		Scan(&a.SecretHash, &a.ExpectedHash, &a.EKHash, &a.AKPublic, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return a, store.ErrNotFound
	}
	if err != nil {
		return a, err
	}
	a.ExpiresAt = fromNanos(exp)
	if !now.Before(a.ExpiresAt) {
		return a, store.ErrExpired
	}
	return a, nil
}

const tpmCols = `ek_hash, ek_trust, ek_cert_subject, ek_cert_issuer, ek_cert_serial, ak_public, enrolled_at`

func scanTPM(sc interface{ Scan(...any) error }, extra ...any) (store.DeviceTPM, error) {
	var t store.DeviceTPM
	var at int64
	err := sc.Scan(append([]any{&t.EKHash, &t.EKTrust, &t.EKCertSubject, &t.EKCertIssuer, &t.EKCertSerial, &t.AKPublic, &at}, extra...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, store.ErrNotFound
	}
	t.EnrolledAt = fromNanos(at)
	return t, err
}

// DeviceTPM implements store.TPM.
func (s *Store) DeviceTPM(ctx context.Context, deviceID string) (store.DeviceTPM, error) {
	return readDeviceTPM(ctx, s.rdb, deviceID)
}

const stmtDeviceTPM = `SELECT ` + tpmCols + ` FROM device_tpm WHERE device_id = ?`

func readDeviceTPM(ctx context.Context, r reader, deviceID string) (store.DeviceTPM, error) {
	return scanTPM(r.QueryRowContext(ctx, stmtDeviceTPM, deviceID))
}

// DeviceByEK implements store.TPM.
func (s *Store) DeviceByEK(ctx context.Context, ekHash []byte) (string, store.DeviceTPM, error) {
	var id string
	t, err := scanTPM(s.rdb.QueryRowContext(ctx, `SELECT `+tpmCols+`, device_id FROM device_tpm WHERE ek_hash = ?
		ORDER BY enrolled_at DESC, device_id DESC LIMIT 1`, ekHash), &id)
	return id, t, err
}

// MachineTPM implements store.TPM.
func (s *Store) MachineTPM(ctx context.Context, machineID string) (string, store.DeviceTPM, error) {
	if machineID == "" {
		return "", store.DeviceTPM{}, store.ErrNotFound
	}
	var id string
	t, err := scanTPM(s.rdb.QueryRowContext(ctx, `SELECT t.ek_hash, t.ek_trust, t.ek_cert_subject, t.ek_cert_issuer, t.ek_cert_serial,
		t.ak_public, t.enrolled_at, t.device_id FROM device_tpm t JOIN devices d ON d.id = t.device_id
		WHERE d.machine_id = ? AND d.machine_id <> '' ORDER BY t.enrolled_at DESC, t.device_id DESC LIMIT 1`, machineID), &id)
	return id, t, err
}

// HasLiveNonce implements store.TPM.
func (s *Store) HasLiveNonce(ctx context.Context, deviceID string, now time.Time) (bool, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM attest_nonces WHERE device_id = ? AND expires_at > ?`, deviceID, nanos(now)).Scan(&n)
	return n > 0, err
}

// AllowTPMChange implements store.TPM.
func (s *Store) AllowTPMChange(ctx context.Context, deviceID string, until time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO tpm_change_allowances (device_id, expires_at) VALUES (?, ?)
		ON CONFLICT (device_id) DO UPDATE SET expires_at = excluded.expires_at`, deviceID, nanos(until))
	return err
}

// TakeTPMChangeAllowance implements store.TPM.
func (s *Store) TakeTPMChangeAllowance(ctx context.Context, deviceID string, now time.Time) error {
	var exp int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM tpm_change_allowances WHERE device_id = ? RETURNING expires_at`, deviceID).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if !now.Before(fromNanos(exp)) {
		return store.ErrExpired
	}
	return nil
}

// CreateNonce implements store.TPM.
func (s *Store) CreateNonce(ctx context.Context, n store.Nonce) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO attest_nonces (device_id, nonce, expires_at) VALUES (?,?,?)`,
		n.DeviceID, n.Value, nanos(n.ExpiresAt))
	return err
}

// TakeNonce implements store.TPM.
func (s *Store) TakeNonce(ctx context.Context, deviceID string, value []byte, now time.Time) (store.Nonce, error) {
	n := store.Nonce{DeviceID: deviceID, Value: value}
	var exp int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM attest_nonces WHERE device_id = ? AND nonce = ? RETURNING expires_at`,
		deviceID, value).Scan(&exp)
	if errors.Is(err, sql.ErrNoRows) {
		return n, store.ErrNotFound
	}
	if err != nil {
		return n, err
	}
	n.ExpiresAt = fromNanos(exp)
	if !now.Before(n.ExpiresAt) {
		return n, store.ErrExpired
	}
	return n, nil
}

// AddAttestation implements store.TPM.
func (s *Store) AddAttestation(ctx context.Context, a store.Attestation) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO attestations (device_id, received_at, verified, verdict, first_seq, last_seq, raw)
		VALUES (?,?,?,?,?,?,?) RETURNING id`, a.DeviceID, nanos(a.ReceivedAt), a.Verified, []byte(a.Verdict), int64(a.FirstSeq), int64(a.LastSeq), a.Raw).Scan(&id)
	return id, err
}

// LatestAttestation implements store.TPM.
func (s *Store) LatestAttestation(ctx context.Context, deviceID string, verifiedOnly bool) (store.Attestation, error) {
	return readLatestAttestation(ctx, s.rdb, deviceID, verifiedOnly)
}

const stmtLatestAttestation = `SELECT id, received_at, verified, verdict, first_seq, last_seq, raw FROM attestations
		WHERE device_id = ? AND (verified OR NOT ?) ORDER BY id DESC LIMIT 1`

func readLatestAttestation(ctx context.Context, r reader, deviceID string, verifiedOnly bool) (store.Attestation, error) {
	a := store.Attestation{DeviceID: deviceID}
	var at, first, last int64
	var verdict []byte
	err := r.QueryRowContext(ctx, stmtLatestAttestation, deviceID, verifiedOnly).Scan(&a.ID, &at, &a.Verified, &verdict, &first, &last, &a.Raw)
	if errors.Is(err, sql.ErrNoRows) {
		return a, store.ErrNotFound
	}
	a.ReceivedAt, a.Verdict, a.FirstSeq, a.LastSeq = fromNanos(at), verdict, uint64(first), uint64(last)
	return a, err
}

// PurgeExpired implements store.TPM.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time) error {
	n := nanos(now)
	for _, q := range []string{
		`DELETE FROM attest_nonces WHERE expires_at <= ?`,
		`DELETE FROM tpm_activations WHERE expires_at <= ?`,
		`DELETE FROM tpm_change_allowances WHERE expires_at <= ?`,
	} {
		if _, err := s.db.ExecContext(ctx, q, n); err != nil {
			return err
		}
	}
	return nil
}
