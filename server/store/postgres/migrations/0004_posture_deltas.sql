-- Changes to the read model's aggregates, one row per evaluation or
-- enrollment that moved one: writers insert here instead of updating the
-- shared posture_counts rows (whose row locks, held to each evaluation's
-- commit, kept most connections of four replicas waiting), and the store
-- folds them into posture_counts and posture_daily every second. Readers
-- add the rows not yet folded. day is the UTC day (Unix days) of the change.
-- New changes are folded into shard 0; the other shards keep what they held.
CREATE TABLE posture_deltas (
    id         BIGSERIAL PRIMARY KEY,
    day        BIGINT NOT NULL,
    control_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    delta      INTEGER NOT NULL
);
