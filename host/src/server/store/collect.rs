// Collect: the store's methods for invoice states, payments, refunds, credit notes, dunning
// and the outbox (tables of `0006_collect.sql`). Portable SQL only (`$N` placeholders,
// `ON CONFLICT`, `RETURNING`), amounts as decimal text; every read-then-write runs in one
// `immediate` transaction, whose decision is a pure function of `server::collect`.

use rust_decimal::Decimal;
use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError, StoredInvoice, immediate};
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

impl Store {
    /// The collection settings of plan `plan_id`, if set.
    pub async fn collection_settings(
        &self,
        plan_id: &str,
    ) -> Result<Option<CollectionSettings>, StoreError> {
        let row =
            sqlx::query("SELECT net_days, dunning FROM collection_settings WHERE plan_id = $1")
                .bind(plan_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            let net_days: i64 = row.try_get(0)?;
            let dunning: String = row.try_get(1)?;
            Ok(CollectionSettings {
                net_days: u32::try_from(net_days).map_err(|e| corrupt("net_days", e))?,
                dunning: serde_json::from_str(&dunning).map_err(|e| corrupt("dunning", e))?,
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
        sqlx::query(
            "INSERT INTO collection_settings (plan_id, net_days, dunning, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (plan_id) DO UPDATE SET net_days = excluded.net_days,
             dunning = excluded.dunning, updated_at = excluded.updated_at",
        )
        .bind(plan_id)
        .bind(i64::from(settings.net_days))
        .bind(dunning)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Final invoices without a collection row yet (just closed, or closed before collection
    /// existed), with their plan version and finalization instant.
    pub async fn invoices_without_collection(
        &self,
    ) -> Result<Vec<(StoredInvoice, (String, i64), i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.number, i.customer_id, i.period_start, i.period_end, i.body, i.plan_id,
             i.plan_version, i.finalized_at FROM invoices i
             LEFT JOIN invoice_collection c ON c.invoice_number = i.number
             WHERE c.invoice_number IS NULL ORDER BY i.number",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            found.push((
                StoredInvoice {
                    number: row.try_get(0)?,
                    customer_id: row.try_get(1)?,
                    period_start: row.try_get(2)?,
                    period_end: row.try_get(3)?,
                    body: row.try_get(4)?,
                },
                (row.try_get(5)?, row.try_get(6)?),
                row.try_get(7)?,
            ));
        }
        Ok(found)
    }

    /// Stores an invoice's collection row and its first transitions (again: nothing changes).
    pub async fn open_collection(
        &self,
        row: &InvoiceCollection,
        transitions: &[Transition],
    ) -> Result<(), StoreError> {
        let dunning = serde_json::to_string(&row.dunning).map_err(|e| corrupt("dunning", e))?;
        immediate(&self.writer, async |conn| {
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
                    insert_transition(conn, row.number, transition).await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Every book of a customer, by invoice number.
    pub async fn books(&self, customer_id: &str) -> Result<Vec<Book>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        books_of(&mut conn, customer_id).await
    }

    /// The book of invoice `number`, if it has a collection row.
    pub async fn book(&self, number: i64) -> Result<Option<Book>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let Some(customer) = customer_of_invoice(&mut conn, number).await? else {
            return Ok(None);
        };
        Ok(books_of(&mut conn, &customer)
            .await?
            .into_iter()
            .find(|b| b.invoice.number == number))
    }

    /// Invoice numbers with a collection row, by number, of one state and/or customer.
    pub async fn invoice_numbers(
        &self,
        state: Option<InvoiceState>,
        customer_id: Option<&str>,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT invoice_number FROM invoice_collection
             WHERE (CAST($1 AS TEXT) IS NULL OR state = $1)
             AND (CAST($2 AS TEXT) IS NULL OR customer_id = $2)
             ORDER BY invoice_number",
        )
        .bind(state.map(InvoiceState::as_str))
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?)
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
        immediate(&self.writer, async |conn| {
            let number = match target {
                Target::Invoice(number) => Some(number),
                Target::Payment(id) => {
                    sqlx::query_scalar("SELECT invoice_number FROM payments WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *conn)
                        .await?
                }
            };
            let customer = match number {
                Some(number) => customer_of_invoice(conn, number).await?,
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
            let snapshot = Snapshot {
                books: books_of(conn, &customer).await?,
                number,
                payment_with_reference: match payment_reference {
                    Some(reference) => payment_by_reference(conn, reference).await?,
                    None => None,
                },
                refund_with_reference: match refund_reference {
                    Some(reference) => refund_by_reference(conn, reference).await?,
                    None => None,
                },
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
                ids.push(apply(conn, number, &customer, write, now).await?);
            }
            Ok(Ok(Applied {
                ids,
                existing: None,
            }))
        })
        .await
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
        sqlx::query(
            "INSERT INTO charge_attempts (invoice_number, idempotency_key, amount, outcome,
             detail, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(number)
        .bind(idempotency_key)
        .bind(amount.to_string())
        .bind(outcome)
        .bind(detail)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Open invoices due before `now`: the ones dunning looks at.
    pub async fn overdue(&self, now: i64) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT invoice_number FROM invoice_collection WHERE state = 'open' AND due_at < $1
             ORDER BY invoice_number",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
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
        immediate(&self.writer, async |conn| {
            let Some(customer) = customer_of_invoice(conn, number).await? else {
                return Ok(Vec::new());
            };
            let books = books_of(conn, &customer).await?;
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
                    apply(conn, number, &customer, &write, now).await?;
                }
                ran.push(step);
            }
            Ok(ran)
        })
        .await
    }

    /// Messages not acknowledged yet, by id (`all`: acknowledged ones too).
    pub async fn outbox(&self, all: bool, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, invoice_number, customer_id, payload, created_at, claims,
             lease_until, acked_at FROM outbox WHERE (CAST($1 AS BIGINT) = 1 OR acked_at IS NULL)
             ORDER BY id LIMIT $2",
        )
        .bind(i64::from(all))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(outbox_of_row).collect()
    }

    /// Claims up to `limit` messages not acknowledged and not leased (or whose lease ended),
    /// by id: each is leased until `now + lease_ms` and its claim counted.
    pub async fn claim_outbox(
        &self,
        now: i64,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        immediate(&self.writer, async |conn| {
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
                let row = sqlx::query(
                    "UPDATE outbox SET claims = claims + 1, lease_until = $1 WHERE id = $2
                     RETURNING id, kind, invoice_number, customer_id, payload, created_at,
                     claims, lease_until, acked_at",
                )
                .bind(now.saturating_add(lease_ms))
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                claimed.push(outbox_of_row(row)?);
            }
            Ok(claimed)
        })
        .await
    }

