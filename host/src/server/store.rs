//! The store: SQLite (WAL) through sqlx, behind the narrow set of operations the server needs,
//! so a PostgreSQL store can take its place without touching the server or rating.
//!
//! Every write that acknowledges something commits before it returns: an acknowledged event or
//! invoice is on disk (`synchronous = FULL`). Writes that read before they write (ingest checks
//! that a period is still open, close numbers invoices) run in `BEGIN IMMEDIATE` transactions,
//! which SQLite serializes, so a check and its write see the same state.

use std::path::Path;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

/// Collect's methods (invoice states, ledger, dunning, outbox): their own file.
pub mod collect;

/// A storage failure: the request it served did not happen (nothing was acknowledged).
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(#[from] sqlx::Error);

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError(sqlx::Error::Migrate(Box::new(error)))
    }
}

/// Rows per `INSERT` of a batch (5 parameters each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 200;

/// An uploaded plugin version (see the `plugins` table).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct StoredPlugin {
    /// `name@version`, as plans name it.
    pub reference: String,
    pub sha256: String,
    pub description: String,
    /// `metric` and/or `price`.
    pub kinds: Vec<String>,
    /// Unix milliseconds.
    pub uploaded_at: i64,
    /// The version plans naming `reference` run.
    pub active: bool,
}

/// A subscription change (see the `subscription_changes` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredChange {
    pub kind: ChangeKind,
    /// The instant it takes effect, Unix milliseconds.
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// From one plan version to another (`(id, version)`).
    Plan {
        from: (String, i64),
        to: (String, i64),
    },
    Cancel,
}

/// An event to store: its customer, id, instant and the JSON line it is rated from.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub customer_id: String,
    pub event_id: String,
    pub ts: i64,
    pub body: String,
}

/// A final invoice as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredInvoice {
    pub number: i64,
    pub customer_id: String,
    pub period_start: i64,
    pub period_end: i64,
    pub body: String,
}

/// A customer as stored: the engine's setup as JSON and the plan version they are on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCustomer {
    pub id: String,
    pub setup: String,
    pub plan: Option<(String, i64)>,
}

