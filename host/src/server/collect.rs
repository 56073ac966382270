//! Collect: what happens to a final invoice after it is issued. Its body (the engine's
//! invoice, byte for byte `ratecard rate`'s) never changes; its state, due date and ledger
//! (payments, refunds, credit notes) live beside it (`invoice_collection` and friends).
//!
//! The steps, each a function here, pure over a [`Book`] (an invoice's collection row and
//! ledger) so the store runs the check and its writes in one transaction and the property
//! tests run the very same decisions in memory:
//! - [`open_row`]: at close, the invoice becomes `open` (draft → open), due after its plan's
//!   net terms ([`CollectionSettings`]); a zero total is `paid` at once.
//! - [`pay`], [`refund`], [`credit_note`], [`void`], [`mark_uncollectible`]: the ledger's
//!   writes, refused with the JSON path of what was wrong; [`settle`] moves the state when the
//!   balance reaches zero (paid) or leaves it (a refund reopens).
//! - [`credit_available`]: a customer's account credit (overpayments, credit notes beyond
//!   the balance), which the next close feeds to the engine as the credit
//!   [`ACCOUNT_CREDIT_ID`], so it appears in the invoice the engine computes.
//! - [`dunning_due`]: the dunning steps an overdue open invoice has reached and not run.
//!
//! **The balance invariant** ([`Book::summary`]): `balance − overpaid = total − paid +
//! refunded − credited`, with `balance ≥ 0`, `overpaid ≥ 0` and at most one of them non-zero;
//! every amount at most the currency's minor units. `overpaid` is what the invoice holds
//! beyond its total: it is the customer's account credit until a later invoice uses it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The credit id under which a customer's account credit is applied by the engine at close.
pub const ACCOUNT_CREDIT_ID: &str = "account_credit";
/// Net terms of a plan without collection settings.
pub const DEFAULT_NET_DAYS: u32 = 30;
/// The longest net terms and dunning delay accepted, in days.
pub const MAX_DAYS: u32 = 3650;
/// The most dunning steps of one plan.
pub const MAX_DUNNING_STEPS: usize = 20;
pub const DAY_MS: i64 = 86_400_000;

/// The largest amount of one payment, refund or credit note (10^15 in any currency).
fn max_amount() -> Decimal {
    Decimal::from(1_000_000_000_000_000_i64)
}

/// Where an invoice is in its life. `draft` is the preview (`GET
/// /v1/customers/{id}/invoice`), never stored; every stored invoice starts `open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceState {
    Draft,
    /// Final, with a balance due.
    Open,
    /// Balance zero.
    Paid,
    /// Cancelled: nothing is owed (its account credit, if any, returns to the customer).
    Void,
    /// Given up on (still payable: a payment reaching zero makes it paid).
    Uncollectible,
}

impl InvoiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceState::Draft => "draft",
            InvoiceState::Open => "open",
            InvoiceState::Paid => "paid",
            InvoiceState::Void => "void",
            InvoiceState::Uncollectible => "uncollectible",
        }
    }

    pub fn parse(text: &str) -> Option<InvoiceState> {
        Some(match text {
            "draft" => InvoiceState::Draft,
            "open" => InvoiceState::Open,
            "paid" => InvoiceState::Paid,
            "void" => InvoiceState::Void,
            "uncollectible" => InvoiceState::Uncollectible,
            _ => return None,
        })
    }
}

impl fmt::Display for InvoiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Card,
    BankTransfer,
    DigitalWallet,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Card => "card",
            PaymentMethod::BankTransfer => "bank_transfer",
            PaymentMethod::DigitalWallet => "digital_wallet",
        }
    }

    pub fn parse(text: &str) -> Option<PaymentMethod> {
        Some(match text {
            "card" => PaymentMethod::Card,
            "bank_transfer" => PaymentMethod::BankTransfer,
            "digital_wallet" => PaymentMethod::DigitalWallet,
            _ => return None,
        })
    }
}

/// Net terms and dunning of a plan id (`PUT /v1/plans/{id}/collection`): server-side
/// settings, not part of the engine's plan. An invoice keeps the settings it was issued under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionSettings {
    /// Days from issue to due date (default 30).
    #[serde(default = "default_net_days")]
    pub net_days: u32,
    /// Steps after the due date, by increasing `after_days`; `mark_uncollectible` only last.
    #[serde(default)]
    pub dunning: Vec<DunningStep>,
}

fn default_net_days() -> u32 {
    DEFAULT_NET_DAYS
}

impl Default for CollectionSettings {
    fn default() -> Self {
        CollectionSettings {
            net_days: DEFAULT_NET_DAYS,
            dunning: Vec::new(),
        }
    }
}

/// A customer's net terms (`GET`/`PUT /v1/customers/{id}/collection`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CustomerTerms {
    pub customer_id: String,
    /// Their own net terms (`null`: their plan's).
    pub net_days: Option<u32>,
    /// Their plan's net terms (`null` without a plan).
    pub plan_net_days: Option<u32>,
    /// What an invoice issued to them now is due after.
    pub effective_net_days: Option<u32>,
}

