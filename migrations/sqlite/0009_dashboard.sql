-- The dashboard's users and sessions. A user signs in with a password (stored as an Argon2id
-- hash) and is an admin (may change everything) or a viewer (reads only). A session is kept as
-- the SHA-256 of its cookie's secret, with the anti-forgery token its forms send back.
CREATE TABLE admin_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);
CREATE TABLE ui_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_name  TEXT NOT NULL,
    role       TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_ms);
