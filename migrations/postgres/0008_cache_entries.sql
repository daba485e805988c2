-- Response-cache entries kept across restarts (`cache.persist`): the exact tier's key, the
-- answer and what the semantic tier needs to index its question again (its group, the question,
-- and its vector as base64 little-endian f32 with the embedder that made it). Expired rows are deleted
-- by the writer.
CREATE TABLE cache_entries (
    key               TEXT PRIMARY KEY,
    id                TEXT NOT NULL,
    scope             TEXT NOT NULL,
    target            TEXT NOT NULL,
    model             TEXT NOT NULL,
    body              TEXT NOT NULL,
    cost_nanos        BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    tool_calls        BIGINT NOT NULL,
    created_ms        BIGINT NOT NULL,
    expires_ms        BIGINT NOT NULL,
    context_group     TEXT,
    question          TEXT,
    embedder          TEXT,
    vector            TEXT
);
CREATE INDEX cache_entries_expires ON cache_entries (expires_ms);