    /// Acknowledges message `id` as delivered by claim number `claim`.
    pub async fn ack_outbox(&self, id: i64, claim: i64, now: i64) -> Result<Ack, StoreError> {
        immediate(&self.writer, async |conn| {
            let row = sqlx::query("SELECT claims, acked_at FROM outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            let Some(row) = row else {
                return Ok(Ack::NotFound);
            };
            let claims: i64 = row.try_get(0)?;
            let acked_at: Option<i64> = row.try_get(1)?;
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
        .await
    }

    /// The invoice payment `id` was made on.
    pub async fn payment_invoice(&self, id: i64) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT invoice_number FROM payments WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The label of the operator key with this hash.
    pub async fn key_label(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT label FROM api_keys WHERE hash = $1")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

async fn customer_of_invoice(
    conn: &mut SqliteConnection,
    number: i64,
) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT customer_id FROM invoice_collection WHERE invoice_number = $1")
            .bind(number)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Does one write: the id of the row it wrote.
async fn apply(
    conn: &mut SqliteConnection,
    number: i64,
    customer: &str,
    write: &Write,
    now: i64,
) -> Result<i64, StoreError> {
    Ok(match write {
        Write::Payment {
            amount,
            method,
            reference,
            actor,
        } => {
            sqlx::query_scalar(
                "INSERT INTO payments (invoice_number, customer_id, amount, method, reference,
                 actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(number)
            .bind(customer)
            .bind(amount.to_string())
            .bind(method.as_str())
            .bind(reference)
            .bind(actor)
            .bind(now)
            .fetch_one(&mut *conn)
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
            .bind(payment_id)
            .bind(number)
            .bind(amount.to_string())
            .bind(reference.as_deref())
            .bind(actor)
            .bind(now)
            .fetch_one(&mut *conn)
            .await?
        }
        Write::CreditNote {
            amount,
            reason,
            actor,
        } => {
            // Numbered inside the transaction: consecutive, without gaps.
            let next: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM credit_notes")
                    .fetch_one(&mut *conn)
                    .await?;
            sqlx::query(
                "INSERT INTO credit_notes (number, invoice_number, customer_id, amount, reason,
                 actor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(next)
            .bind(number)
            .bind(customer)
            .bind(amount.to_string())
            .bind(reason)
            .bind(actor)
            .bind(now)
            .execute(&mut *conn)
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
                "UPDATE invoice_collection SET state = $1 WHERE invoice_number = $2 AND state = $3",
            )
            .bind(to.as_str())
            .bind(number)
            .bind(from.as_str())
            .execute(&mut *conn)
            .await?;
            let transition = Transition {
                from: *from,
                to: *to,
                at: now,
                actor: actor.clone(),
                reason: reason.clone(),
            };
            insert_transition(conn, number, &transition).await?
        }
    })
}

async fn insert_transition(
    conn: &mut SqliteConnection,
    number: i64,
    transition: &Transition,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO invoice_transitions (invoice_number, from_state, to_state, at, actor,
         reason) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
    )
    .bind(number)
    .bind(transition.from.as_str())
    .bind(transition.to.as_str())
    .bind(transition.at)
    .bind(&transition.actor)
    .bind(&transition.reason)
    .fetch_one(&mut *conn)
    .await?)
}

async fn payment_by_reference(
    conn: &mut SqliteConnection,
    reference: &str,
) -> Result<Option<Payment>, StoreError> {
    let row = sqlx::query(
        "SELECT id, invoice_number, amount, method, reference, actor, created_at FROM payments
         WHERE reference = $1",
    )
    .bind(reference)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(payment_of_row).transpose()
}

async fn refund_by_reference(
    conn: &mut SqliteConnection,
    reference: &str,
) -> Result<Option<Refund>, StoreError> {
    let row = sqlx::query(
        "SELECT id, payment_id, invoice_number, amount, reference, actor, created_at FROM refunds
         WHERE reference = $1",
    )
    .bind(reference)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(refund_of_row).transpose()
}

fn payment_of_row(row: sqlx::sqlite::SqliteRow) -> Result<Payment, StoreError> {
    let amount: String = row.try_get(2)?;
    let method: String = row.try_get(3)?;
    Ok(Payment {
        id: row.try_get(0)?,
        invoice_number: row.try_get(1)?,
        amount: decimal(&amount, "payment amount")?,
        method: PaymentMethod::parse(&method).ok_or_else(|| corrupt("method", &method))?,
        reference: row.try_get(4)?,
        actor: row.try_get(5)?,
        at: row.try_get(6)?,
    })
}

fn refund_of_row(row: sqlx::sqlite::SqliteRow) -> Result<Refund, StoreError> {
    let amount: String = row.try_get(3)?;
    Ok(Refund {
        id: row.try_get(0)?,
        payment_id: row.try_get(1)?,
        invoice_number: row.try_get(2)?,
        amount: decimal(&amount, "refund amount")?,
        reference: row.try_get(4)?,
        actor: row.try_get(5)?,
        at: row.try_get(6)?,
    })
}

/// Every book of `customer`: collection rows, then their ledgers and transitions.
async fn books_of(conn: &mut SqliteConnection, customer: &str) -> Result<Vec<Book>, StoreError> {
    let rows = sqlx::query(
        "SELECT invoice_number, customer_id, currency, minor_units, total, credit_applied, state,
         issued_at, due_at, net_days, dunning FROM invoice_collection WHERE customer_id = $1
         ORDER BY invoice_number",
    )
    .bind(customer)
    .fetch_all(&mut *conn)
    .await?;
    let mut books = Vec::with_capacity(rows.len());
    for row in rows {
        let minor_units: i64 = row.try_get(3)?;
        let total: String = row.try_get(4)?;
        let credit_applied: String = row.try_get(5)?;
        let state_text: String = row.try_get(6)?;
        let net_days: i64 = row.try_get(9)?;
        let dunning: String = row.try_get(10)?;
        books.push(Book {
            invoice: InvoiceCollection {
                number: row.try_get(0)?,
                customer_id: row.try_get(1)?,
                currency: row.try_get(2)?,
                minor_units: u32::try_from(minor_units).map_err(|e| corrupt("minor_units", e))?,
                total: decimal(&total, "total")?,
                credit_applied: decimal(&credit_applied, "credit_applied")?,
                state: state(&state_text)?,
                issued_at: row.try_get(7)?,
                due_at: row.try_get(8)?,
                net_days: u32::try_from(net_days).map_err(|e| corrupt("net_days", e))?,
                dunning: serde_json::from_str(&dunning).map_err(|e| corrupt("dunning", e))?,
            },
            payments: Vec::new(),
            refunds: Vec::new(),
            credit_notes: Vec::new(),
            transitions: Vec::new(),
        });
    }
    let index = |books: &[Book], number: i64| books.iter().position(|b| b.invoice.number == number);
    let payments = sqlx::query(
        "SELECT id, invoice_number, amount, method, reference, actor, created_at FROM payments
         WHERE customer_id = $1 ORDER BY id",
    )
    .bind(customer)
    .fetch_all(&mut *conn)
    .await?;
    for row in payments {
        let payment = payment_of_row(row)?;
        if let Some(idx) = index(&books, payment.invoice_number) {
            books[idx].payments.push(payment);
        }
    }
    let refunds = sqlx::query(
        "SELECT r.id, r.payment_id, r.invoice_number, r.amount, r.reference, r.actor,
         r.created_at FROM refunds r JOIN payments p ON p.id = r.payment_id
         WHERE p.customer_id = $1 ORDER BY r.id",
    )
    .bind(customer)
    .fetch_all(&mut *conn)
    .await?;
    for row in refunds {
        let refund = refund_of_row(row)?;
        if let Some(idx) = index(&books, refund.invoice_number) {
            books[idx].refunds.push(refund);
        }
    }
    let notes = sqlx::query(
        "SELECT number, invoice_number, amount, reason, actor, created_at FROM credit_notes
         WHERE customer_id = $1 ORDER BY number",
    )
    .bind(customer)
    .fetch_all(&mut *conn)
    .await?;
    for row in notes {
        let amount: String = row.try_get(2)?;
        let note = CreditNote {
            number: row.try_get(0)?,
            invoice_number: row.try_get(1)?,
            amount: decimal(&amount, "credit note amount")?,
            reason: row.try_get(3)?,
            actor: row.try_get(4)?,
            at: row.try_get(5)?,
        };
        if let Some(idx) = index(&books, note.invoice_number) {
            books[idx].credit_notes.push(note);
        }
    }
    let transitions = sqlx::query(
        "SELECT t.invoice_number, t.from_state, t.to_state, t.at, t.actor, t.reason
         FROM invoice_transitions t JOIN invoice_collection c
         ON c.invoice_number = t.invoice_number WHERE c.customer_id = $1 ORDER BY t.seq",
    )
    .bind(customer)
    .fetch_all(&mut *conn)
    .await?;
    for row in transitions {
        let number: i64 = row.try_get(0)?;
        let from: String = row.try_get(1)?;
        let to: String = row.try_get(2)?;
        let transition = Transition {
            from: state(&from)?,
            to: state(&to)?,
            at: row.try_get(3)?,
            actor: row.try_get(4)?,
            reason: row.try_get(5)?,
        };
        if let Some(idx) = index(&books, number) {
            books[idx].transitions.push(transition);
        }
    }
    Ok(books)
}

fn outbox_of_row(row: sqlx::sqlite::SqliteRow) -> Result<OutboxMessage, StoreError> {
    let payload: String = row.try_get(4)?;
    Ok(OutboxMessage {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        invoice: row.try_get(2)?,
        customer_id: row.try_get(3)?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt("outbox payload", e))?,
        created_at: row.try_get(5)?,
        claims: row.try_get(6)?,
        lease_until: row.try_get(7)?,
        acked_at: row.try_get(8)?,
    })
}
