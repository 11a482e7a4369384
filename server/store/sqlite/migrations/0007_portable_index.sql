-- The last-seen sort index, on the expression the shared SQL (SQLite and
-- PostgreSQL) orders by: coalesce rather than SQLite's ifnull, which an
-- index on ifnull would not serve.
DROP INDEX devices_last_seen;
CREATE INDEX devices_last_seen ON devices (coalesce(last_seen_at, 0), id);
