-- Per-device hash chain over observations (DESIGN §6, evidence integrity;
-- the encoding is store.ChainHash). chain_index is the 1-based position in
-- the device's chain, in order of insertion; chain_hash is
-- SHA-256(previous chain_hash || canonical encoding of the row).
--
-- Rows stored before this migration keep NULL chain fields: the chain starts
-- at the first observation stored after it, and exports and verify report the
-- older rows as "unchained". They are not backfilled: their insertion order
-- was never recorded, and a chain computed now would only attest to what the
-- database holds today, not to what was received.
ALTER TABLE observations ADD COLUMN chain_index INTEGER;
ALTER TABLE observations ADD COLUMN chain_hash BLOB;
CREATE UNIQUE INDEX observations_chain ON observations (device_id, chain_index) WHERE chain_index IS NOT NULL;

-- Each device's newest link, so ingest appends without scanning. Updated in
-- the ingest transaction, atomically with the inserts.
CREATE TABLE chain_heads (
    device_id   TEXT PRIMARY KEY REFERENCES devices (id),
    chain_index INTEGER NOT NULL,
    chain_hash  BLOB NOT NULL
) WITHOUT ROWID;
