-- Customer portal links: a customer's scoped, expiring, revocable token. Only the token's
-- SHA-256 is kept; `id` names the link for listing and revoking (it opens nothing). Instants
-- are Unix milliseconds; `revoked_at` is NULL while the link is not revoked.
CREATE TABLE portal_links (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX portal_links_by_customer ON portal_links (customer_id, created_at);
-- The portal lists one customer's invoices and opens one by (customer, number).
CREATE INDEX invoices_by_customer ON invoices (customer_id, number);
