// Collect: the store's methods for invoice states, payments, refunds, credit notes, dunning
// and the outbox (tables of `0006_collect.sql`, one file per database). Each body is written
// once for both databases with the store's `reads!`, `writes!` and `in_tx!` macros; helpers
// shared by several bodies are macros too (`books_of!`, `apply_write!`, …), expanded on each
// database's connection. Portable SQL only (`$N` placeholders, `ON CONFLICT`, `RETURNING`),
// amounts as decimal text; every read-then-write runs in one serialized transaction, whose
// decision is a pure function of `server::collect`.

use rust_decimal::Decimal;
use sqlx::SqliteConnection;
use sqlx::postgres::PgConnection;

use super::{Announced, CHANGES_CHANNEL, Db, Store, StoreError, StoredInvoice, WRITE_LOCK};
use crate::server::collect::{
    Book, Change, CollectionSettings, CreditNote, DueStep, DunningAction, InvoiceCollection,
    InvoiceState, Payment, PaymentMethod, Refund, Refusal, Snapshot, Transition, Write,
};

/// A message of the outbox (see the `outbox` table).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct OutboxMessage {
    pub id: i64,
    /// `invoice.reminder`, `invoice.uncollectible`.
    pub kind: String,
    pub invoice: Option<i64>,
    pub customer_id: String,
    /// The message's data (JSON).
    #[schemars(with = "serde_json::Value")]
    pub payload: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
    /// How many times it was claimed; an ack names the claim it answers.
    pub claims: i64,
    /// Unix milliseconds: until then no one else gets it.
    pub lease_until: Option<i64>,
    pub acked_at: Option<i64>,
}

/// What an ack came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Acknowledged now, or already (the same claim acking again).
    Acked,
    /// No such message.
    NotFound,
    /// The message was claimed again since (the lease given had expired): the newer claim
    /// acks it.
    Stale { claims: i64 },
}

/// What a change did: the ids of the rows it wrote, in the order of its writes (payment and
/// refund ids, credit note numbers, transition sequence numbers), or the existing id it
/// repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub ids: Vec<i64>,
    pub existing: Option<i64>,
}

/// What a change is about: an invoice, or a payment (a refund: its invoice).
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Invoice(i64),
    Payment(i64),
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError(sqlx::Error::Decode(
        format!("stored {what}: {detail}").into(),
    ))
}

fn decimal(text: &str, what: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str_exact(text).map_err(|e| corrupt(what, format!("`{text}`: {e}")))
}

fn state(text: &str) -> Result<InvoiceState, StoreError> {
    InvoiceState::parse(text).ok_or_else(|| corrupt("state", text))
}

fn small(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|e| corrupt(what, e))
}

/// A row of `collection_settings`.
#[derive(sqlx::FromRow)]
struct SettingsRow {
    net_days: i64,
    dunning: String,
}

/// A row of `invoice_collection`.
#[derive(sqlx::FromRow)]
struct CollectionRow {
    invoice_number: i64,
    customer_id: String,
    currency: String,
    minor_units: i64,
    total: String,
    credit_applied: String,
    state: String,
    issued_at: i64,
    due_at: i64,
    net_days: i64,
    dunning: String,
}

impl TryFrom<CollectionRow> for InvoiceCollection {
    type Error = StoreError;

    fn try_from(row: CollectionRow) -> Result<Self, StoreError> {
        Ok(InvoiceCollection {
            number: row.invoice_number,
            customer_id: row.customer_id,
            currency: row.currency,
            minor_units: small(row.minor_units, "minor_units")?,
            total: decimal(&row.total, "total")?,
            credit_applied: decimal(&row.credit_applied, "credit_applied")?,
            state: state(&row.state)?,
            issued_at: row.issued_at,
            due_at: row.due_at,
            net_days: small(row.net_days, "net_days")?,
            dunning: serde_json::from_str(&row.dunning).map_err(|e| corrupt("dunning", e))?,
        })
    }
}

