package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/evident-dev/evident/server/store"
)

func insertCert(ctx context.Context, tx Tx, deviceID string, c store.Certificate) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO device_certs (serial, device_id, key_sha256, issued_at, not_after) VALUES (?,?,?,?,?)`,
		c.Serial, deviceID, c.KeySHA256, nanos(c.IssuedAt), nanos(c.NotAfter))
	return err
}

// AddCertificate implements store.Credentials.
func (s *Store) AddCertificate(ctx context.Context, deviceID string, c store.Certificate) error {
	return s.write(ctx, func(tx Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET next_cert_serial = ?, next_cert_not_after = ? WHERE id = ?`,
			c.Serial, nanos(c.NotAfter), deviceID)
		if err != nil {
			return err
		}
		if err := oneRow(res); err != nil {
			return err
		}
		return insertCert(ctx, tx, deviceID, c)
	})
}

// ConfirmCertificate implements store.Credentials.
func (s *Store) ConfirmCertificate(ctx context.Context, deviceID, serial string, at time.Time) (bool, error) {
	var ok bool
	err := s.write(ctx, func(tx Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET cert_serial = next_cert_serial, cert_not_after = next_cert_not_after,
			next_cert_serial = '', next_cert_not_after = 0, creds_changed_at = ?
			WHERE id = ? AND next_cert_serial = ? AND next_cert_serial <> ''`, nanos(at), deviceID, serial)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		ok = n == 1
		return err
	})
	return ok, err
}

// CertificateByKey implements store.Credentials.
func (s *Store) CertificateByKey(ctx context.Context, keySHA256 []byte) (store.Certificate, error) {
	var c store.Certificate
	var issued, notAfter int64
	err := s.rdb.QueryRowContext(ctx, `SELECT serial, device_id, key_sha256, issued_at, not_after FROM device_certs WHERE key_sha256 = ?`,
		keySHA256).Scan(&c.Serial, &c.DeviceID, &c.KeySHA256, &issued, &notAfter)
	if errors.Is(err, sql.ErrNoRows) {
		return c, store.ErrNotFound
	}
	c.IssuedAt, c.NotAfter = fromNanos(issued), fromNanos(notAfter)
	return c, err
}

// RevokeDevice implements store.Credentials.
func (s *Store) RevokeDevice(ctx context.Context, deviceID string, at time.Time, reason string, retire bool) error {
	return s.write(ctx, func(tx Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = COALESCE(revoked_at, ?),
			revoke_reason = CASE WHEN revoked_at IS NULL THEN ? ELSE revoke_reason END,
			retired = CASE WHEN revoked_at IS NULL THEN ? ELSE retired END, creds_changed_at = ? WHERE id = ?`,
			nanos(at), reason, retire, nanos(at), deviceID)
		if err != nil {
			return err
		}
		if err := oneRow(res); err != nil {
			return err
		}
		return nil
	})
}

// CredentialChanges implements store.Credentials.
func (s *Store) CredentialChanges(ctx context.Context, since time.Time) ([]store.Device, error) {
	return s.queryDevices(ctx, `SELECT `+deviceCols+` FROM devices WHERE creds_changed_at >= ? AND creds_changed_at > 0`, nanos(since))
}

// CertificatesExpiring implements store.Credentials.
func (s *Store) CertificatesExpiring(ctx context.Context, before time.Time) (int, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM devices WHERE revoked_at IS NULL AND superseded_by = ''
		AND cert_not_after > 0 AND cert_not_after < ?`, nanos(before)).Scan(&n)
	return n, err
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.rdb.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}
