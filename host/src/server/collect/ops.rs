//! The server's collect operations: each reads the request, lets a decision of
//! `server::collect` run inside the store's transaction, and answers the invoice's book.

use std::sync::Arc;
use std::time::Duration;

use ratecard_engine::invoice::Invoice;
use ratecard_engine::money::Currency;
use rust_decimal::Decimal;
use serde_json::json;

use super::{
    ACCOUNT_CREDIT_ID, Book, ChargeOutcome, ChargeRequest, CollectionSettings, CreditNoteRequest,
    CustomerTerms, DAY_MS, DueStep, InvoiceCollection, InvoiceState, PaymentInput, PaymentProvider,
    PaymentRequest, RefundInput, RefundRequest, Refusal, credit_available, dunning_due,
    format_amount, idempotency_key, open_row, parse_amount,
};
use crate::server::store::collect::{Applied, Target};
use crate::server::{PlanRef, Server, ServerError};

/// How long a charge may take before it counts as timed out (`with_provider_timeout`).
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// Who did it: `operator:<key label>`, `system` or `provider`.
pub type Actor<'a> = &'a str;

impl From<Refusal> for ServerError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid(message) => ServerError::Invalid(message),
            Refusal::Conflict(message) => ServerError::Conflict(message),
            Refusal::NotFound { what, id } => ServerError::NotFound { what, id },
        }
    }
}

impl From<super::Overflow> for ServerError {
    fn from(_: super::Overflow) -> Self {
        ServerError::Invalid("the invoice's ledger does not sum within range".to_owned())
    }
}

/// A payment, refund or credit note recorded (or found recorded: `created` false) and the
/// invoice's book after it.
#[derive(Debug)]
pub struct Recorded {
    pub id: i64,
    pub created: bool,
    pub book: Book,
}

impl Server {
    /// Charges through `provider` from now on (`POST /v1/invoices/{n}/collect`).
    pub fn with_provider(mut self, provider: Arc<dyn PaymentProvider>) -> Server {
        self.provider = Some(provider);
        self
    }

    pub fn with_provider_timeout(mut self, timeout: Duration) -> Server {
        self.provider_timeout = timeout;
        self
    }

    fn plan_exists(&self, plan_id: &str) -> Result<(), ServerError> {
        if self.plans_lock().keys().any(|(id, _)| id == plan_id) {
            Ok(())
        } else {
            Err(ServerError::NotFound {
                what: "plan",
                id: plan_id.to_owned(),
            })
        }
    }

    /// The net terms and dunning of plan `plan_id` (the defaults when unset).
    pub async fn collection_settings(
        &self,
        plan_id: &str,
    ) -> Result<CollectionSettings, ServerError> {
        self.plan_exists(plan_id)?;
        Ok(self
            .store
            .collection_settings(plan_id)
            .await?
            .unwrap_or_default())
    }

    /// Sets the net terms and dunning of plan `plan_id`, for invoices issued from now on.
    pub async fn put_collection_settings(
        &self,
        plan_id: &str,
        settings: CollectionSettings,
    ) -> Result<CollectionSettings, ServerError> {
        self.plan_exists(plan_id)?;
        settings.check().map_err(ServerError::Invalid)?;
        self.store
            .put_collection_settings(plan_id, &settings, self.now())
            .await?;
        Ok(settings)
    }

    /// `customer`'s net terms: their own if set, else their plan's (`None` without a plan).
    pub async fn customer_terms(&self, customer: &str) -> Result<CustomerTerms, ServerError> {
        let record = self.customer(customer).await?;
        let own = self.store.customer_net_days(customer).await?;
        let plan_net_days = match &record.plan {
            Some(plan) => Some(
                self.store
                    .collection_settings(&plan.id)
                    .await?
                    .unwrap_or_default()
                    .net_days,
            ),
            None => None,
        };
        Ok(CustomerTerms {
            customer_id: record.id,
            net_days: own,
            plan_net_days,
            effective_net_days: own.or(plan_net_days),
        })
    }

    /// Sets `customer`'s own net terms (`None`: their plan's again), for invoices issued from
    /// now on.
    pub async fn put_customer_terms(
        &self,
        customer: &str,
        net_days: Option<u32>,
    ) -> Result<CustomerTerms, ServerError> {
        self.customer(customer).await?;
        if let Some(days) = net_days
            && days > super::MAX_DAYS
        {
            return Err(ServerError::Invalid(format!(
                "$.net_days: {days} is more than {} days",
                super::MAX_DAYS
            )));
        }
        self.store
            .put_customer_net_days(customer, net_days, self.now())
            .await?;
        self.customer_terms(customer).await
    }