/// A row of `payments`.
#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: i64,
    invoice_number: i64,
    amount: String,
    method: String,
    reference: String,
    actor: String,
    created_at: i64,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;

    fn try_from(row: PaymentRow) -> Result<Self, StoreError> {
        Ok(Payment {
            id: row.id,
            invoice_number: row.invoice_number,
            amount: decimal(&row.amount, "payment amount")?,
            method: PaymentMethod::parse(&row.method)
                .ok_or_else(|| corrupt("method", &row.method))?,
            reference: row.reference,
            actor: row.actor,
            at: row.created_at,
        })
    }
}

/// A row of `refunds`.
#[derive(sqlx::FromRow)]
struct RefundRow {
    id: i64,
    payment_id: i64,
    invoice_number: i64,
    amount: String,
    reference: Option<String>,
    actor: String,
    created_at: i64,
}

impl TryFrom<RefundRow> for Refund {
    type Error = StoreError;

    fn try_from(row: RefundRow) -> Result<Self, StoreError> {
        Ok(Refund {
            id: row.id,
            payment_id: row.payment_id,
            invoice_number: row.invoice_number,
            amount: decimal(&row.amount, "refund amount")?,
            reference: row.reference,
            actor: row.actor,
            at: row.created_at,
        })
    }
}

/// A row of `credit_notes`.
#[derive(sqlx::FromRow)]
struct CreditNoteRow {
    number: i64,
    invoice_number: i64,
    amount: String,
    reason: String,
    actor: String,
    created_at: i64,
}

impl TryFrom<CreditNoteRow> for CreditNote {
    type Error = StoreError;

    fn try_from(row: CreditNoteRow) -> Result<Self, StoreError> {
        Ok(CreditNote {
            number: row.number,
            invoice_number: row.invoice_number,
            amount: decimal(&row.amount, "credit note amount")?,
            reason: row.reason,
            actor: row.actor,
            at: row.created_at,
        })
    }
}

/// A row of `invoice_transitions`.
#[derive(sqlx::FromRow)]
struct TransitionRow {
    invoice_number: i64,
    from_state: String,
    to_state: String,
    at: i64,
    actor: String,
    reason: String,
}

/// A row of `outbox`.
#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    kind: String,
    invoice_number: Option<i64>,
    customer_id: String,
    payload: String,
    created_at: i64,
    claims: i64,
    lease_until: Option<i64>,
    acked_at: Option<i64>,
}

impl TryFrom<OutboxRow> for OutboxMessage {
    type Error = StoreError;

    fn try_from(row: OutboxRow) -> Result<Self, StoreError> {
        Ok(OutboxMessage {
            id: row.id,
            kind: row.kind,
            invoice: row.invoice_number,
            customer_id: row.customer_id,
            payload: serde_json::from_str(&row.payload)
                .map_err(|e| corrupt("outbox payload", e))?,
            created_at: row.created_at,
            claims: row.claims,
            lease_until: row.lease_until,
            acked_at: row.acked_at,
        })
    }
}

/// A row of `invoices` without a collection row yet.
#[derive(sqlx::FromRow)]
struct UnopenedRow {
    number: i64,
    customer_id: String,
    period_start: i64,
    period_end: i64,
    body: String,
    plan_id: String,
    plan_version: i64,
    finalized_at: i64,
}

const PAYMENT_COLUMNS: &str = "id, invoice_number, amount, method, reference, actor, created_at";
const REFUND_COLUMNS: &str = "id, payment_id, invoice_number, amount, reference, actor, created_at";
const OUTBOX_COLUMNS: &str = "id, kind, invoice_number, customer_id, payload, created_at, claims,
     lease_until, acked_at";

/// The customer of invoice `$number`'s collection row, if any, read on `$conn` (a `&mut`
/// connection of either database).
macro_rules! customer_of_invoice {
    ($conn:ident, $number:expr) => {{
        let customer: Option<String> = sqlx::query_scalar(
            "SELECT customer_id FROM invoice_collection WHERE invoice_number = $1",
        )
        .bind($number)
        .fetch_optional(&mut *$conn)
        .await?;
        customer
    }};
}

