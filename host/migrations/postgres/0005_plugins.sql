-- Uploaded plugin components, by `name@version` and sha256; at most one active per reference
-- (the one plans naming that reference run).
CREATE TABLE plugins (
    reference TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    component BYTEA NOT NULL,
    description TEXT NOT NULL,
    kinds TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    active BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (reference, sha256)
);
