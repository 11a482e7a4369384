-- The outbox of notifications (store.Alerts): one row per control turning
-- fail or unknown (written with the transition) or group crossing its
-- threshold, until every webhook has it or delivery gave up (done_at).
-- delivered_to lists the endpoints that accepted it, comma-separated, so a
-- retry goes only to the others.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    control_id   TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL,
    previous     TEXT NOT NULL DEFAULT '',
    reason       TEXT NOT NULL DEFAULT '',
    delivered_to TEXT NOT NULL DEFAULT '',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    done_at      INTEGER,
    last_error   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alerts_due ON alerts (next_at, id) WHERE done_at IS NULL;
-- Whether each group with a threshold was below it at the last check.
CREATE TABLE alert_marks (
    grp   TEXT PRIMARY KEY,
    below BOOLEAN NOT NULL
);