/// Every book of customer `$customer` (collection rows, then their ledgers and transitions),
/// by invoice number, read on `$conn`.
macro_rules! books_of {
    ($conn:ident, $customer:expr) => {{
        let customer: &str = $customer;
        let rows: Vec<CollectionRow> = sqlx::query_as(
            "SELECT invoice_number, customer_id, currency, minor_units, total, credit_applied,
             state, issued_at, due_at, net_days, dunning FROM invoice_collection
             WHERE customer_id = $1 ORDER BY invoice_number",
        )
        .bind(customer)
        .fetch_all(&mut *$conn)
        .await?;
        let payments: Vec<PaymentRow> = sqlx::query_as(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE customer_id = $1 ORDER BY id"
        ))
        .bind(customer)
        .fetch_all(&mut *$conn)
        .await?;
        let refunds: Vec<RefundRow> = sqlx::query_as(
            "SELECT r.id, r.payment_id, r.invoice_number, r.amount, r.reference, r.actor,
             r.created_at FROM refunds r JOIN payments p ON p.id = r.payment_id
             WHERE p.customer_id = $1 ORDER BY r.id",
        )
        .bind(customer)
        .fetch_all(&mut *$conn)
        .await?;
        let notes: Vec<CreditNoteRow> = sqlx::query_as(
            "SELECT number, invoice_number, amount, reason, actor, created_at FROM credit_notes
             WHERE customer_id = $1 ORDER BY number",
        )
        .bind(customer)
        .fetch_all(&mut *$conn)
        .await?;
        let transitions: Vec<TransitionRow> = sqlx::query_as(
            "SELECT t.invoice_number, t.from_state, t.to_state, t.at, t.actor, t.reason
             FROM invoice_transitions t JOIN invoice_collection c
             ON c.invoice_number = t.invoice_number WHERE c.customer_id = $1 ORDER BY t.seq",
        )
        .bind(customer)
        .fetch_all(&mut *$conn)
        .await?;
        assemble_books(rows, payments, refunds, notes, transitions)?
    }};
}

/// The books of one customer from their rows.
fn assemble_books(
    rows: Vec<CollectionRow>,
    payments: Vec<PaymentRow>,
    refunds: Vec<RefundRow>,
    notes: Vec<CreditNoteRow>,
    transitions: Vec<TransitionRow>,
) -> Result<Vec<Book>, StoreError> {
    let mut books = Vec::with_capacity(rows.len());
    for row in rows {
        books.push(Book {
            invoice: InvoiceCollection::try_from(row)?,
            payments: Vec::new(),
            refunds: Vec::new(),
            credit_notes: Vec::new(),
            transitions: Vec::new(),
        });
    }
    let index = |books: &[Book], number: i64| books.iter().position(|b| b.invoice.number == number);
    for row in payments {
        let payment = Payment::try_from(row)?;
        if let Some(idx) = index(&books, payment.invoice_number) {
            books[idx].payments.push(payment);
        }
    }
    for row in refunds {
        let refund = Refund::try_from(row)?;
        if let Some(idx) = index(&books, refund.invoice_number) {
            books[idx].refunds.push(refund);
        }
    }
    for row in notes {
        let note = CreditNote::try_from(row)?;
        if let Some(idx) = index(&books, note.invoice_number) {
            books[idx].credit_notes.push(note);
        }
    }
    for row in transitions {
        let transition = Transition {
            from: state(&row.from_state)?,
            to: state(&row.to_state)?,
            at: row.at,
            actor: row.actor,
            reason: row.reason,
        };
        if let Some(idx) = index(&books, row.invoice_number) {
            books[idx].transitions.push(transition);
        }
    }
    Ok(books)
}

/// Inserts a transition of invoice `$number` on `$conn`: its sequence number.
macro_rules! insert_transition {
    ($conn:ident, $number:expr, $transition:expr) => {{
        let transition: &Transition = $transition;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO invoice_transitions (invoice_number, from_state, to_state, at, actor,
             reason) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        )
        .bind($number)
        .bind(transition.from.as_str())
        .bind(transition.to.as_str())
        .bind(transition.at)
        .bind(&transition.actor)
        .bind(&transition.reason)
        .fetch_one(&mut *$conn)
        .await?;
        seq
    }};
}