/// `PUT /v1/customers/{id}/collection`: `{"net_days": 45}`, or `{"net_days": null}` to take
/// the plan's again.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerTermsRequest {
    pub net_days: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DunningStep {
    /// Days after the due date.
    pub after_days: u32,
    pub action: DunningAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DunningAction {
    /// A reminder message in the outbox.
    Remind,
    /// The invoice becomes uncollectible (and the outbox says so).
    MarkUncollectible,
}

impl DunningAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DunningAction::Remind => "remind",
            DunningAction::MarkUncollectible => "mark_uncollectible",
        }
    }
}

impl CollectionSettings {
    /// The first thing wrong, with its JSON path.
    pub fn check(&self) -> Result<(), String> {
        if self.net_days > MAX_DAYS {
            return Err(format!(
                "$.net_days: {} is more than {MAX_DAYS} days",
                self.net_days
            ));
        }
        if self.dunning.len() > MAX_DUNNING_STEPS {
            return Err(format!(
                "$.dunning: {} steps, at most {MAX_DUNNING_STEPS}",
                self.dunning.len()
            ));
        }
        for (idx, step) in self.dunning.iter().enumerate() {
            if step.after_days > MAX_DAYS {
                return Err(format!(
                    "$.dunning[{idx}].after_days: {} is more than {MAX_DAYS} days",
                    step.after_days
                ));
            }
            if idx > 0 && step.after_days <= self.dunning[idx - 1].after_days {
                return Err(format!(
                    "$.dunning[{idx}].after_days: {} does not come after the previous step's {}",
                    step.after_days,
                    self.dunning[idx - 1].after_days
                ));
            }
            if step.action == DunningAction::MarkUncollectible && idx + 1 != self.dunning.len() {
                return Err(format!(
                    "$.dunning[{idx}].action: mark_uncollectible ends the schedule: it must be the last step"
                ));
            }
        }
        Ok(())
    }
}

/// An invoice's collection row (see the `invoice_collection` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceCollection {
    pub number: i64,
    pub customer_id: String,
    pub currency: String,
    pub minor_units: u32,
    /// The invoice's total, net of the account credit the engine applied.
    pub total: Decimal,
    /// The account credit the engine applied (already out of `total`).
    pub credit_applied: Decimal,
    pub state: InvoiceState,
    pub issued_at: i64,
    pub due_at: i64,
    pub net_days: u32,
    pub dunning: Vec<DunningStep>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: i64,
    pub invoice_number: i64,
    pub amount: Decimal,
    pub method: PaymentMethod,
    pub reference: String,
    pub actor: String,
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refund {
    pub id: i64,
    pub payment_id: i64,
    pub invoice_number: i64,
    pub amount: Decimal,
    pub reference: Option<String>,
    pub actor: String,
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreditNote {
    pub number: i64,
    pub invoice_number: i64,
    pub amount: Decimal,
    pub reason: String,
    pub actor: String,
    pub at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: InvoiceState,
    pub to: InvoiceState,
    pub at: i64,
    pub actor: String,
    pub reason: String,
}

/// An invoice's collection row and its ledger, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Book {
    pub invoice: InvoiceCollection,
    pub payments: Vec<Payment>,
    pub refunds: Vec<Refund>,
    pub credit_notes: Vec<CreditNote>,
    pub transitions: Vec<Transition>,
}

/// The figures of a [`Book`] (see the module docs for the invariant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub total: Decimal,
    pub paid: Decimal,
    pub refunded: Decimal,
    pub credited: Decimal,
    /// What is still owed (zero when void).
    pub balance: Decimal,
    /// What was received or credited beyond the total: account credit.
    pub overpaid: Decimal,
}

/// A sum past rust_decimal's range: refused, never wrapped or panicked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

fn sum(amounts: impl IntoIterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    amounts
        .into_iter()
        .try_fold(Decimal::ZERO, |acc, a| acc.checked_add(a))
        .ok_or(Overflow)
}

impl Book {
    pub fn summary(&self) -> Result<Summary, Overflow> {
        let paid = sum(self.payments.iter().map(|p| p.amount))?;
        let refunded = sum(self.refunds.iter().map(|r| r.amount))?;
        let credited = sum(self.credit_notes.iter().map(|c| c.amount))?;
        let total = self.invoice.total;
        let net = total
            .checked_sub(paid)
            .and_then(|n| n.checked_add(refunded))
            .and_then(|n| n.checked_sub(credited))
            .ok_or(Overflow)?;
        let (balance, overpaid) = if self.invoice.state == InvoiceState::Void {
            (Decimal::ZERO, Decimal::ZERO)
        } else if net.is_sign_negative() && !net.is_zero() {
            (Decimal::ZERO, -net)
        } else {
            (net, Decimal::ZERO)
        };
        Ok(Summary {
            total,
            paid,
            refunded,
            credited,
            balance,
            overpaid,
        })
    }

    /// What payment `id` has left to refund.
    fn refundable(&self, payment: &Payment) -> Result<Decimal, Overflow> {
        let refunded = sum(self
            .refunds
            .iter()
            .filter(|r| r.payment_id == payment.id)
            .map(|r| r.amount))?;
        Ok(payment.amount - refunded)
    }

