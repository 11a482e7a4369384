-- Device credentials: every certificate the CA issued (renewal issues a
-- new one for a new key), which of them authenticates each device, and
-- revocations. cert_serial '' is a device enrolled before this migration:
-- any certificate of the CA naming it authenticates it until its first
-- confirmed renewal. creds_changed_at (Unix nanoseconds) moves when what
-- authenticates a device changes, so each replica can find, every few
-- seconds, the open streams it must close.
ALTER TABLE devices ADD COLUMN cert_serial TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN cert_not_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN next_cert_serial TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN next_cert_not_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN revoked_at BIGINT;
ALTER TABLE devices ADD COLUMN revoke_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN retired BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE devices ADD COLUMN creds_changed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_creds_changed ON devices (creds_changed_at) WHERE creds_changed_at > 0;

CREATE TABLE device_certs (
    serial     TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices (id),
    key_sha256 BYTEA NOT NULL,
    issued_at  BIGINT NOT NULL,
    not_after  BIGINT NOT NULL
);
CREATE UNIQUE INDEX device_certs_key ON device_certs (key_sha256);
CREATE INDEX device_certs_device ON device_certs (device_id);
