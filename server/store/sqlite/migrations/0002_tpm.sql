-- TPM-bound enrollment and attestation (DESIGN §4). Times are Unix
-- nanoseconds, UTC.

-- A device's TPM as enrolled: the EK names the chip, the AK is the only key
-- its quotes are verified with.
CREATE TABLE device_tpm (
    device_id       TEXT PRIMARY KEY REFERENCES devices (id),
    ek_hash         BLOB NOT NULL,
    ek_trust        TEXT NOT NULL,
    ek_cert_subject TEXT NOT NULL DEFAULT '',
    ek_cert_issuer  TEXT NOT NULL DEFAULT '',
    ek_cert_serial  TEXT NOT NULL DEFAULT '',
    ak_public       BLOB NOT NULL,
    enrolled_at     INTEGER NOT NULL
);
CREATE INDEX device_tpm_ek ON device_tpm (ek_hash, enrolled_at);

-- A device re-enrolled with the same TPM (EK) is superseded by the new
-- enrollment: its certificate no longer authenticates, so one TPM never
-- vouches for two live identities.
ALTER TABLE devices ADD COLUMN superseded_by TEXT NOT NULL DEFAULT '';

-- Pending MakeCredential challenges, single use.
CREATE TABLE tpm_activations (
    id            TEXT PRIMARY KEY,
    secret_hash   BLOB NOT NULL,
    expected_hash BLOB NOT NULL,
    ek_hash       BLOB NOT NULL,
    ak_public     BLOB NOT NULL,
    expires_at    INTEGER NOT NULL
);

-- An admin's permission for a device's next enrollment to change its EK or
-- AK, single use.
CREATE TABLE tpm_change_allowances (
    device_id  TEXT PRIMARY KEY REFERENCES devices (id),
    expires_at INTEGER NOT NULL
);

-- Attestation nonces issued and not yet used.
CREATE TABLE attest_nonces (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    nonce      BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
) WITHOUT ROWID;

-- Attestation verdicts, append-only evidence.
CREATE TABLE attestations (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id),
    received_at INTEGER NOT NULL,
    verified    INTEGER NOT NULL,
    verdict     BLOB NOT NULL,
    first_seq   INTEGER NOT NULL DEFAULT 0,
    last_seq    INTEGER NOT NULL DEFAULT 0,
    raw         BLOB
);
CREATE INDEX attestations_device ON attestations (device_id, id);
