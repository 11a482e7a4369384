-- Changes to the read model's aggregates, one row per evaluation or
-- enrollment that moved one: writers insert here instead of updating the
-- shared posture_counts rows, and the store folds them into posture_counts
-- and posture_daily every second. Readers add the rows not yet folded.
-- day is the UTC day (Unix days) of the change.
CREATE TABLE posture_deltas (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    day        INTEGER NOT NULL,
    control_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    delta      INTEGER NOT NULL
);