    /// The book with `write` applied (ids as the store will give them do not matter here).
    pub fn with(&self, write: &Write, at: i64) -> Book {
        let mut book = self.clone();
        let number = book.invoice.number;
        match write {
            Write::Payment {
                amount,
                method,
                reference,
                actor,
            } => book.payments.push(Payment {
                id: 0,
                invoice_number: number,
                amount: *amount,
                method: *method,
                reference: reference.clone(),
                actor: actor.clone(),
                at,
            }),
            Write::Refund {
                payment_id,
                amount,
                reference,
                actor,
            } => book.refunds.push(Refund {
                id: 0,
                payment_id: *payment_id,
                invoice_number: number,
                amount: *amount,
                reference: reference.clone(),
                actor: actor.clone(),
                at,
            }),
            Write::CreditNote {
                amount,
                reason,
                actor,
            } => book.credit_notes.push(CreditNote {
                number: 0,
                invoice_number: number,
                amount: *amount,
                reason: reason.clone(),
                actor: actor.clone(),
                at,
            }),
            Write::State {
                from,
                to,
                actor,
                reason,
            } => {
                book.invoice.state = *to;
                book.transitions.push(Transition {
                    from: *from,
                    to: *to,
                    at,
                    actor: actor.clone(),
                    reason: reason.clone(),
                });
            }
        }
        book
    }
}

/// One write to an invoice's ledger or state, decided here and done by the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Payment {
        amount: Decimal,
        method: PaymentMethod,
        reference: String,
        actor: String,
    },
    Refund {
        payment_id: i64,
        amount: Decimal,
        reference: Option<String>,
        actor: String,
    },
    /// Numbered by the store in the credit notes' own sequence.
    CreditNote {
        amount: Decimal,
        reason: String,
        actor: String,
    },
    State {
        from: InvoiceState,
        to: InvoiceState,
        actor: String,
        reason: String,
    },
}

/// Why a change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A value of the request is wrong (the message names its JSON path): 422.
    #[error("{0}")]
    Invalid(String),
    /// The invoice's state or an earlier record forbids it: 409.
    #[error("{0}")]
    Conflict(String),
    /// No such invoice or payment: 404.
    #[error("{what} `{id}` does not exist")]
    NotFound { what: &'static str, id: String },
}

impl From<Overflow> for Refusal {
    fn from(_: Overflow) -> Self {
        Refusal::Invalid("$.amount: the ledger's sum would overflow".to_owned())
    }
}

/// What a change came to: writes to do, or an earlier record it repeats (idempotency).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Writes(Vec<Write>),
    /// The payment or refund of this id is this request already.
    Existing(i64),
}

/// Everything a decision reads, from one transaction.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Every book of the invoice's customer, by number.
    pub books: Vec<Book>,
    /// The invoice the change is about.
    pub number: i64,
    /// The payment already recorded under the request's reference, if any.
    pub payment_with_reference: Option<Payment>,
    /// The refund already recorded under the request's reference, if any.
    pub refund_with_reference: Option<Refund>,
}

impl Snapshot {
    pub fn book(&self) -> Result<&Book, Refusal> {
        self.books
            .iter()
            .find(|b| b.invoice.number == self.number)
            .ok_or_else(|| Refusal::NotFound {
                what: "invoice",
                id: self.number.to_string(),
            })
    }
}

/// Reads a decimal string of money in a currency of `minor_units` decimals: plain digits
/// with at most that many decimals, positive, at most 10^15. `path` names it in errors.
pub fn parse_amount(
    text: &str,
    currency: &str,
    minor_units: u32,
    path: &str,
) -> Result<Decimal, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (text.contains('.') && !digits(fraction)) {
        return Err(format!(
            "{path}: `{text}` is not a decimal amount (digits, an optional `.` and decimals: \"12.50\")"
        ));
    }
    if fraction.len() > minor_units as usize {
        return Err(format!(
            "{path}: `{text}` has {} decimals; {currency} has {minor_units}",
            fraction.len()
        ));
    }
    let amount = Decimal::from_str_exact(text)
        .map_err(|e| format!("{path}: `{text}` is not a decimal amount: {e}"))?;
    if amount.is_zero() {
        return Err(format!("{path}: an amount must be more than zero"));
    }
    if amount > max_amount() {
        return Err(format!("{path}: `{text}` is more than 10^15"));
    }
    Ok(amount)
}

/// The collection row of an invoice issued at `issued_at` under `settings`: `open`, due
/// after the net terms, or `paid` at once when nothing is due; with its first transitions.
pub fn open_row(
    invoice: InvoiceCollection,
    issued_at: i64,
) -> (InvoiceCollection, Vec<Transition>) {
    let mut transitions = vec![Transition {
        from: InvoiceState::Draft,
        to: InvoiceState::Open,
        at: issued_at,
        actor: "system".to_owned(),
        reason: "finalized at period close".to_owned(),
    }];
    let mut row = invoice;
    row.state = InvoiceState::Open;
    if row.total.is_zero() {
        row.state = InvoiceState::Paid;
        transitions.push(Transition {
            from: InvoiceState::Open,
            to: InvoiceState::Paid,
            at: issued_at,
            actor: "system".to_owned(),
            reason: "nothing due".to_owned(),
        });
    }
    (row, transitions)
}

