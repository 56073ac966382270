-- A subscription's changes, in order: a move to another plan version at an instant (the period
-- holding it is rated by each plan for its part), or a cancellation from an instant on (no
-- period starting at or after it is billed, no event from it on is accepted).
CREATE TABLE subscription_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    kind TEXT NOT NULL CHECK (kind IN ('plan', 'cancel')),
    at INTEGER NOT NULL,
    from_plan_id TEXT,
    from_plan_version INTEGER,
    to_plan_id TEXT,
    to_plan_version INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX subscription_changes_by_customer ON subscription_changes (customer_id, seq);

-- Ingest asks which customers of a period start are invoiced.
CREATE INDEX invoices_by_period ON invoices (period_start);
