-- Ratecard's store, version 1. Amounts and plans are JSON text written by the engine; instants
-- are Unix milliseconds.

-- Plan versions are immutable: a change is a new version.
CREATE TABLE plans (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);

-- A customer: the engine's CustomerSetup (timezone, subscription, credits, attributes, carry-in)
-- and the plan version they are subscribed to.
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    setup TEXT NOT NULL,
    plan_id TEXT,
    plan_version INTEGER,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (plan_id, plan_version) REFERENCES plans (id, version)
);

-- Events, idempotent by (customer, id): the row is the dedupe mark, written in the same
-- transaction as the event, so an id is never seen without its event. `seq` is the order of
-- arrival, the order events are rated in.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    body TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (customer_id, event_id)
);
CREATE INDEX events_by_customer_time ON events (customer_id, ts);

-- Final invoices: one per customer and period, numbered without gaps, immutable.
CREATE TABLE invoices (
    number INTEGER PRIMARY KEY,
    customer_id TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    plan_id TEXT NOT NULL,
    plan_version INTEGER NOT NULL,
    total TEXT NOT NULL,
    body TEXT NOT NULL,
    finalized_at INTEGER NOT NULL,
    UNIQUE (customer_id, period_start)
);
