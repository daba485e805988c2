-- Teams, virtual keys, the usage ledger with hourly rollups, and budget spend with leases.
-- Money is integer nanodollars (10^-9 USD); times are milliseconds since 1970 (UTC).

CREATE TABLE teams (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    cost_center     TEXT,
    budget_nanos    BIGINT,
    budget_period   TEXT,
    soft_limit_pct  BIGINT,
    rpm             BIGINT,
    tpm             BIGINT,
    max_concurrent  BIGINT,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    secret_hash     TEXT NOT NULL UNIQUE,
    team_id         TEXT REFERENCES teams(id),
    cost_center     TEXT,
    tags            TEXT NOT NULL DEFAULT '[]',
    allowed_models  TEXT,
    expires_ms      BIGINT,
    status          TEXT NOT NULL,
    budget_nanos    BIGINT,
    budget_period   TEXT,
    soft_limit_pct  BIGINT,
    rpm             BIGINT,
    tpm             BIGINT,
    max_concurrent  BIGINT,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    rotated_ms      BIGINT
);
CREATE INDEX api_keys_team ON api_keys(team_id);

CREATE TABLE usage_events (
    event_id          TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL,
    ts_ms             BIGINT NOT NULL,
    key_id            TEXT,
    team_id           TEXT,
    cost_center       TEXT,
    tags              TEXT,
    route             TEXT,
    endpoint          TEXT NOT NULL,
    model             TEXT NOT NULL,
    deployment        TEXT,
    provider          TEXT,
    stream            BIGINT NOT NULL,
    status            BIGINT NOT NULL,
    outcome           TEXT NOT NULL,
    error_kind        TEXT,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    usage_source      TEXT NOT NULL,
    cost_nanos        BIGINT NOT NULL,
    price_version     TEXT,
    latency_ms        BIGINT NOT NULL,
    ttft_ms           BIGINT,
    attempts          BIGINT NOT NULL,
    request_bytes     BIGINT NOT NULL,
    response_bytes    BIGINT NOT NULL
);
CREATE INDEX usage_events_ts ON usage_events(ts_ms);
CREATE INDEX usage_events_key_ts ON usage_events(key_id, ts_ms);
CREATE INDEX usage_events_team_ts ON usage_events(team_id, ts_ms);

-- One row per hour x key x team x model ('' where there is none), kept in the same transaction
-- as the events it sums, so reports never scan raw events.
CREATE TABLE usage_hourly (
    hour_ms           BIGINT NOT NULL,
    key_id            TEXT NOT NULL,
    team_id           TEXT NOT NULL,
    model             TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    cost_nanos        BIGINT NOT NULL,
    PRIMARY KEY (hour_ms, key_id, team_id, model)
);

-- Settled spend per budget scope ('key:ID' or 'team:ID') and period.
CREATE TABLE budget_spend (
    scope         TEXT NOT NULL,
    period_start  BIGINT NOT NULL,
    spent_nanos   BIGINT NOT NULL,
    PRIMARY KEY (scope, period_start)
);

-- Slices of a budget leased by one gateway process; an expired lease counts for nothing.
CREATE TABLE budget_leases (
    scope         TEXT NOT NULL,
    period_start  BIGINT NOT NULL,
    holder        TEXT NOT NULL,
    amount_nanos  BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    PRIMARY KEY (scope, period_start, holder)
);
