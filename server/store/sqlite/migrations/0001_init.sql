CREATE TABLE enroll_secrets (
    id          TEXT PRIMARY KEY,
    hash        BLOB NOT NULL UNIQUE,
    label       TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    single_use  INTEGER NOT NULL DEFAULT 0,
    uses        INTEGER NOT NULL DEFAULT 0,
    revoked_at  INTEGER
);

CREATE TABLE devices (
    id            TEXT PRIMARY KEY,
    hostname      TEXT NOT NULL DEFAULT '',
    goos          TEXT NOT NULL DEFAULT '',
    goarch        TEXT NOT NULL DEFAULT '',
    os_version    TEXT NOT NULL DEFAULT '',
    machine_id    TEXT NOT NULL DEFAULT '',
    serial_number TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    secret_id     TEXT NOT NULL DEFAULT '',
    enrolled_at   INTEGER NOT NULL,
    last_seen_at  INTEGER,
    -- A device enrolling with the machine id of an earlier one is linked to
    -- it (previous_id), never given its identity: the machine id is asserted
    -- by the client, and a new enrollment starts a new seq space.
    previous_id   TEXT NOT NULL DEFAULT '',
    reenrolled    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_machine_id ON devices (machine_id) WHERE machine_id <> '';

-- Append-only evidence. Times are Unix nanoseconds, UTC.
CREATE TABLE observations (
    device_id      TEXT NOT NULL REFERENCES devices (id),
    seq            INTEGER NOT NULL,
    collector      TEXT NOT NULL,
    collected_at   INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    clock_skew     INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL,
    error          TEXT NOT NULL DEFAULT '',
    parser_version INTEGER NOT NULL DEFAULT 0,
    payload        BLOB,
    sources        BLOB,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX observations_collector ON observations (device_id, collector, seq);

-- Newest seq per collector of each device, maintained by ingest, so scoring
-- reads the latest evidence without scanning the device's history.
CREATE TABLE latest_observations (
    device_id TEXT NOT NULL REFERENCES devices (id),
    collector TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    PRIMARY KEY (device_id, collector)
) WITHOUT ROWID;

-- Control states as intervals; until_at NULL while open.
CREATE TABLE control_states (
    id           INTEGER PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    control_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    evidence_seq INTEGER NOT NULL DEFAULT 0,
    evidence     BLOB,
    since_at     INTEGER NOT NULL,
    until_at     INTEGER,
    evaluated_at INTEGER NOT NULL,
    evaluations  INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX control_states_open ON control_states (device_id, control_id) WHERE until_at IS NULL;
CREATE INDEX control_states_range ON control_states (device_id, control_id, since_at);
