-- What the overview and routing pages read without scanning events.
--
-- Each event keeps its routing tier, the intent the router saw and the decision's reason, and
-- its baseline: what it would have cost sent to its route's strong model with no cache (for a
-- request no route chose, what it cost plus what the cache saved). Rollups add the baseline and
-- the cost of events whose usage was estimated rather than reported.
ALTER TABLE usage_events ADD COLUMN tier TEXT;
ALTER TABLE usage_events ADD COLUMN intent TEXT;
ALTER TABLE usage_events ADD COLUMN route_reason TEXT;
ALTER TABLE usage_events ADD COLUMN baseline_cost_nanos BIGINT NOT NULL DEFAULT 0;
UPDATE usage_events SET baseline_cost_nanos = cost_nanos + cache_saved_nanos;

CREATE TRIGGER usage_events_baseline_in_range BEFORE INSERT ON usage_events
WHEN NEW.baseline_cost_nanos NOT BETWEEN 0 AND 1000000000000000
BEGIN
    SELECT RAISE(ABORT, 'usage event out of range');
END;

ALTER TABLE usage_hourly ADD COLUMN baseline_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN estimated_cost_nanos BIGINT NOT NULL DEFAULT 0;
UPDATE usage_hourly SET baseline_nanos = cost_nanos + saved_nanos;
UPDATE usage_hourly SET estimated_cost_nanos = (
    SELECT COALESCE(SUM(e.cost_nanos), 0) FROM usage_events e
    WHERE e.usage_source = 'estimated'
      AND e.ts_ms - (e.ts_ms % 3600000) = usage_hourly.hour_ms
      AND COALESCE(e.key_id, '') = usage_hourly.key_id
      AND COALESCE(e.team_id, '') = usage_hourly.team_id
      AND e.model = usage_hourly.model
);

-- Counts per hour of one dimension's labels: `latency` and `ttft` (label: a histogram
-- bucket's lower bound in milliseconds), `error` (the error kind), `tier` and `intent`.
CREATE TABLE usage_hourly_mix (
    hour_ms BIGINT NOT NULL,
    dim     TEXT NOT NULL,
    label   TEXT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, dim, label)
);
INSERT INTO usage_hourly_mix (hour_ms, dim, label, n)
    SELECT ts_ms - (ts_ms % 3600000), 'error', COALESCE(error_kind, outcome), COUNT(*)
    FROM usage_events WHERE outcome <> 'success'
    GROUP BY ts_ms - (ts_ms % 3600000), COALESCE(error_kind, outcome);

-- The request log finds a request by the client's `x-request-id`.
CREATE INDEX usage_events_request ON usage_events(request_id);