    /// Gives every final invoice without a collection row its row: `open` (or `paid` when
    /// nothing is due), due after its customer's net terms (or their plan's) from its
    /// finalization. Run after each
    /// close, at start (an invoice stored by a close that crashed before its row), and before
    /// dunning. The row's figures come from the invoice's own body.
    pub(crate) async fn open_collections(&self) -> Result<usize, ServerError> {
        let missing = self.store.invoices_without_collection().await?;
        for (stored, (plan_id, plan_version), finalized_at) in &missing {
            let invoice: Invoice = serde_json::from_str(&stored.body).map_err(|e| {
                ServerError::Invalid(format!("stored invoice {}: {e}", stored.number))
            })?;
            let plan = PlanRef {
                id: plan_id.clone(),
                version: *plan_version,
            };
            // Another replica may have added the version.
            self.ensure_plan(&plan).await?;
            let custom_units = self
                .plan(&plan)
                .map(|p| p.plan().custom_units.clone())
                .unwrap_or_default();
            let currency =
                Currency::resolve(&invoice.currency, &custom_units).ok_or_else(|| {
                    ServerError::Invalid(format!(
                        "stored invoice {}: unknown currency `{}`",
                        stored.number, invoice.currency
                    ))
                })?;
            let mut settings = self
                .store
                .collection_settings(plan_id)
                .await?
                .unwrap_or_default();
            // A customer's own net terms take the plan's place (its dunning stays).
            if let Some(days) = self.store.customer_net_days(&stored.customer_id).await? {
                settings.net_days = days;
            }
            let mut credit_applied = Decimal::ZERO;
            for credit in invoice.credits.iter().filter(|c| c.id == ACCOUNT_CREDIT_ID) {
                credit_applied += credit.applied.0;
            }
            let row = InvoiceCollection {
                number: stored.number,
                customer_id: stored.customer_id.clone(),
                currency: invoice.currency.clone(),
                minor_units: currency.minor_units,
                total: invoice.total.0,
                credit_applied,
                state: InvoiceState::Open,
                issued_at: *finalized_at,
                due_at: finalized_at.saturating_add(i64::from(settings.net_days) * DAY_MS),
                net_days: settings.net_days,
                dunning: settings.dunning,
            };
            let (row, transitions) = open_row(row, *finalized_at);
            self.store.open_collection(&row, &transitions).await?;
        }
        Ok(missing.len())
    }

    /// `customer`'s account credit in `currency` (what their invoices hold beyond their
    /// totals, less what closes already applied).
    pub async fn account_credit(
        &self,
        customer: &str,
        currency: &str,
    ) -> Result<Decimal, ServerError> {
        let books = self.store.books(customer).await?;
        Ok(credit_available(&books, currency)?)
    }

    /// The book of final invoice `number`.
    pub async fn invoice_book(&self, number: i64) -> Result<Book, ServerError> {
        self.store
            .book(number)
            .await?
            .ok_or_else(|| ServerError::NotFound {
                what: "invoice",
                id: number.to_string(),
            })
    }

    /// Final invoices with their books, by number, of one state and/or customer (`None`:
    /// any). Books are read once per customer.
    pub async fn invoice_books(
        &self,
        state: Option<InvoiceState>,
        customer: Option<&str>,
    ) -> Result<Vec<(crate::server::store::StoredInvoice, Book)>, ServerError> {
        let numbers: std::collections::BTreeSet<i64> = self
            .store
            .invoice_numbers(state, customer)
            .await?
            .into_iter()
            .collect();
        let mut books: std::collections::HashMap<String, Vec<Book>> =
            std::collections::HashMap::new();
        let mut found = Vec::new();
        for invoice in self.store.invoices().await? {
            if !numbers.contains(&invoice.number) {
                continue;
            }
            if !books.contains_key(&invoice.customer_id) {
                let of_customer = self.store.books(&invoice.customer_id).await?;
                books.insert(invoice.customer_id.clone(), of_customer);
            }
            let book = books
                .get(&invoice.customer_id)
                .and_then(|b| b.iter().find(|b| b.invoice.number == invoice.number))
                .cloned();
            if let Some(book) = book {
                found.push((invoice, book));
            }
        }
        Ok(found)
    }

    /// The book after a change, and the id the change answers.
    async fn recorded(&self, number: i64, applied: Applied) -> Result<Recorded, ServerError> {
        let created = applied.existing.is_none();
        let id = applied
            .existing
            .or_else(|| applied.ids.first().copied())
            .unwrap_or_default();
        Ok(Recorded {
            id,
            created,
            book: self.invoice_book(number).await?,
        })
    }

