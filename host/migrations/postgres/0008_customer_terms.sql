-- Net terms of one customer (`PUT /v1/customers/{id}/collection`), over their plan's: an
-- invoice issued to them is due after these days. A customer without a row takes the plan's.
CREATE TABLE customer_terms (
    customer_id TEXT PRIMARY KEY REFERENCES customers (id),
    net_days BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
