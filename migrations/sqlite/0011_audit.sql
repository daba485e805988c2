-- The audit log: every change made through the admin API (directly, by the CLI, or by the
-- dashboard, which calls it), with who made it, through what, from where, and what it was.
CREATE TABLE audit_log (
    id       TEXT PRIMARY KEY,
    ts_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    via      TEXT NOT NULL,
    address  TEXT,
    action   TEXT NOT NULL,
    target   TEXT,
    method   TEXT NOT NULL,
    path     TEXT NOT NULL,
    status   BIGINT NOT NULL,
    detail   TEXT
);
CREATE INDEX audit_log_ts ON audit_log(ts_ms);
