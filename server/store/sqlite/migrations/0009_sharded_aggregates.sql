-- The read model's aggregates in 16 rows each (store/sqlstore: a device's
-- changes go to the row of its shard; readers sum them), so that a database
-- that locks updated rows until commit does not serialise the fleet's
-- enrollments and status changes on one row. What was stored moves to
-- shard 0.
CREATE TABLE posture_counts_sharded (
    control_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    shard      INTEGER NOT NULL,
    devices    INTEGER NOT NULL,
    PRIMARY KEY (control_id, status, shard)
) WITHOUT ROWID;
INSERT INTO posture_counts_sharded (control_id, status, shard, devices)
    SELECT control_id, status, 0, devices FROM posture_counts;
DROP TABLE posture_counts;
ALTER TABLE posture_counts_sharded RENAME TO posture_counts;

CREATE TABLE posture_daily_sharded (
    day        INTEGER NOT NULL,
    control_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    shard      INTEGER NOT NULL,
    devices    INTEGER NOT NULL,
    PRIMARY KEY (day, control_id, status, shard)
) WITHOUT ROWID;
INSERT INTO posture_daily_sharded (day, control_id, status, shard, devices)
    SELECT day, control_id, status, 0, devices FROM posture_daily;
DROP TABLE posture_daily;
ALTER TABLE posture_daily_sharded RENAME TO posture_daily;
