-- The response cache: whether the cache answered (`hit`, `semantic_hit`) or not (`miss`,
-- `bypass`), the entry a hit came from, and what it saved. Rollups count hits and savings so
-- reports need not scan events.
ALTER TABLE usage_events ADD COLUMN cache TEXT;
ALTER TABLE usage_events ADD COLUMN cache_entry TEXT;
ALTER TABLE usage_events ADD COLUMN cache_saved_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN cache_hits BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN saved_nanos BIGINT NOT NULL DEFAULT 0;

ALTER TABLE usage_events ADD CONSTRAINT usage_events_saved_in_range CHECK (
    cache_saved_nanos BETWEEN 0 AND 1000000000000000
) NOT VALID;