    /// Records a payment on invoice `number` (see `collect::pay`).
    pub async fn record_payment(
        &self,
        number: i64,
        request: &PaymentRequest,
        actor: Actor<'_>,
    ) -> Result<Recorded, ServerError> {
        let book = self.invoice_book(number).await?;
        let invoice = &book.invoice;
        if let Some(currency) = &request.currency
            && *currency != invoice.currency
        {
            return Err(ServerError::Invalid(format!(
                "$.currency: invoice {number} is in {}, not {currency}",
                invoice.currency
            )));
        }
        let amount = parse_amount(
            &request.amount,
            &invoice.currency,
            invoice.minor_units,
            "$.amount",
        )
        .map_err(ServerError::Invalid)?;
        let input = PaymentInput {
            amount,
            method: request.method,
            reference: request.reference.clone(),
        };
        self.pay(number, &input, actor).await
    }

    async fn pay(
        &self,
        number: i64,
        input: &PaymentInput,
        actor: Actor<'_>,
    ) -> Result<Recorded, ServerError> {
        let applied = self
            .store
            .change_collection(
                Target::Invoice(number),
                Some(&input.reference),
                None,
                self.now(),
                |snapshot| super::pay(snapshot, input, actor),
            )
            .await??;
        self.recorded(number, applied).await
    }

    /// Refunds part or all of payment `payment_id` (see `collect::refund`).
    pub async fn refund_payment(
        &self,
        payment_id: i64,
        request: &RefundRequest,
        actor: Actor<'_>,
    ) -> Result<Recorded, ServerError> {
        // Refunds take account credit back: serialized with closes, which spend it.
        let _collect = self.collect_lock.lock().await;
        // And across replicas sharing a PostgreSQL database.
        let _replicas = self.store.collect_lock().await?;
        self.open_collections().await?;
        let not_found = || ServerError::NotFound {
            what: "payment",
            id: payment_id.to_string(),
        };
        let number = self
            .store
            .payment_invoice(payment_id)
            .await?
            .ok_or_else(not_found)?;
        let book = self.invoice_book(number).await?;
        let amount = parse_amount(
            &request.amount,
            &book.invoice.currency,
            book.invoice.minor_units,
            "$.amount",
        )
        .map_err(ServerError::Invalid)?;
        let input = RefundInput {
            payment_id,
            amount,
            reference: request.reference.clone(),
        };
        let applied = self
            .store
            .change_collection(
                Target::Payment(payment_id),
                None,
                request.reference.as_deref(),
                self.now(),
                |snapshot| super::refund(snapshot, &input, actor),
            )
            .await??;
        self.recorded(number, applied).await
    }

    /// Issues a credit note on invoice `number` (see `collect::credit_note`).
    pub async fn add_credit_note(
        &self,
        number: i64,
        request: &CreditNoteRequest,
        actor: Actor<'_>,
    ) -> Result<Recorded, ServerError> {
        let book = self.invoice_book(number).await?;
        let amount = parse_amount(
            &request.amount,
            &book.invoice.currency,
            book.invoice.minor_units,
            "$.amount",
        )
        .map_err(ServerError::Invalid)?;
        let applied = self
            .store
            .change_collection(
                Target::Invoice(number),
                None,
                None,
                self.now(),
                |snapshot| super::credit_note(snapshot, amount, &request.reason, actor),
            )
            .await??;
        self.recorded(number, applied).await
    }

    /// Voids invoice `number` (see `collect::void`).
    pub async fn void_invoice(
        &self,
        number: i64,
        reason: &str,
        actor: Actor<'_>,
    ) -> Result<Book, ServerError> {
        self.store
            .change_collection(
                Target::Invoice(number),
                None,
                None,
                self.now(),
                |snapshot| super::void(snapshot, actor, reason),
            )
            .await??;
        self.invoice_book(number).await
    }

    /// Marks invoice `number` uncollectible (see `collect::mark_uncollectible`).
    pub async fn mark_uncollectible(
        &self,
        number: i64,
        reason: &str,
        actor: Actor<'_>,
    ) -> Result<Book, ServerError> {
        self.store
            .change_collection(
                Target::Invoice(number),
                None,
                None,
                self.now(),
                |snapshot| super::mark_uncollectible(snapshot, actor, reason),
            )
            .await??;
        self.invoice_book(number).await
    }

