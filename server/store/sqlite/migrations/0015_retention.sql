-- Retention: an observation older than the retention period keeps its row
-- (seq, collector, times, status, chain position and hash) and loses its
-- content (payload, sources, error text) at pruned_at, so each device's
-- hash chain and the bundles over it still verify. pruned_seq is how far a
-- device's observations have been looked at, so each run reads only what
-- arrived since. An attestation keeps its verdict and loses its raw message.
ALTER TABLE observations ADD COLUMN pruned_at INTEGER;
ALTER TABLE attestations ADD COLUMN raw_pruned_at INTEGER;
ALTER TABLE devices ADD COLUMN pruned_seq INTEGER NOT NULL DEFAULT 0;