/// The state change the ledger now calls for: `paid` when an open or uncollectible invoice's
/// balance reached zero, `open` again when a refund left a paid invoice owing.
pub fn settle(book: &Book, actor: &str) -> Result<Option<Write>, Overflow> {
    let balance = book.summary()?.balance;
    let state = book.invoice.state;
    Ok(match state {
        InvoiceState::Open | InvoiceState::Uncollectible if balance.is_zero() => {
            Some(Write::State {
                from: state,
                to: InvoiceState::Paid,
                actor: actor.to_owned(),
                reason: "balance reached zero".to_owned(),
            })
        }
        InvoiceState::Paid if !balance.is_zero() => Some(Write::State {
            from: state,
            to: InvoiceState::Open,
            actor: actor.to_owned(),
            reason: "a refund left a balance due".to_owned(),
        }),
        _ => None,
    })
}

/// `writes` followed by the state change they call for.
fn settled(book: &Book, writes: Vec<Write>, actor: &str) -> Result<Change, Refusal> {
    let mut after = book.clone();
    for write in &writes {
        after = after.with(write, 0);
    }
    let mut writes = writes;
    if let Some(state) = settle(&after, actor)? {
        writes.push(state);
    }
    Ok(Change::Writes(writes))
}

/// A payment asked for (amount already read at the invoice's minor units).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentInput {
    pub amount: Decimal,
    pub method: PaymentMethod,
    pub reference: String,
}

/// Records a payment: partial, whole, or beyond the balance (the excess is account credit).
/// The same reference again is the same payment; with other figures, a conflict.
pub fn pay(snapshot: &Snapshot, input: &PaymentInput, actor: &str) -> Result<Change, Refusal> {
    let book = snapshot.book()?;
    if let Some(existing) = &snapshot.payment_with_reference {
        if existing.invoice_number == book.invoice.number
            && existing.amount == input.amount
            && existing.method == input.method
        {
            return Ok(Change::Existing(existing.id));
        }
        return Err(Refusal::Conflict(format!(
            "$.reference: `{}` is already payment {} ({} {} by {} on invoice {}): another payment needs its own reference",
            existing.reference,
            existing.id,
            existing.amount,
            book.invoice.currency,
            existing.method.as_str(),
            existing.invoice_number
        )));
    }
    match book.invoice.state {
        InvoiceState::Open | InvoiceState::Uncollectible => {}
        state => {
            return Err(Refusal::Conflict(format!(
                "invoice {} is {state}: it takes no payment",
                book.invoice.number
            )));
        }
    }
    if input.reference.trim().is_empty() || input.reference.len() > 200 {
        return Err(Refusal::Invalid(
            "$.reference: a payment needs its external reference (1 to 200 characters)".to_owned(),
        ));
    }
    let writes = vec![Write::Payment {
        amount: input.amount,
        method: input.method,
        reference: input.reference.clone(),
        actor: actor.to_owned(),
    }];
    settled(book, writes, actor)
}

/// A customer's account credit in `currency`: what their invoices hold beyond their totals,
/// less what the engine already applied at later closes (a void invoice gives its applied
/// credit back).
pub fn credit_available(books: &[Book], currency: &str) -> Result<Decimal, Overflow> {
    let mut credit = Decimal::ZERO;
    for book in books.iter().filter(|b| b.invoice.currency == currency) {
        if book.invoice.state == InvoiceState::Void {
            continue;
        }
        credit = credit
            .checked_add(book.summary()?.overpaid)
            .and_then(|c| c.checked_sub(book.invoice.credit_applied))
            .ok_or(Overflow)?;
    }
    Ok(credit)
}

/// A refund asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundInput {
    pub payment_id: i64,
    pub amount: Decimal,
    pub reference: Option<String>,
}

