-- Leases (store.Leases): which of several server replicas sharing a store
-- does the periodic work. Times are Unix nanoseconds, UTC.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
