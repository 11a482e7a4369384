-- Waivers (approved exceptions) and the device inventory an auditor
-- reconciles the fleet against. Times are Unix nanoseconds, UTC.

-- A waiver applies to one device, for one control (control_id '' = every
-- control), in [starts_at, min(expires_at, revoked_at)). Never deleted.
CREATE TABLE waivers (
    id         TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES devices (id),
    control_id TEXT NOT NULL DEFAULT '',
    reason     TEXT NOT NULL,
    approver   TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    starts_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    CHECK (expires_at > starts_at)
);
CREATE INDEX waivers_range ON waivers (starts_at, expires_at);

-- Every import of the inventory, newest last.
CREATE TABLE inventory_imports (
    id          INTEGER PRIMARY KEY,
    imported_at INTEGER NOT NULL,
    source      TEXT NOT NULL DEFAULT '',
    filename    TEXT NOT NULL DEFAULT '',
    row_count   INTEGER NOT NULL,
    sha256      TEXT NOT NULL
);

-- The rows of the newest import only: an import replaces them all in one
-- transaction.
CREATE TABLE inventory (
    import_id     INTEGER NOT NULL REFERENCES inventory_imports (id),
    line          INTEGER NOT NULL,
    serial_number TEXT NOT NULL DEFAULT '',
    hostname      TEXT NOT NULL DEFAULT '',
    owner         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (import_id, line)
) WITHOUT ROWID;
