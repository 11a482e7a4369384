-- The read model (store.Posture): what the fleet overview, device lists and
-- the API read instead of re-scoring. Kept in the transaction that writes
-- the intervals (RecordStates) and enrolls devices, so it never drifts from
-- them. Times are Unix nanoseconds, UTC.

-- A device's posture after its latest evaluation: compliant when every
-- control of the policy passed or did not apply.
ALTER TABLE devices ADD COLUMN compliant INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET compliant = 1
 WHERE EXISTS (SELECT 1 FROM control_states c WHERE c.device_id = devices.id AND c.until_at IS NULL)
   AND NOT EXISTS (SELECT 1 FROM control_states c WHERE c.device_id = devices.id AND c.until_at IS NULL
                   AND c.status NOT IN ('pass', 'not_applicable'));

-- The device list's sort orders and hostname search.
CREATE INDEX devices_hostname ON devices (hostname COLLATE NOCASE, id);
CREATE INDEX devices_last_seen ON devices (ifnull(last_seen_at, 0), id);
CREATE INDEX devices_compliant ON devices (compliant, hostname COLLATE NOCASE, id);
CREATE INDEX devices_goos ON devices (goos, hostname COLLATE NOCASE, id);

-- Open intervals by control and status, for the device list's filters.
CREATE INDEX control_states_current ON control_states (control_id, status, device_id) WHERE until_at IS NULL;

-- The policy's device groups each device was in at its latest evaluation.
CREATE TABLE device_groups (
    grp       TEXT NOT NULL,
    device_id TEXT NOT NULL REFERENCES devices (id),
    PRIMARY KEY (grp, device_id)
) WITHOUT ROWID;
CREATE INDEX device_groups_device ON device_groups (device_id);

-- Aggregates: per control and status, the devices whose open interval has
-- that status; control_id '' holds the fleet's ('devices', 'compliant').
CREATE TABLE posture_counts (
    control_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    devices    INTEGER NOT NULL,
    PRIMARY KEY (control_id, status)
) WITHOUT ROWID;
INSERT INTO posture_counts (control_id, status, devices)
    SELECT control_id, status, count(*) FROM control_states WHERE until_at IS NULL GROUP BY control_id, status;
INSERT INTO posture_counts (control_id, status, devices) SELECT '', 'devices', count(*) FROM devices;
INSERT INTO posture_counts (control_id, status, devices) SELECT '', 'compliant', count(*) FROM devices WHERE compliant = 1;

-- The aggregates as they stood at the end of each UTC day (day = Unix days)
-- they changed; a day without a row kept the previous day's counts. The
-- history starts with this migration: earlier days are not reconstructed.
CREATE TABLE posture_daily (
    day        INTEGER NOT NULL,
    control_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    devices    INTEGER NOT NULL,
    PRIMARY KEY (day, control_id, status)
) WITHOUT ROWID;
INSERT INTO posture_daily (day, control_id, status, devices)
    SELECT CAST(strftime('%s', 'now') AS INTEGER) / 86400, control_id, status, devices FROM posture_counts WHERE devices <> 0;
