-- Prompt and answer bodies in the request log, stored only where a key, its team or the route
-- opts in (store_bodies); written in the same transaction as the request's usage event.
ALTER TABLE api_keys ADD COLUMN store_bodies BIGINT NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN store_bodies BIGINT NOT NULL DEFAULT 0;
CREATE TABLE request_bodies (
    event_id           TEXT PRIMARY KEY,
    ts_ms              BIGINT NOT NULL,
    request            TEXT NOT NULL,
    response           TEXT NOT NULL,
    request_truncated  BIGINT NOT NULL,
    response_truncated BIGINT NOT NULL,
    redactions         BIGINT NOT NULL
);
CREATE INDEX request_bodies_ts ON request_bodies(ts_ms);
