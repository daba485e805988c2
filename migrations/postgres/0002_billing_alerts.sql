-- The billing outbox and stored budget alerts.

-- One billing event per usage event, written in the same transaction as the usage event, and
-- delivered to the billing webhook at least once. The event itself is read from usage_events at
-- delivery (so a re-priced event is billed at its corrected cost); `event_id` is its
-- transaction id. A row is claimed by pushing `next_attempt_ms` into the future under a claim
-- token; a claim that is never resolved (a crashed process) simply comes due again. Delivered
-- rows are pruned after a retention period.
CREATE TABLE billing_outbox (
    event_id         TEXT PRIMARY KEY,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL DEFAULT 0,
    claimed_by       TEXT,
    delivered_ms     BIGINT,
    -- Refused for good by the receiver (a validation error); re-queued by an admin.
    rejected_ms      BIGINT,
    last_attempt_ms  BIGINT,
    last_error       TEXT
);
CREATE INDEX billing_outbox_due ON billing_outbox(next_attempt_ms) WHERE delivered_ms IS NULL AND rejected_ms IS NULL;
CREATE INDEX billing_outbox_delivered ON billing_outbox(delivered_ms) WHERE delivered_ms IS NOT NULL;

-- A budget crossing its soft threshold ('soft') or refusing a request ('hard'), once per scope,
-- period and kind.
CREATE TABLE budget_alerts (
    scope          TEXT NOT NULL,
    period_start   BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    ts_ms          BIGINT NOT NULL,
    spent_nanos    BIGINT NOT NULL,
    limit_nanos    BIGINT NOT NULL,
    PRIMARY KEY (scope, period_start, kind)
);
