-- Operator API keys: only their SHA-256 is kept.
CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
