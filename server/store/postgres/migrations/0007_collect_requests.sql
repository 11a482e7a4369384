-- Requests for a device to collect now (CLI, web, API). Whichever replica
-- holds the device's stream claims one (sent_at) and sends it; requests are
-- kept as a record of who asked when.
CREATE TABLE collect_requests (
    id           BIGSERIAL PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES devices (id),
    collectors   TEXT NOT NULL DEFAULT '',
    requested_at BIGINT NOT NULL,
    requested_by TEXT NOT NULL,
    sent_at      BIGINT
);
CREATE INDEX collect_requests_pending ON collect_requests (requested_at) WHERE sent_at IS NULL;
