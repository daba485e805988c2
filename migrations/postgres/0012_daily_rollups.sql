-- Daily rollups next to the hourly ones, kept in the same transaction as the events: a report
-- over a long range reads whole days here and only the hours at either end from usage_hourly.
CREATE TABLE usage_daily (
    day_ms               BIGINT NOT NULL,
    key_id               TEXT NOT NULL,
    team_id              TEXT NOT NULL,
    model                TEXT NOT NULL,
    requests             BIGINT NOT NULL,
    errors               BIGINT NOT NULL,
    prompt_tokens        BIGINT NOT NULL,
    completion_tokens    BIGINT NOT NULL,
    cached_tokens        BIGINT NOT NULL,
    cost_nanos           BIGINT NOT NULL,
    cache_hits           BIGINT NOT NULL,
    saved_nanos          BIGINT NOT NULL,
    baseline_nanos       BIGINT NOT NULL,
    estimated_cost_nanos BIGINT NOT NULL,
    PRIMARY KEY (day_ms, key_id, team_id, model)
);
INSERT INTO usage_daily (day_ms, key_id, team_id, model, requests, errors, prompt_tokens, completion_tokens,
                         cached_tokens, cost_nanos, cache_hits, saved_nanos, baseline_nanos, estimated_cost_nanos)
    SELECT hour_ms - (hour_ms % 86400000), key_id, team_id, model, SUM(requests), SUM(errors), SUM(prompt_tokens),
           SUM(completion_tokens), SUM(cached_tokens), SUM(cost_nanos), SUM(cache_hits), SUM(saved_nanos),
           SUM(baseline_nanos), SUM(estimated_cost_nanos)
    FROM usage_hourly GROUP BY hour_ms - (hour_ms % 86400000), key_id, team_id, model;

CREATE TABLE usage_daily_mix (
    day_ms BIGINT NOT NULL,
    dim    TEXT NOT NULL,
    label  TEXT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (day_ms, dim, label)
);
INSERT INTO usage_daily_mix (day_ms, dim, label, n)
    SELECT hour_ms - (hour_ms % 86400000), dim, label, SUM(n)
    FROM usage_hourly_mix GROUP BY hour_ms - (hour_ms % 86400000), dim, label;
