-- Uses of reusable enrollment secrets, one row per enrollment: counting
-- them in the secret's own row made every enrollment of a fleet (one MDM
-- secret) wait for the previous one's commit. The store folds these rows
-- into enroll_secrets.uses every second; readers add the rows not folded.
-- Single-use secrets are still counted in their row, under its lock.
CREATE TABLE enroll_secret_uses (
    id        BIGSERIAL PRIMARY KEY,
    secret_id TEXT NOT NULL,
    uses      INTEGER NOT NULL
);
CREATE INDEX enroll_secret_uses_secret ON enroll_secret_uses (secret_id);
