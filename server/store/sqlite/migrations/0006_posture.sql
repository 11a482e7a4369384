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
-- they changed; a day without a row kept the previous day's counts. The 30
-- days before this migration are rebuilt from the intervals (the fleet
-- page's chart); earlier days are not. Devices are compliant on a day when
-- some interval covers its end and none of those is fail or unknown.
CREATE TABLE posture_daily (
    day        INTEGER NOT NULL,
    control_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    devices    INTEGER NOT NULL,
    PRIMARY KEY (day, control_id, status)
) WITHOUT ROWID;
WITH RECURSIVE days(d) AS (
    SELECT CAST(strftime('%s', 'now') AS INTEGER) / 86400 - 30
    UNION ALL SELECT d + 1 FROM days WHERE d < CAST(strftime('%s', 'now') AS INTEGER) / 86400 - 1
), ends(d, t) AS (
    SELECT d, (d + 1) * 86400000000000 - 1 FROM days
), keys(control_id, status) AS (
    SELECT DISTINCT control_id, status FROM control_states
), covering(d, control_id, status, n) AS (
    SELECT e.d, c.control_id, c.status, count(*) FROM ends e JOIN control_states c
        ON c.since_at <= e.t AND (c.until_at IS NULL OR c.until_at > e.t)
    GROUP BY e.d, c.control_id, c.status
)
INSERT INTO posture_daily (day, control_id, status, devices)
    SELECT e.d, k.control_id, k.status, ifnull(v.n, 0) FROM ends e CROSS JOIN keys k
        LEFT JOIN covering v ON v.d = e.d AND v.control_id = k.control_id AND v.status = k.status
    WHERE EXISTS (SELECT 1 FROM devices WHERE enrolled_at <= e.t);
WITH RECURSIVE days(d) AS (
    SELECT CAST(strftime('%s', 'now') AS INTEGER) / 86400 - 30
    UNION ALL SELECT d + 1 FROM days WHERE d < CAST(strftime('%s', 'now') AS INTEGER) / 86400 - 1
), ends(d, t) AS (
    SELECT d, (d + 1) * 86400000000000 - 1 FROM days
)
INSERT INTO posture_daily (day, control_id, status, devices)
    SELECT e.d, '', 'devices', (SELECT count(*) FROM devices v WHERE v.enrolled_at <= e.t) FROM ends e
    WHERE EXISTS (SELECT 1 FROM devices WHERE enrolled_at <= e.t)
    UNION ALL
    SELECT e.d, '', 'compliant', (SELECT count(*) FROM devices v WHERE v.enrolled_at <= e.t
        AND EXISTS (SELECT 1 FROM control_states c WHERE c.device_id = v.id AND c.since_at <= e.t AND (c.until_at IS NULL OR c.until_at > e.t))
        AND NOT EXISTS (SELECT 1 FROM control_states c WHERE c.device_id = v.id AND c.since_at <= e.t AND (c.until_at IS NULL OR c.until_at > e.t)
                        AND c.status NOT IN ('pass', 'not_applicable'))) FROM ends e
    WHERE EXISTS (SELECT 1 FROM devices WHERE enrolled_at <= e.t);
-- Today: the aggregates now, and zero for what the rebuilt days counted and
-- no open interval has any more.
INSERT INTO posture_daily (day, control_id, status, devices)
    SELECT CAST(strftime('%s', 'now') AS INTEGER) / 86400, control_id, status, devices FROM posture_counts WHERE devices <> 0
    UNION
    SELECT CAST(strftime('%s', 'now') AS INTEGER) / 86400, control_id, status, 0 FROM posture_daily p
    WHERE NOT EXISTS (SELECT 1 FROM posture_counts c WHERE c.control_id = p.control_id AND c.status = p.status AND c.devices <> 0);