    /// Charges invoice `number`'s balance through the provider and records what it charged
    /// as a payment by `provider`, idempotent by the provider's reference. A declined or
    /// timed-out charge records nothing paid (the attempt is kept) and can be retried: the
    /// retry carries the same idempotency key while nothing was recorded.
    pub async fn collect(&self, number: i64) -> Result<Recorded, ServerError> {
        let Some(provider) = self.provider.clone() else {
            return Err(ServerError::Conflict(
                "no payment provider is configured on this server".to_owned(),
            ));
        };
        let book = self.invoice_book(number).await?;
        let invoice = &book.invoice;
        if !matches!(
            invoice.state,
            InvoiceState::Open | InvoiceState::Uncollectible
        ) {
            return Err(ServerError::Conflict(format!(
                "invoice {number} is {}: there is nothing to collect",
                invoice.state
            )));
        }
        let balance = book.summary()?.balance;
        let key = idempotency_key(&book, balance);
        let request = ChargeRequest {
            invoice: number,
            customer_id: invoice.customer_id.clone(),
            amount: balance,
            currency: invoice.currency.clone(),
            idempotency_key: key.clone(),
        };
        let outcome = tokio::time::timeout(self.provider_timeout, provider.charge(request))
            .await
            .unwrap_or(ChargeOutcome::TimedOut);
        let now = self.now();
        match outcome {
            ChargeOutcome::Charged {
                reference,
                amount,
                method,
            } => {
                let read = parse_amount(
                    &amount.to_string(),
                    &invoice.currency,
                    invoice.minor_units,
                    "amount",
                );
                let amount = match read {
                    Ok(amount) if !reference.trim().is_empty() && reference.len() <= 200 => amount,
                    Ok(_) | Err(_) => {
                        let detail = format!(
                            "the provider answered an unusable charge (reference `{reference}`, amount {amount}): nothing recorded"
                        );
                        self.store
                            .add_charge_attempt(number, &key, balance, "failed", &detail, now)
                            .await?;
                        return Err(ServerError::Payment {
                            timed_out: false,
                            message: detail,
                        });
                    }
                };
                self.store
                    .add_charge_attempt(number, &key, balance, "succeeded", &reference, now)
                    .await?;
                let input = PaymentInput {
                    amount,
                    method,
                    reference,
                };
                self.pay(number, &input, "provider").await
            }
            ChargeOutcome::Declined { reason } => {
                self.store
                    .add_charge_attempt(number, &key, balance, "failed", &reason, now)
                    .await?;
                Err(ServerError::Payment {
                    timed_out: false,
                    message: format!(
                        "the provider declined the charge: {reason}; nothing was recorded paid"
                    ),
                })
            }
            ChargeOutcome::TimedOut => {
                self.store
                    .add_charge_attempt(number, &key, balance, "timed_out", "", now)
                    .await?;
                Err(ServerError::Payment {
                    timed_out: true,
                    message: format!(
                        "the provider did not answer in time; nothing was recorded paid: retry (the same idempotency key `{key}` is sent)"
                    ),
                })
            }
        }
    }

    /// Runs every due dunning step of every overdue open invoice: each step once (its
    /// `(invoice, step)` key), each with one outbox message; `mark_uncollectible` also
    /// changes the state. Safe to run at any time and as often as wanted.
    pub async fn run_dunning(&self) -> Result<Vec<(i64, DueStep)>, ServerError> {
        self.open_collections().await?;
        let now = self.now();
        let mut ran = Vec::new();
        for number in self.store.overdue(now).await? {
            let steps = self
                .store
                .run_dunning(number, now, |book, done| {
                    let due = dunning_due(book, now, done).unwrap_or_default();
                    due.into_iter()
                        .map(|step| {
                            let payload = reminder(book, &step);
                            (step, payload)
                        })
                        .collect()
                })
                .await?;
            ran.extend(steps.into_iter().map(|step| (number, step)));
        }
        Ok(ran)
    }
}

/// The outbox message of a dunning step: what a mailer needs to write it.
fn reminder(book: &Book, step: &DueStep) -> serde_json::Value {
    let invoice = &book.invoice;
    let balance = book.summary().map(|s| s.balance).unwrap_or_default();
    let balance = format_amount(balance, invoice.minor_units);
    let due_at = ratecard_engine::usage::Timestamp(invoice.due_at).to_rfc3339();
    let message = match step.action {
        super::DunningAction::Remind => format!(
            "Invoice {} is {} days overdue: {balance} {} due since {due_at}",
            invoice.number, step.days_overdue, invoice.currency
        ),
        super::DunningAction::MarkUncollectible => format!(
            "Invoice {} is {} days overdue and now uncollectible: {balance} {} due since {due_at}",
            invoice.number, step.days_overdue, invoice.currency
        ),
    };
    json!({
        "invoice": invoice.number,
        "customer_id": invoice.customer_id,
        "step": step.step + 1,
        "of": invoice.dunning.len(),
        "action": step.action.as_str(),
        "days_overdue": step.days_overdue,
        "due_at": due_at,
        "balance": balance,
        "currency": invoice.currency,
        "message": message,
    })
}
