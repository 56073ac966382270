-- Collect: what happens to a final invoice after it is issued (see docs/collect.md). The
-- invoice's own row and body never change; its state, due date and ledger live here. Amounts
-- are decimal strings in the invoice's currency, at most its minor units; instants are Unix
-- milliseconds.

-- Net terms and dunning per plan id (any version): server-side collection settings, not part
-- of the engine's plan. A plan without a row: net 30, no dunning.
CREATE TABLE collection_settings (
    plan_id TEXT PRIMARY KEY,
    net_days BIGINT NOT NULL,
    -- JSON array of `{"after_days": N, "action": "remind" | "mark_uncollectible"}`.
    dunning TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per final invoice, made when it is issued: its state and the terms it was issued
-- under (kept: a later change of the plan's settings applies to later invoices).
CREATE TABLE invoice_collection (
    invoice_number BIGINT PRIMARY KEY REFERENCES invoices (number),
    customer_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    minor_units BIGINT NOT NULL,
    -- The invoice's total (already net of the account credit the engine applied).
    total TEXT NOT NULL,
    -- The customer's account credit the engine applied to this invoice (part of its body).
    credit_applied TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'paid', 'void', 'uncollectible')),
    issued_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    net_days BIGINT NOT NULL,
    dunning TEXT NOT NULL
);
CREATE INDEX invoice_collection_by_state ON invoice_collection (state, due_at);
CREATE INDEX invoice_collection_by_customer ON invoice_collection (customer_id);

-- Every change of an invoice's state, in order: when, by whom (`operator:<key label>`,
-- `system`, `provider`) and why.
CREATE TABLE invoice_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_number BIGINT NOT NULL REFERENCES invoices (number),
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX invoice_transitions_by_invoice ON invoice_transitions (invoice_number, seq);

-- Payments, idempotent by their external reference (the same reference is the same payment).
CREATE TABLE payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_number BIGINT NOT NULL REFERENCES invoices (number),
    customer_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('card', 'bank_transfer', 'digital_wallet')),
    reference TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX payments_by_invoice ON payments (invoice_number, id);

-- Refunds of a payment (never more than it paid); idempotent by reference when one is given.
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payment_id BIGINT NOT NULL REFERENCES payments (id),
    invoice_number BIGINT NOT NULL REFERENCES invoices (number),
    amount TEXT NOT NULL,
    reference TEXT UNIQUE,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX refunds_by_invoice ON refunds (invoice_number, id);

-- Credit notes: their own sequence of numbers, without gaps.
CREATE TABLE credit_notes (
    number BIGINT PRIMARY KEY,
    invoice_number BIGINT NOT NULL REFERENCES invoices (number),
    customer_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX credit_notes_by_invoice ON credit_notes (invoice_number, number);

-- Charges through the payment provider, whatever their outcome (`succeeded`, `failed`,
-- `timed_out`): an audit trail; a success is also a payment.
CREATE TABLE charge_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_number BIGINT NOT NULL REFERENCES invoices (number),
    idempotency_key TEXT NOT NULL,
    amount TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);

-- Dunning steps run, once each: the key that makes the step runner idempotent.
CREATE TABLE dunning_steps (
    invoice_number BIGINT NOT NULL REFERENCES invoices (number),
    step BIGINT NOT NULL,
    action TEXT NOT NULL,
    ran_at BIGINT NOT NULL,
    PRIMARY KEY (invoice_number, step)
);

-- Messages for a mailer, each produced once (`dedupe_key`) and delivered until acknowledged:
-- a claim leases a message until `lease_until`; `claims` counts claims, and an ack names the
-- claim it answers.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    invoice_number BIGINT,
    customer_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    claims BIGINT NOT NULL DEFAULT 0,
    lease_until BIGINT,
    acked_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (acked_at, id);