/// The SQLite store of one data directory.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads.
    pool: SqlitePool,
    /// Writes: one connection.
    writer: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) `ratecard.db` in `data_dir` and runs the migrations.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("ratecard.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10))
            // 32 MiB of page cache per connection (the default 2 MiB rereads index pages from
            // the OS on every batch), and statement journals in memory.
            .pragma("cache_size", "-32768")
            .pragma("temp_store", "memory");
        // One writer: SQLite serializes writes anyway; writers queue for the connection instead
        // of spinning in SQLite's busy handler, and readers (WAL) never wait for them.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Store { pool, writer })
    }

    /// Stores plan `id` as a new version (1 for a new plan): its number.
    pub async fn add_plan_version(
        &self,
        id: &str,
        body: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        immediate(&self.writer, async |conn| {
            let version: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
            sqlx::query("INSERT INTO plans (id, version, body, created_at) VALUES (?, ?, ?, ?)")
                .bind(id)
                .bind(version)
                .bind(body)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(version)
        })
        .await
    }

    /// Every plan version, as `(id, version, body)`, by id then version.
    pub async fn plan_versions(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, version, body FROM plans ORDER BY id, version")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }

    /// Creates or replaces a customer's setup and plan.
    pub async fn put_customer(
        &self,
        customer: &StoredCustomer,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO customers (id, setup, plan_id, plan_version, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET setup = excluded.setup, plan_id = excluded.plan_id,
             plan_version = excluded.plan_version",
        )
        .bind(&customer.id)
        .bind(&customer.setup)
        .bind(customer.plan.as_ref().map(|p| p.0.as_str()))
        .bind(customer.plan.as_ref().map(|p| p.1))
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn customers(&self) -> Result<Vec<StoredCustomer>, StoreError> {
        let rows =
            sqlx::query("SELECT id, setup, plan_id, plan_version FROM customers ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(customer_of_row).collect())
    }

    pub async fn customer(&self, id: &str) -> Result<Option<StoredCustomer>, StoreError> {
        let row =
            sqlx::query("SELECT id, setup, plan_id, plan_version FROM customers WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(customer_of_row))
    }

    /// Stores a batch of events in one transaction, committed before it returns. For each
    /// event, in order: `Ok(true)` stored, `Ok(false)` already stored (a retry: acknowledged,
    /// counted once), `Err(start)` refused because the period starting at `start` is invoiced
    /// (`closed_period` gives the start of the event's period, checked inside the transaction).
    pub async fn insert_events(
        &self,
        events: &[(NewEvent, i64)],
        now: i64,
    ) -> Result<Vec<Result<bool, i64>>, StoreError> {
        immediate(&self.writer, async |conn| {
            // Which (customer, period) pairs of the batch are invoiced: one query per distinct
            // period start (customers of one timezone and anchor share them).
            let mut starts: Vec<i64> = events.iter().map(|(_, start)| *start).collect();
            starts.sort_unstable();
            starts.dedup();
            let mut closed: std::collections::HashSet<(String, i64)> =
                std::collections::HashSet::new();
            for start in starts {
                let customers: Vec<String> =
                    sqlx::query_scalar("SELECT customer_id FROM invoices WHERE period_start = ?")
                        .bind(start)
                        .fetch_all(&mut *conn)
                        .await?;
                closed.extend(customers.into_iter().map(|c| (c, start)));
            }
            let mut outcomes: Vec<Result<bool, i64>> = Vec::with_capacity(events.len());
            let mut open = Vec::with_capacity(events.len());
            for (idx, (event, period_start)) in events.iter().enumerate() {
                if !closed.is_empty()
                    && closed.contains(&(event.customer_id.clone(), *period_start))
                {
                    outcomes.push(Err(*period_start));
                } else {
                    outcomes.push(Ok(false));
                    open.push(idx);
                }
            }
            // Many rows per statement. A conflict is an id stored already (a retry): when a
            // chunk inserts fewer rows than it has, the rows after the last sequence number
            // before it are the ones it inserted (writes are serialized: this transaction is
            // the only writer), so an id is never marked seen without its event.
            for chunk in open.chunks(ROWS_PER_INSERT) {
                let last_seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                    .fetch_one(&mut *conn)
                    .await?;
                let mut sql = String::with_capacity(120 + chunk.len() * 18);
                sql.push_str(
                    "INSERT INTO events (customer_id, event_id, ts, body, received_at) VALUES ",
                );
                for k in 0..chunk.len() {
                    sql.push_str(if k == 0 {
                        "(?, ?, ?, ?, ?)"
                    } else {
                        ", (?, ?, ?, ?, ?)"
                    });
                }
                sql.push_str(" ON CONFLICT (customer_id, event_id) DO NOTHING");
                let mut query = sqlx::query(&sql);
                for &idx in chunk {
                    let event = &events[idx].0;
                    query = query
                        .bind(&event.customer_id)
                        .bind(&event.event_id)
                        .bind(event.ts)
                        .bind(&event.body)
                        .bind(now);
                }
                let inserted = query.execute(&mut *conn).await?.rows_affected();
                if inserted == chunk.len() as u64 {
                    for &idx in chunk {
                        outcomes[idx] = Ok(true);
                    }
                    continue;
                }
                let mut new_rows: std::collections::HashSet<(String, String)> =
                    sqlx::query_as("SELECT customer_id, event_id FROM events WHERE seq > ?")
                        .bind(last_seq)
                        .fetch_all(&mut *conn)
                        .await?
                        .into_iter()
                        .collect();
                for &idx in chunk {
                    let event = &events[idx].0;
                    // `remove`: of an id repeated in the chunk, only the first was stored.
                    let key = (event.customer_id.clone(), event.event_id.clone());
                    outcomes[idx] = Ok(new_rows.remove(&key));
                }
            }
            Ok(outcomes)
        })
        .await
    }

    /// A customer's events in `[start, end)`, in order of arrival (their JSON lines).
    pub async fn events_in(
        &self,
        customer_id: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        events_in(&mut conn, customer_id, start, end).await
    }

    /// A customer's events in `[start, end)` stored after `after_seq` (the order of arrival),
    /// with their sequence numbers: what live usage has not seen yet. Writes are serialized
    /// (`BEGIN IMMEDIATE`), so sequence numbers are in commit order and none appears later
    /// below one already read.
    pub async fn events_after(
        &self,
        customer_id: &str,
        after_seq: i64,
        (start, end): (i64, i64),
    ) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, body FROM events
             WHERE customer_id = ? AND seq > ? AND ts >= ? AND ts < ? ORDER BY seq",
        )
        .bind(customer_id)
        .bind(after_seq)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Finalizes one invoice: `make` computes it from the period's events, inside the same
    /// transaction that numbers and stores it, so no event lands in the period between the two.
    /// An invoice already final for the customer and period is returned as it is (re-running a
    /// close is safe); numbers are consecutive, without gaps.
    pub async fn finalize_invoice(
        &self,
        customer_id: &str,
        (period_start, period_end): (i64, i64),
        (plan_id, plan_version): (&str, i64),
        now: i64,
        make: impl FnOnce(Vec<String>) -> Result<(String, String), String>,
    ) -> Result<Result<StoredInvoice, String>, StoreError> {
        immediate(&self.writer, async |conn| {
            if let Some(existing) = invoice_of(conn, customer_id, period_start).await? {
                return Ok(Ok(existing));
            }
            let events = events_in(conn, customer_id, period_start, period_end).await?;
            let (body, total) = match make(events) {
                Ok(made) => made,
                Err(reason) => return Ok(Err(reason)),
            };
            let number: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM invoices")
                    .fetch_one(&mut *conn)
                    .await?;
            sqlx::query(
                "INSERT INTO invoices (number, customer_id, period_start, period_end, plan_id,
                 plan_version, total, body, finalized_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(number)
            .bind(customer_id)
            .bind(period_start)
            .bind(period_end)
            .bind(plan_id)
            .bind(plan_version)
            .bind(&total)
            .bind(&body)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(Ok(StoredInvoice {
                number,
                customer_id: customer_id.to_owned(),
                period_start,
                period_end,
                body,
            }))
        })
        .await
    }

    /// Records a subscription change; a move to another plan also makes it the customer's
    /// plan. One transaction: refused (`Ok(false)`) if the period starting at `period_start`
    /// is already invoiced.
    pub async fn add_change(
        &self,
        customer_id: &str,
        change: &StoredChange,
        period_start: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        immediate(&self.writer, async |conn| {
            if invoice_of(conn, customer_id, period_start).await?.is_some() {
                return Ok(false);
            }
            let (kind, from, to) = match &change.kind {
                ChangeKind::Plan { from, to } => ("plan", Some(from), Some(to)),
                ChangeKind::Cancel => ("cancel", None, None),
            };
            sqlx::query(
                "INSERT INTO subscription_changes (customer_id, kind, at, from_plan_id,
                 from_plan_version, to_plan_id, to_plan_version, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(customer_id)
            .bind(kind)
            .bind(change.at)
            .bind(from.map(|p| p.0.as_str()))
            .bind(from.map(|p| p.1))
            .bind(to.map(|p| p.0.as_str()))
            .bind(to.map(|p| p.1))
            .bind(now)
            .execute(&mut *conn)
            .await?;
            if let Some((plan_id, version)) = to {
                sqlx::query("UPDATE customers SET plan_id = ?, plan_version = ? WHERE id = ?")
                    .bind(plan_id)
                    .bind(version)
                    .bind(customer_id)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(true)
        })
        .await
    }

    /// A customer's subscription changes, in the order they were made.
    pub async fn changes(&self, customer_id: &str) -> Result<Vec<StoredChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, at, from_plan_id, from_plan_version, to_plan_id, to_plan_version
             FROM subscription_changes WHERE customer_id = ? ORDER BY seq",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get(0)?;
            let at: i64 = row.try_get(1)?;
            let kind = if kind == "plan" {
                ChangeKind::Plan {
                    from: (row.try_get(2)?, row.try_get(3)?),
                    to: (row.try_get(4)?, row.try_get(5)?),
                }
            } else {
                ChangeKind::Cancel
            };
            changes.push(StoredChange { kind, at });
        }
        Ok(changes)
    }

    /// Stores an uploaded plugin component (again: nothing changes).
    pub async fn add_plugin(
        &self,
        plugin: &StoredPlugin,
        component: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO plugins (reference, sha256, component, description, kinds, uploaded_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (reference, sha256) DO NOTHING",
        )
        .bind(&plugin.reference)
        .bind(&plugin.sha256)
        .bind(component)
        .bind(&plugin.description)
        .bind(plugin.kinds.join(","))
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Every uploaded plugin version (without its component), by reference then upload.
    pub async fn plugins(&self) -> Result<Vec<StoredPlugin>, StoreError> {
        let rows = sqlx::query(
            "SELECT reference, sha256, description, kinds, uploaded_at, active FROM plugins
             ORDER BY reference, uploaded_at, sha256",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut plugins = Vec::with_capacity(rows.len());
        for row in rows {
            let kinds: String = row.try_get(3)?;
            plugins.push(StoredPlugin {
                reference: row.try_get(0)?,
                sha256: row.try_get(1)?,
                description: row.try_get(2)?,
                kinds: kinds
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect(),
                uploaded_at: row.try_get(4)?,
                active: row.try_get::<i64, _>(5)? != 0,
            });
        }
        Ok(plugins)
    }

    /// The component of one uploaded plugin version.
    pub async fn plugin_component(
        &self,
        reference: &str,
        sha256: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT component FROM plugins WHERE reference = ? AND sha256 = ?")
                .bind(reference)
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Makes one uploaded version the active one of its reference (the others inactive).
    pub async fn activate_plugin(&self, reference: &str, sha256: &str) -> Result<bool, StoreError> {
        immediate(&self.writer, async |conn| {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM plugins WHERE reference = ? AND sha256 = ?")
                    .bind(reference)
                    .bind(sha256)
                    .fetch_optional(&mut *conn)
                    .await?;
            if found.is_none() {
                return Ok(false);
            }
            sqlx::query("UPDATE plugins SET active = (sha256 = ?) WHERE reference = ?")
                .bind(sha256)
                .bind(reference)
                .execute(&mut *conn)
                .await?;
            Ok(true)
        })
        .await
    }

    /// Every final invoice, by number.
    pub async fn invoices(&self) -> Result<Vec<StoredInvoice>, StoreError> {
        let rows = sqlx::query(
            "SELECT number, customer_id, period_start, period_end, body FROM invoices ORDER BY number",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(invoice_of_row).collect())
    }

    pub async fn invoice(&self, number: i64) -> Result<Option<StoredInvoice>, StoreError> {
        let row = sqlx::query(
            "SELECT number, customer_id, period_start, period_end, body FROM invoices WHERE number = ?",
        )
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(invoice_of_row))
    }

    /// Keeps an operator key's hash.
    pub async fn add_key_hash(&self, hash: &str, label: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (hash, label, created_at) VALUES (?, ?, ?)")
            .bind(hash)
            .bind(label)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Whether an operator key with this hash exists.
    pub async fn has_key_hash(&self, hash: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM api_keys WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// Number of stored events (all customers).
    pub async fn n_events(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Runs `work` in a `BEGIN IMMEDIATE` transaction: committed if it returns `Ok`, rolled back
/// otherwise (sqlx rolls back a transaction dropped uncommitted, also when the future is
/// dropped half-way).
async fn immediate<T>(
    pool: &SqlitePool,
    work: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let value = work(&mut tx).await?;
    tx.commit().await?;
    Ok(value)
}

async fn events_in(
    conn: &mut SqliteConnection,
    customer_id: &str,
    start: i64,
    end: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT body FROM events WHERE customer_id = ? AND ts >= ? AND ts < ? ORDER BY seq",
    )
    .bind(customer_id)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?)
}

async fn invoice_of(
    conn: &mut SqliteConnection,
    customer_id: &str,
    period_start: i64,
) -> Result<Option<StoredInvoice>, StoreError> {
    let row = sqlx::query(
        "SELECT number, customer_id, period_start, period_end, body FROM invoices
         WHERE customer_id = ? AND period_start = ?",
    )
    .bind(customer_id)
    .bind(period_start)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(invoice_of_row))
}

fn invoice_of_row(row: sqlx::sqlite::SqliteRow) -> StoredInvoice {
    StoredInvoice {
        number: row.get(0),
        customer_id: row.get(1),
        period_start: row.get(2),
        period_end: row.get(3),
        body: row.get(4),
    }
}

fn customer_of_row(row: sqlx::sqlite::SqliteRow) -> StoredCustomer {
    let plan_id: Option<String> = row.get(2);
    let plan_version: Option<i64> = row.get(3);
    StoredCustomer {
        id: row.get(0),
        setup: row.get(1),
        plan: plan_id.zip(plan_version),
    }
}
