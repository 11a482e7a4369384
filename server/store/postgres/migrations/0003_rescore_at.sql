-- When each device's recorded evaluation can next change with time alone
-- (evidence going stale, a grace period ending), in Unix nanoseconds: the
-- periodic rescore evaluates only the devices whose time has come instead
-- of the whole fleet. 0: at every periodic rescore (what every device was
-- before this migration).
ALTER TABLE devices ADD COLUMN rescore_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_rescore_at ON devices (rescore_at);
