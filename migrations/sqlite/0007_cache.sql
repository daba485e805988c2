-- The response cache: whether the cache answered (`hit`, `semantic_hit`) or not (`miss`,
-- `bypass`), the entry a hit came from, and what it saved. Rollups count hits and savings so
-- reports need not scan events.
ALTER TABLE usage_events ADD COLUMN cache TEXT;
ALTER TABLE usage_events ADD COLUMN cache_entry TEXT;
ALTER TABLE usage_events ADD COLUMN cache_saved_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN cache_hits BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN saved_nanos BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER usage_events_saved_in_range BEFORE INSERT ON usage_events
WHEN NEW.cache_saved_nanos NOT BETWEEN 0 AND 1000000000000000
BEGIN
    SELECT RAISE(ABORT, 'usage event out of range');
END;