/// Refunds part or all of a payment: never more than it has left, nor the part of an
/// overpayment a later invoice already took as account credit.
pub fn refund(snapshot: &Snapshot, input: &RefundInput, actor: &str) -> Result<Change, Refusal> {
    let book = snapshot.book()?;
    let Some(payment) = book.payments.iter().find(|p| p.id == input.payment_id) else {
        return Err(Refusal::NotFound {
            what: "payment",
            id: input.payment_id.to_string(),
        });
    };
    if let Some(existing) = &snapshot.refund_with_reference {
        if existing.payment_id == payment.id && existing.amount == input.amount {
            return Ok(Change::Existing(existing.id));
        }
        return Err(Refusal::Conflict(format!(
            "$.reference: `{}` is already refund {} ({} of payment {}): another refund needs its own reference",
            existing.reference.as_deref().unwrap_or_default(),
            existing.id,
            existing.amount,
            existing.payment_id
        )));
    }
    if let Some(reference) = &input.reference
        && (reference.trim().is_empty() || reference.len() > 200)
    {
        return Err(Refusal::Invalid(
            "$.reference: a reference is 1 to 200 characters".to_owned(),
        ));
    }
    let currency = &book.invoice.currency;
    let refundable = book.refundable(payment)?;
    if input.amount > refundable {
        return Err(Refusal::Invalid(format!(
            "$.amount: {} is more than payment {} has left to refund ({} {currency})",
            input.amount,
            payment.id,
            format_amount(refundable, book.invoice.minor_units)
        )));
    }
    let overpaid = book.summary()?.overpaid;
    let credit = credit_available(&snapshot.books, currency)?.max(Decimal::ZERO);
    if input.amount.min(overpaid) > credit {
        let most = refundable.min(credit);
        return Err(Refusal::Invalid(format!(
            "$.amount: the overpayment of invoice {} was applied as account credit to a later invoice; at most {} {currency} can be refunded",
            book.invoice.number,
            format_amount(most, book.invoice.minor_units)
        )));
    }
    let writes = vec![Write::Refund {
        payment_id: payment.id,
        amount: input.amount,
        reference: input.reference.clone(),
        actor: actor.to_owned(),
    }];
    settled(book, writes, actor)
}

/// A credit note on a final invoice: up to its total less what is already credited (beyond
/// the balance, the rest is account credit, as an overpayment is).
pub fn credit_note(
    snapshot: &Snapshot,
    amount: Decimal,
    reason: &str,
    actor: &str,
) -> Result<Change, Refusal> {
    let book = snapshot.book()?;
    if book.invoice.state == InvoiceState::Void {
        return Err(Refusal::Conflict(format!(
            "invoice {} is void: it takes no credit note",
            book.invoice.number
        )));
    }
    if reason.trim().is_empty() || reason.len() > 500 {
        return Err(Refusal::Invalid(
            "$.reason: a credit note needs its reason (1 to 500 characters)".to_owned(),
        ));
    }
    let summary = book.summary()?;
    let creditable = summary.total - summary.credited;
    if amount > creditable {
        return Err(Refusal::Invalid(format!(
            "$.amount: {amount} is more than invoice {} has left to credit ({} {} of its total {})",
            book.invoice.number,
            format_amount(creditable, book.invoice.minor_units),
            book.invoice.currency,
            format_amount(summary.total, book.invoice.minor_units)
        )));
    }
    let writes = vec![Write::CreditNote {
        amount,
        reason: reason.to_owned(),
        actor: actor.to_owned(),
    }];
    settled(book, writes, actor)
}

/// Voids an open or uncollectible invoice with nothing paid on it (refund payments first).
pub fn void(snapshot: &Snapshot, actor: &str, reason: &str) -> Result<Change, Refusal> {
    let book = snapshot.book()?;
    let state = book.invoice.state;
    if !matches!(state, InvoiceState::Open | InvoiceState::Uncollectible) {
        return Err(Refusal::Conflict(format!(
            "invoice {} is {state}: only an open or uncollectible invoice can be voided",
            book.invoice.number
        )));
    }
    let summary = book.summary()?;
    if summary.paid != summary.refunded {
        return Err(Refusal::Conflict(format!(
            "invoice {} has {} {} paid on it: refund its payments before voiding it",
            book.invoice.number,
            format_amount(summary.paid - summary.refunded, book.invoice.minor_units),
            book.invoice.currency
        )));
    }
    Ok(Change::Writes(vec![Write::State {
        from: state,
        to: InvoiceState::Void,
        actor: actor.to_owned(),
        reason: reason_or(reason, "voided"),
    }]))
}

/// Marks an open invoice uncollectible (it stays payable).
pub fn mark_uncollectible(
    snapshot: &Snapshot,
    actor: &str,
    reason: &str,
) -> Result<Change, Refusal> {
    let book = snapshot.book()?;
    if book.invoice.state != InvoiceState::Open {
        return Err(Refusal::Conflict(format!(
            "invoice {} is {}: only an open invoice can be marked uncollectible",
            book.invoice.number, book.invoice.state
        )));
    }
    Ok(Change::Writes(vec![Write::State {
        from: InvoiceState::Open,
        to: InvoiceState::Uncollectible,
        actor: actor.to_owned(),
        reason: reason_or(reason, "marked uncollectible"),
    }]))
}

fn reason_or(reason: &str, default: &str) -> String {
    if reason.trim().is_empty() {
        default.to_owned()
    } else {
        reason.to_owned()
    }
}

/// A dunning step due now: its index in the invoice's schedule and what it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueStep {
    pub step: usize,
    pub action: DunningAction,
    pub days_overdue: i64,
}

