-- Accounting guards. `usage_flag` says when an upstream's usage report was not believable and
-- an estimate replaced it. The trigger refuses an event whose counts or cost are out of any
-- plausible range (a bug upstream of the ledger), so it is quarantined instead of stalling the
-- ledger or overflowing its rollups; `usage_quarantine` keeps such events whole.
ALTER TABLE usage_events ADD COLUMN usage_flag TEXT;

CREATE TRIGGER usage_events_in_range BEFORE INSERT ON usage_events
WHEN NEW.prompt_tokens NOT BETWEEN 0 AND 1000000000000
  OR NEW.completion_tokens NOT BETWEEN 0 AND 1000000000000
  OR NEW.cached_tokens NOT BETWEEN 0 AND 1000000000000
  OR NEW.escalation_prompt_tokens NOT BETWEEN 0 AND 1000000000000
  OR NEW.escalation_completion_tokens NOT BETWEEN 0 AND 1000000000000
  OR NEW.cost_nanos NOT BETWEEN 0 AND 1000000000000000
  OR NEW.escalation_cost_nanos NOT BETWEEN 0 AND 1000000000000000
BEGIN
    SELECT RAISE(ABORT, 'usage event out of range');
END;

CREATE TABLE usage_quarantine (
    event_id  TEXT PRIMARY KEY,
    ts_ms     BIGINT NOT NULL,
    error     TEXT NOT NULL,
    event     TEXT NOT NULL
);
