-- Accounting guards. `usage_flag` says when an upstream's usage report was not believable and
-- an estimate replaced it. The check refuses an event whose counts or cost are out of any
-- plausible range (a bug upstream of the ledger), so it is quarantined instead of stalling the
-- ledger or overflowing its rollups; `usage_quarantine` keeps such events whole.
ALTER TABLE usage_events ADD COLUMN usage_flag TEXT;

ALTER TABLE usage_events ADD CONSTRAINT usage_events_in_range CHECK (
    prompt_tokens BETWEEN 0 AND 1000000000000
    AND completion_tokens BETWEEN 0 AND 1000000000000
    AND cached_tokens BETWEEN 0 AND 1000000000000
    AND escalation_prompt_tokens BETWEEN 0 AND 1000000000000
    AND escalation_completion_tokens BETWEEN 0 AND 1000000000000
    AND cost_nanos BETWEEN 0 AND 1000000000000000
    AND escalation_cost_nanos BETWEEN 0 AND 1000000000000000
) NOT VALID;

CREATE TABLE usage_quarantine (
    event_id  TEXT PRIMARY KEY,
    ts_ms     BIGINT NOT NULL,
    error     TEXT NOT NULL,
    event     TEXT NOT NULL
);