/// The steps of an open invoice's schedule reached at `now` and not in `done`, in order.
/// None once it is paid, void or uncollectible, or has no balance.
pub fn dunning_due(book: &Book, now: i64, done: &[i64]) -> Result<Vec<DueStep>, Overflow> {
    let invoice = &book.invoice;
    if invoice.state != InvoiceState::Open
        || book.summary()?.balance.is_zero()
        || now <= invoice.due_at
    {
        return Ok(Vec::new());
    }
    let days_overdue = (now - invoice.due_at) / DAY_MS;
    Ok(invoice
        .dunning
        .iter()
        .enumerate()
        .filter(|(idx, step)| {
            i64::from(step.after_days) <= days_overdue && !done.contains(&(*idx as i64))
        })
        .map(|(step, s)| DueStep {
            step,
            action: s.action,
            days_overdue,
        })
        .collect())
}

/// An amount at the currency's minor units, as text (`12.5` → `"12.50"`). Every amount of
/// the ledger has at most `minor_units` decimals already (inputs are refused otherwise, totals
/// are the engine's): this only writes the scale out, it never rounds.
pub fn format_amount(amount: Decimal, minor_units: u32) -> String {
    ratecard_engine::money::Currency {
        code: String::new(),
        minor_units,
    }
    .format(amount)
}

/// The payment provider a server charges through (`Server::with_provider`). No live
/// provider ships; tests use fakes that fail, time out or answer twice.
pub trait PaymentProvider: Send + Sync + fmt::Debug {
    /// Charges `request.amount`. The same `idempotency_key` must be the same charge (a retry
    /// after a timeout charges once): providers answer it with the same reference.
    fn charge(&self, request: ChargeRequest) -> ChargeFuture<'_>;
}

pub type ChargeFuture<'a> = Pin<Box<dyn Future<Output = ChargeOutcome> + Send + 'a>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    pub invoice: i64,
    pub customer_id: String,
    pub amount: Decimal,
    pub currency: String,
    pub idempotency_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Charged: the provider's reference, the amount and how.
    Charged {
        reference: String,
        amount: Decimal,
        method: PaymentMethod,
    },
    /// Refused by the provider (declined card, …): nothing was charged.
    Declined { reason: String },
    /// No answer in time: whether anything was charged is unknown (retry with the same key).
    TimedOut,
}

/// The idempotency key of a charge of `book`'s balance: the same while nothing is recorded,
/// so a retry after a timeout is the same charge to the provider.
pub fn idempotency_key(book: &Book, balance: Decimal) -> String {
    format!(
        "ratecard-invoice-{}-entries-{}-balance-{}",
        book.invoice.number,
        book.payments.len() + book.refunds.len() + book.credit_notes.len(),
        format_amount(balance, book.invoice.minor_units)
    )
}

/// `POST /v1/invoices/{number}/payments`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// A decimal string in the invoice's currency, at most its minor units (`"12.50"`).
    pub amount: String,
    pub method: PaymentMethod,
    /// The external reference: the same reference again is the same payment.
    pub reference: String,
    /// If given, it must be the invoice's currency.
    #[serde(default)]
    pub currency: Option<String>,
}

/// `POST /v1/payments/{id}/refunds`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// A decimal string, at most what the payment has left to refund.
    pub amount: String,
    /// If given, the same reference again is the same refund.
    #[serde(default)]
    pub reference: Option<String>,
}

/// `POST /v1/invoices/{number}/credit-notes`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditNoteRequest {
    /// A decimal string, at most the invoice's total less what is already credited.
    pub amount: String,
    pub reason: String,
}

/// `POST /v1/invoices/{number}/void` and `/mark-uncollectible` (the body is optional).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    #[serde(default)]
    pub reason: String,
}