/// Does one write to invoice `$number` of `$customer` on `$conn`: the id of the row it wrote.
macro_rules! apply_write {
    ($conn:ident, $number:expr, $customer:expr, $write:expr, $now:expr) => {{
        let (number, customer, now): (i64, &str, i64) = ($number, $customer, $now);
        let id: i64 = match $write {
            Write::Payment {
                amount,
                method,
                reference,
                actor,
            } => {
                sqlx::query_scalar(
                    "INSERT INTO payments (invoice_number, customer_id, amount, method,
                     reference, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     RETURNING id",
                )
                .bind(number)
                .bind(customer)
                .bind(amount.to_string())
                .bind(method.as_str())
                .bind(reference)
                .bind(actor)
                .bind(now)
                .fetch_one(&mut *$conn)
                .await?
            }
            Write::Refund {
                payment_id,
                amount,
                reference,
                actor,
            } => {
                sqlx::query_scalar(
                    "INSERT INTO refunds (payment_id, invoice_number, amount, reference, actor,
                     created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(*payment_id)
                .bind(number)
                .bind(amount.to_string())
                .bind(reference.as_deref())
                .bind(actor)
                .bind(now)
                .fetch_one(&mut *$conn)
                .await?
            }
            Write::CreditNote {
                amount,
                reason,
                actor,
            } => {
                // Numbered inside the (serialized) transaction: consecutive, without gaps.
                let next: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM credit_notes")
                        .fetch_one(&mut *$conn)
                        .await?;
                sqlx::query(
                    "INSERT INTO credit_notes (number, invoice_number, customer_id, amount,
                     reason, actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(next)
                .bind(number)
                .bind(customer)
                .bind(amount.to_string())
                .bind(reason)
                .bind(actor)
                .bind(now)
                .execute(&mut *$conn)
                .await?;
                next
            }
            Write::State {
                from,
                to,
                actor,
                reason,
            } => {
                sqlx::query(
                    "UPDATE invoice_collection SET state = $1
                     WHERE invoice_number = $2 AND state = $3",
                )
                .bind(to.as_str())
                .bind(number)
                .bind(from.as_str())
                .execute(&mut *$conn)
                .await?;
                let transition = Transition {
                    from: *from,
                    to: *to,
                    at: now,
                    actor: actor.clone(),
                    reason: reason.clone(),
                };
                insert_transition!($conn, number, &transition)
            }
        };
        id
    }};
}

impl Store {
    /// The collection settings of plan `plan_id`, if set.
    pub async fn collection_settings(
        &self,
        plan_id: &str,
    ) -> Result<Option<CollectionSettings>, StoreError> {
        let row: Option<SettingsRow> = reads!(self, |pool| sqlx::query_as(
            "SELECT net_days, dunning FROM collection_settings WHERE plan_id = $1"
        )
        .bind(plan_id)
        .fetch_optional(pool)
        .await?);
        row.map(|row| {
            Ok(CollectionSettings {
                net_days: small(row.net_days, "net_days")?,
                dunning: serde_json::from_str(&row.dunning).map_err(|e| corrupt("dunning", e))?,
            })
        })
        .transpose()
    }

    pub async fn put_collection_settings(
        &self,
        plan_id: &str,
        settings: &CollectionSettings,
        now: i64,
    ) -> Result<(), StoreError> {
        let dunning =
            serde_json::to_string(&settings.dunning).map_err(|e| corrupt("dunning", e))?;
        writes!(self, |pool| sqlx::query(
            "INSERT INTO collection_settings (plan_id, net_days, dunning, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (plan_id) DO UPDATE SET net_days = excluded.net_days,
             dunning = excluded.dunning, updated_at = excluded.updated_at",
        )
        .bind(plan_id)
        .bind(i64::from(settings.net_days))
        .bind(&dunning)
        .bind(now)
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    /// The net terms set for `customer_id` alone, if any.
    pub async fn customer_net_days(&self, customer_id: &str) -> Result<Option<u32>, StoreError> {
        let days: Option<i64> = reads!(self, |pool| sqlx::query_scalar(
            "SELECT net_days FROM customer_terms WHERE customer_id = $1"
        )
        .bind(customer_id)
        .fetch_optional(pool)
        .await?);
        days.map(|d| small(d, "net_days")).transpose()
    }

    /// Sets (`Some`) or removes (`None`: back to the plan's) `customer_id`'s own net terms.
    pub async fn put_customer_net_days(
        &self,
        customer_id: &str,
        net_days: Option<u32>,
        now: i64,
    ) -> Result<(), StoreError> {
        match net_days {
            Some(days) => writes!(self, |pool| sqlx::query(
                "INSERT INTO customer_terms (customer_id, net_days, updated_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (customer_id) DO UPDATE SET net_days = excluded.net_days,
                 updated_at = excluded.updated_at",
            )
            .bind(customer_id)
            .bind(i64::from(days))
            .bind(now)
            .execute(pool)
            .await
            .map(drop)?),
            None => writes!(self, |pool| sqlx::query(
                "DELETE FROM customer_terms WHERE customer_id = $1"
            )
            .bind(customer_id)
            .execute(pool)
            .await
            .map(drop)?),
        }
        Ok(())
    }

    /// Final invoices without a collection row yet (just closed, or closed before collection
    /// existed), with their plan version and finalization instant.
    pub async fn invoices_without_collection(
        &self,
    ) -> Result<Vec<(StoredInvoice, (String, i64), i64)>, StoreError> {
        let rows: Vec<UnopenedRow> = reads!(self, |pool| sqlx::query_as(
            "SELECT i.number, i.customer_id, i.period_start, i.period_end, i.body, i.plan_id,
             i.plan_version, i.finalized_at FROM invoices i
             LEFT JOIN invoice_collection c ON c.invoice_number = i.number
             WHERE c.invoice_number IS NULL ORDER BY i.number",
        )
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    StoredInvoice {
                        number: row.number,
                        customer_id: row.customer_id,
                        period_start: row.period_start,
                        period_end: row.period_end,
                        body: row.body,
                    },
                    (row.plan_id, row.plan_version),
                    row.finalized_at,
                )
            })
            .collect())
    }

    /// Stores an invoice's collection row and its first transitions (again: nothing changes).
    pub async fn open_collection(
        &self,
        row: &InvoiceCollection,
        transitions: &[Transition],
    ) -> Result<(), StoreError> {
        let dunning = serde_json::to_string(&row.dunning).map_err(|e| corrupt("dunning", e))?;
        in_tx!(self, None, |conn| {
            let inserted = sqlx::query(
                "INSERT INTO invoice_collection (invoice_number, customer_id, currency,
                 minor_units, total, credit_applied, state, issued_at, due_at, net_days, dunning)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (invoice_number) DO NOTHING",
            )
            .bind(row.number)
            .bind(&row.customer_id)
            .bind(&row.currency)
            .bind(i64::from(row.minor_units))
            .bind(row.total.to_string())
            .bind(row.credit_applied.to_string())
            .bind(row.state.as_str())
            .bind(row.issued_at)
            .bind(row.due_at)
            .bind(i64::from(row.net_days))
            .bind(&dunning)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if inserted == 1 {
                for transition in transitions {
                    insert_transition!(conn, row.number, transition);
                }
            }
            Ok(())
        })
    }

    /// Every book of a customer, by invoice number.
    pub async fn books(&self, customer_id: &str) -> Result<Vec<Book>, StoreError> {
        reads!(self, |pool| {
            let mut connection = pool.acquire().await?;
            let conn = &mut *connection;
            Ok(books_of!(conn, customer_id))
        })
    }

    /// The book of invoice `number`, if it has a collection row.
    pub async fn book(&self, number: i64) -> Result<Option<Book>, StoreError> {
        reads!(self, |pool| {
            let mut connection = pool.acquire().await?;
            let conn = &mut *connection;
            let Some(customer) = customer_of_invoice!(conn, number) else {
                return Ok(None);
            };
            Ok(books_of!(conn, &customer)
                .into_iter()
                .find(|b| b.invoice.number == number))
        })
    }

    /// Invoice numbers with a collection row, by number, of one state and/or customer.
    pub async fn invoice_numbers(
        &self,
        state: Option<InvoiceState>,
        customer_id: Option<&str>,
    ) -> Result<Vec<i64>, StoreError> {
        reads!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT invoice_number FROM invoice_collection
             WHERE (CAST($1 AS TEXT) IS NULL OR state = $1)
             AND (CAST($2 AS TEXT) IS NULL OR customer_id = $2)
             ORDER BY invoice_number",
        )
        .bind(state.map(InvoiceState::as_str))
        .bind(customer_id)
        .fetch_all(pool)
        .await?))
    }

    /// Decides and does one change of an invoice's ledger or state, in one transaction:
    /// `decide` reads the customer's books and what carries the request's references.
    pub async fn change_collection(
        &self,
        target: Target,
        payment_reference: Option<&str>,
        refund_reference: Option<&str>,
        now: i64,
        decide: impl FnOnce(&Snapshot) -> Result<Change, Refusal>,
    ) -> Result<Result<Applied, Refusal>, StoreError> {
        in_tx!(self, None, |conn| {
            let number: Option<i64> = match target {
                Target::Invoice(number) => Some(number),
                Target::Payment(id) => {
                    sqlx::query_scalar("SELECT invoice_number FROM payments WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?
                }
            };
            let customer = match number {
                Some(number) => customer_of_invoice!(conn, number),
                None => None,
            };
            let (Some(number), Some(customer)) = (number, customer) else {
                return Ok(Err(match target {
                    Target::Invoice(n) => Refusal::NotFound {
                        what: "invoice",
                        id: n.to_string(),
                    },
                    Target::Payment(id) => Refusal::NotFound {
                        what: "payment",
                        id: id.to_string(),
                    },
                }));
            };
            let payment_with_reference: Option<PaymentRow> = match payment_reference {
                Some(reference) => {
                    sqlx::query_as(&format!(
                        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE reference = $1"
                    ))
                    .bind(reference)
                    .fetch_optional(&mut *conn)
                    .await?
                }
                None => None,
            };
            let refund_with_reference: Option<RefundRow> = match refund_reference {
                Some(reference) => {
                    sqlx::query_as(&format!(
                        "SELECT {REFUND_COLUMNS} FROM refunds WHERE reference = $1"
                    ))
                    .bind(reference)
                    .fetch_optional(&mut *conn)
                    .await?
                }
                None => None,
            };
            let snapshot = Snapshot {
                books: books_of!(conn, &customer),
                number,
                payment_with_reference: payment_with_reference
                    .map(Payment::try_from)
                    .transpose()?,
                refund_with_reference: refund_with_reference.map(Refund::try_from).transpose()?,
            };
            let writes = match decide(&snapshot) {
                Ok(Change::Writes(writes)) => writes,
                Ok(Change::Existing(id)) => {
                    return Ok(Ok(Applied {
                        ids: Vec::new(),
                        existing: Some(id),
                    }));
                }
                Err(refusal) => return Ok(Err(refusal)),
            };
            let mut ids = Vec::with_capacity(writes.len());
            for write in &writes {
                ids.push(apply_write!(conn, number, &customer, write, now));
            }
            Ok(Ok(Applied {
                ids,
                existing: None,
            }))
        })
    }

    /// Records a charge through the payment provider, whatever came of it.
    pub async fn add_charge_attempt(
        &self,
        number: i64,
        idempotency_key: &str,
        amount: Decimal,
        outcome: &str,
        detail: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        writes!(self, |pool| sqlx::query(
            "INSERT INTO charge_attempts (invoice_number, idempotency_key, amount, outcome,
             detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(number)
        .bind(idempotency_key)
        .bind(amount.to_string())
        .bind(outcome)
        .bind(detail)
        .bind(now)
        .execute(pool)
        .await
        .map(drop)?);
        Ok(())
    }

    /// Open invoices due before `now`: the ones dunning looks at.
    pub async fn overdue(&self, now: i64) -> Result<Vec<i64>, StoreError> {
        reads!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT invoice_number FROM invoice_collection WHERE state = 'open' AND due_at < $1
             ORDER BY invoice_number",
        )
        .bind(now)
        .fetch_all(pool)
        .await?))
    }

    /// Runs the dunning steps of invoice `number` that `decide` finds due, in one
    /// transaction: each step's row (its unique `(invoice, step)` key: a step runs once),
    /// its outbox message and, for `mark_uncollectible`, the state change. The steps run.
    pub async fn run_dunning(
        &self,
        number: i64,
        now: i64,
        decide: impl FnOnce(&Book, &[i64]) -> Vec<(DueStep, serde_json::Value)>,
    ) -> Result<Vec<DueStep>, StoreError> {
        in_tx!(self, None, |conn| {
            let Some(customer) = customer_of_invoice!(conn, number) else {
                return Ok(Vec::new());
            };
            let books = books_of!(conn, &customer);
            let Some(book) = books.iter().find(|b| b.invoice.number == number) else {
                return Ok(Vec::new());
            };
            let done: Vec<i64> =
                sqlx::query_scalar("SELECT step FROM dunning_steps WHERE invoice_number = $1")
                    .bind(number)
                    .fetch_all(&mut *conn)
                    .await?;
            let mut ran = Vec::new();
            for (step, payload) in decide(book, &done) {
                let inserted = sqlx::query(
                    "INSERT INTO dunning_steps (invoice_number, step, action, ran_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (invoice_number, step) DO NOTHING",
                )
                .bind(number)
                .bind(step.step as i64)
                .bind(step.action.as_str())
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if inserted == 0 {
                    continue;
                }
                let kind = match step.action {
                    DunningAction::Remind => "invoice.reminder",
                    DunningAction::MarkUncollectible => "invoice.uncollectible",
                };
                sqlx::query(
                    "INSERT INTO outbox (dedupe_key, kind, invoice_number, customer_id, payload,
                     created_at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (dedupe_key) DO NOTHING",
                )
                .bind(format!("dunning:{number}:{}", step.step))
                .bind(kind)
                .bind(number)
                .bind(&customer)
                .bind(payload.to_string())
                .bind(now)
                .execute(&mut *conn)
                .await?;
                if step.action == DunningAction::MarkUncollectible {
                    let write = Write::State {
                        from: InvoiceState::Open,
                        to: InvoiceState::Uncollectible,
                        actor: "system".to_owned(),
                        reason: format!(
                            "dunning step {}: {} days overdue",
                            step.step + 1,
                            step.days_overdue
                        ),
                    };
                    apply_write!(conn, number, &customer, &write, now);
                }
                ran.push(step);
            }
            Ok(ran)
        })
    }

    /// Messages not acknowledged yet, by id (`all`: acknowledged ones too).
    pub async fn outbox(&self, all: bool, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows: Vec<OutboxRow> = reads!(self, |pool| sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox
             WHERE (CAST($1 AS BIGINT) = 1 OR acked_at IS NULL) ORDER BY id LIMIT $2"
        ))
        .bind(i64::from(all))
        .bind(limit)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(OutboxMessage::try_from).collect()
    }

    /// Claims up to `limit` messages not acknowledged and not leased (or whose lease ended),
    /// by id: each is leased until `now + lease_ms` and its claim counted.
    pub async fn claim_outbox(
        &self,
        now: i64,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        in_tx!(self, None, |conn| {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM outbox WHERE acked_at IS NULL
                 AND (lease_until IS NULL OR lease_until <= $1) ORDER BY id LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                let row: OutboxRow = sqlx::query_as(&format!(
                    "UPDATE outbox SET claims = claims + 1, lease_until = $1 WHERE id = $2
                     RETURNING {OUTBOX_COLUMNS}"
                ))
                .bind(now.saturating_add(lease_ms))
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                claimed.push(OutboxMessage::try_from(row)?);
            }
            Ok(claimed)
        })
    }

    /// Acknowledges message `id` as delivered by claim number `claim`.
    pub async fn ack_outbox(&self, id: i64, claim: i64, now: i64) -> Result<Ack, StoreError> {
        in_tx!(self, None, |conn| {
            let row: Option<(i64, Option<i64>)> =
                sqlx::query_as("SELECT claims, acked_at FROM outbox WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let Some((claims, acked_at)) = row else {
                return Ok(Ack::NotFound);
            };
            if acked_at.is_some() {
                return Ok(Ack::Acked);
            }
            if claims != claim {
                return Ok(Ack::Stale { claims });
            }
            sqlx::query("UPDATE outbox SET acked_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            Ok(Ack::Acked)
        })
    }

    /// The invoice payment `id` was made on.
    pub async fn payment_invoice(&self, id: i64) -> Result<Option<i64>, StoreError> {
        reads!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT invoice_number FROM payments WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await?))
    }

    /// The label of the operator key with this hash.
    pub async fn key_label(&self, hash: &str) -> Result<Option<String>, StoreError> {
        reads!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT label FROM api_keys WHERE hash = $1"
        )
        .bind(hash)
        .fetch_optional(pool)
        .await?))
    }
}