/// An invoice's collection as the API shows it: state, due date, the ledger and its figures
/// (amounts as decimal strings at the currency's minor units, instants RFC 3339).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct CollectionView {
    pub state: InvoiceState,
    pub currency: String,
    pub issued_at: String,
    pub due_at: String,
    pub net_days: u32,
    /// The invoice's total (net of `credit_applied`).
    pub total: String,
    /// The customer's account credit the engine applied at close (already out of `total`).
    pub credit_applied: String,
    pub paid: String,
    pub refunded: String,
    pub credited: String,
    /// `total − paid + refunded − credited`, never below zero (zero when void).
    pub balance: String,
    /// What was paid or credited beyond the total: the customer's account credit.
    pub overpaid: String,
    pub payments: Vec<PaymentView>,
    pub refunds: Vec<RefundView>,
    pub credit_notes: Vec<CreditNoteView>,
    /// Every change of state, in order.
    pub transitions: Vec<TransitionView>,
    /// The dunning schedule it was issued under.
    pub dunning: Vec<DunningStep>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PaymentView {
    pub id: i64,
    pub invoice: i64,
    pub amount: String,
    pub method: PaymentMethod,
    pub reference: String,
    pub actor: String,
    pub at: String,
    /// What was refunded of it.
    pub refunded: String,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct RefundView {
    pub id: i64,
    pub payment_id: i64,
    pub amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub actor: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct CreditNoteView {
    /// In the credit notes' own sequence.
    pub number: i64,
    pub invoice: i64,
    pub amount: String,
    pub reason: String,
    pub actor: String,
    pub at: String,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct TransitionView {
    pub from: InvoiceState,
    pub to: InvoiceState,
    pub at: String,
    /// `operator:<key label>`, `system` or `provider`.
    pub actor: String,
    pub reason: String,
}

fn instant(millis: i64) -> String {
    ratecard_engine::usage::Timestamp(millis).to_rfc3339()
}

impl Book {
    /// The API's view of the book.
    pub fn view(&self) -> Result<CollectionView, Overflow> {
        let summary = self.summary()?;
        let mu = self.invoice.minor_units;
        let amount = |d: Decimal| format_amount(d, mu);
        let mut payments = Vec::with_capacity(self.payments.len());
        for p in &self.payments {
            payments.push(PaymentView {
                id: p.id,
                invoice: p.invoice_number,
                amount: amount(p.amount),
                method: p.method,
                reference: p.reference.clone(),
                actor: p.actor.clone(),
                at: instant(p.at),
                refunded: amount(p.amount - self.refundable(p)?),
            });
        }
        Ok(CollectionView {
            state: self.invoice.state,
            currency: self.invoice.currency.clone(),
            issued_at: instant(self.invoice.issued_at),
            due_at: instant(self.invoice.due_at),
            net_days: self.invoice.net_days,
            total: amount(summary.total),
            credit_applied: amount(self.invoice.credit_applied),
            paid: amount(summary.paid),
            refunded: amount(summary.refunded),
            credited: amount(summary.credited),
            balance: amount(summary.balance),
            overpaid: amount(summary.overpaid),
            payments,
            refunds: self
                .refunds
                .iter()
                .map(|r| RefundView {
                    id: r.id,
                    payment_id: r.payment_id,
                    amount: amount(r.amount),
                    reference: r.reference.clone(),
                    actor: r.actor.clone(),
                    at: instant(r.at),
                })
                .collect(),
            credit_notes: self
                .credit_notes
                .iter()
                .map(|c| CreditNoteView {
                    number: c.number,
                    invoice: c.invoice_number,
                    amount: amount(c.amount),
                    reason: c.reason.clone(),
                    actor: c.actor.clone(),
                    at: instant(c.at),
                })
                .collect(),
            transitions: self
                .transitions
                .iter()
                .map(|t| TransitionView {
                    from: t.from,
                    to: t.to,
                    at: instant(t.at),
                    actor: t.actor.clone(),
                    reason: t.reason.clone(),
                })
                .collect(),
            dunning: self.invoice.dunning.clone(),
        })
    }
}

mod ops;
pub use ops::{DEFAULT_PROVIDER_TIMEOUT, Recorded};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn book(total: Decimal, minor_units: u32) -> Book {
        Book {
            invoice: InvoiceCollection {
                number: 1,
                customer_id: "acme".to_owned(),
                currency: "USD".to_owned(),
                minor_units,
                total,
                credit_applied: Decimal::ZERO,
                state: InvoiceState::Open,
                issued_at: 0,
                due_at: 30 * DAY_MS,
                net_days: 30,
                dunning: Vec::new(),
            },
            payments: Vec::new(),
            refunds: Vec::new(),
            credit_notes: Vec::new(),
            transitions: Vec::new(),
        }
    }

    /// Applies `change` as the store would (ids in order of insertion).
    fn apply(snapshot: &mut Snapshot, change: Change, next_id: &mut i64) {
        let Change::Writes(writes) = change else {
            return;
        };
        let idx = snapshot
            .books
            .iter()
            .position(|b| b.invoice.number == snapshot.number)
            .unwrap();
        for write in writes {
            let mut after = snapshot.books[idx].with(&write, 0);
            *next_id += 1;
            if let Some(p) = after.payments.last_mut()
                && p.id == 0
            {
                p.id = *next_id;
            }
            if let Some(r) = after.refunds.last_mut()
                && r.id == 0
            {
                r.id = *next_id;
            }
            snapshot.books[idx] = after;
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Pay(i64),
        Refund(usize, i64),
        CreditNote(i64),
        Void,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..20_000i64).prop_map(Op::Pay),
            2 => (0..4usize, 1..20_000i64).prop_map(|(p, a)| Op::Refund(p, a)),
            2 => (1..20_000i64).prop_map(Op::CreditNote),
            1 => Just(Op::Void),
        ]
    }

    fn check_invariant(book: &Book) {
        let s = book.summary().unwrap();
        let mu = book.invoice.minor_units;
        for amount in [
            s.total, s.paid, s.refunded, s.credited, s.balance, s.overpaid,
        ] {
            assert!(amount.scale() <= mu, "{amount} at {mu} minor units");
        }
        assert!(!s.balance.is_sign_negative() || s.balance.is_zero());
        assert!(!s.overpaid.is_sign_negative() || s.overpaid.is_zero());
        assert!(s.balance.is_zero() || s.overpaid.is_zero());
        assert!(s.credited <= s.total, "credit notes beyond the total");
        if book.invoice.state == InvoiceState::Void {
            assert!(s.balance.is_zero() && s.overpaid.is_zero());
            assert_eq!(s.paid, s.refunded, "void with money on it");
        } else {
            assert_eq!(
                s.balance - s.overpaid,
                s.total - s.paid + s.refunded - s.credited
            );
        }
        for p in &book.payments {
            let refunded: Decimal = book
                .refunds
                .iter()
                .filter(|r| r.payment_id == p.id)
                .map(|r| r.amount)
                .sum();
            assert!(
                refunded <= p.amount,
                "payment {} refunded beyond itself",
                p.id
            );
        }
        match book.invoice.state {
            InvoiceState::Paid => assert!(s.balance.is_zero(), "paid owing {}", s.balance),
            InvoiceState::Open | InvoiceState::Uncollectible => {
                assert!(
                    !s.balance.is_zero(),
                    "{} with nothing owed",
                    book.invoice.state
                )
            }
            InvoiceState::Void | InvoiceState::Draft => {}
        }
    }

    proptest! {
        /// The balance invariant over random payments, refunds, credit notes and voids, in
        /// currencies of 0, 2 and 3 minor units: exact to the minor unit, never below zero,
        /// paid exactly when the balance is zero, refunds never beyond what was paid.
        #[test]
        fn the_balance_is_total_less_payments_plus_refunds_less_credit_notes(
            total_minor in 0..50_000i64,
            minor_units in prop_oneof![Just(0u32), Just(2), Just(3)],
            ops in prop::collection::vec(op(), 0..40),
        ) {
            let total = Decimal::new(total_minor, minor_units);
            let (row, _) = open_row(book(total, minor_units).invoice, 0);
            let mut snapshot = Snapshot {
                books: vec![Book { invoice: row, ..book(total, minor_units) }],
                number: 1,
                payment_with_reference: None,
                refund_with_reference: None,
            };
            let mut next_id = 0;
            for (k, op) in ops.into_iter().enumerate() {
                let before = snapshot.books[0].clone();
                let change = match op {
                    Op::Pay(minor) => pay(&snapshot, &PaymentInput {
                        amount: Decimal::new(minor, minor_units),
                        method: PaymentMethod::Card,
                        reference: format!("ref-{k}"),
                    }, "operator:test"),
                    Op::Refund(which, minor) => {
                        let payment_id = before.payments.get(which).map_or(999, |p| p.id);
                        refund(&snapshot, &RefundInput {
                            payment_id,
                            amount: Decimal::new(minor, minor_units),
                            reference: None,
                        }, "operator:test")
                    }
                    Op::CreditNote(minor) => credit_note(&snapshot, Decimal::new(minor, minor_units), "goodwill", "operator:test"),
                    Op::Void => void(&snapshot, "operator:test", ""),
                };
                match change {
                    Ok(change) => apply(&mut snapshot, change, &mut next_id),
                    // A refusal changes nothing.
                    Err(_) => prop_assert_eq!(&snapshot.books[0], &before),
                }
                check_invariant(&snapshot.books[0]);
                // The account credit is what the invoice holds beyond its total.
                let credit = credit_available(&snapshot.books, "USD").unwrap();
                prop_assert_eq!(credit, snapshot.books[0].summary().unwrap().overpaid);
            }
        }

        /// Amounts with more decimals than the currency's minor units are refused, others read
        /// exactly.
        #[test]
        fn amounts_are_read_at_the_currencys_minor_units(units in 1..10_000_000i64, scale in 0u32..5, minor_units in 0u32..4) {
            let text = Decimal::new(units, scale).to_string();
            let read = parse_amount(&text, "XTS", minor_units, "$.amount");
            if scale <= minor_units {
                prop_assert_eq!(read, Ok(Decimal::new(units, scale)));
            } else {
                prop_assert!(read.unwrap_err().contains("decimals"));
            }
        }
    }

    #[test]
    fn amounts_that_are_not_plain_positive_decimals_are_refused() {
        for text in [
            "", "-1", "+1", "1e3", "1.", ".5", "1_000", " 1", "0", "0.00", "1,5", "NaN",
        ] {
            assert!(
                parse_amount(text, "USD", 2, "$.amount").is_err(),
                "{text:?}"
            );
        }
        assert_eq!(
            parse_amount("12.50", "USD", 2, "$.amount"),
            Ok(Decimal::new(1250, 2))
        );
        let error = parse_amount("1.005", "USD", 2, "$.amount").unwrap_err();
        assert_eq!(error, "$.amount: `1.005` has 3 decimals; USD has 2");
    }

    #[test]
    fn a_schedule_must_go_forward_and_end_with_uncollectible() {
        let step = |after_days, action| DunningStep { after_days, action };
        let settings = CollectionSettings {
            net_days: 30,
            dunning: vec![
                step(3, DunningAction::Remind),
                step(3, DunningAction::Remind),
            ],
        };
        assert!(
            settings
                .check()
                .unwrap_err()
                .starts_with("$.dunning[1].after_days")
        );
        let settings = CollectionSettings {
            net_days: 30,
            dunning: vec![
                step(3, DunningAction::MarkUncollectible),
                step(7, DunningAction::Remind),
            ],
        };
        assert!(
            settings
                .check()
                .unwrap_err()
                .starts_with("$.dunning[0].action")
        );
    }
}
