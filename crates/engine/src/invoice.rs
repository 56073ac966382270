//! The invoice (and quote): Ratecard's public output contract.
//!
//! Every amount is a decimal string. Each line explains itself: its `breakdown` says which units
//! were priced at which tier price, and its `rounding` what rounding turned the exact amount into
//! the billed one. Same input → byte-identical output; `input_hash` is the SHA-256 of the
//! canonical JSON of the plan and usage.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::decimal::{Amount, Dec};

/// An invoice preview (a quote) for one customer and one billing period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Invoice {
    pub plan_id: String,
    pub customer_id: String,
    pub currency: String,
    pub period: PeriodInfo,
    pub lines: Vec<Line>,
    /// Sum of the lines (rounded to minor units under either rounding level).
    pub subtotal: Amount,
    pub discounts: Vec<AppliedDiscount>,
    pub taxes: Vec<AppliedTax>,
    pub credits: Vec<AppliedCredit>,
    /// Subtotal − discounts + exclusive taxes − credits, never below zero.
    pub total: Amount,
    /// Notes on what was skipped or assumed (events outside the period, trial days), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How amounts were rounded: `"line half_up to 2 dp"`.
    pub rounding: String,
    /// `sha256:` of the canonical JSON of the inputs (plan and usage).
    pub input_hash: String,
}

/// The billing period an invoice covers, as instants (RFC 3339 in the customer's timezone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PeriodInfo {
    pub index: u32,
    pub start: String,
    pub end: String,
    pub timezone: String,
    /// The release of the IANA timezone database the period was computed with (`"2025b"`,
    /// chrono-tz's `IANA_TZDB_VERSION`): a browser quote and a server invoice can be seen to
    /// use the same data. Empty in invoices written before it was recorded.
    #[serde(default)]
    pub tzdata: String,
}

/// Where an invoice line comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LineOrigin {
    /// A charge of the plan (the default, not written).
    #[default]
    Charge,
    /// A charge of the plan in force before a mid-period plan change: its arrears fees and
    /// usage until the change, and the credit for the unused part of its advance fees.
    PreviousPlan,
    /// The true-up to the plan's minimum commitment.
    MinimumCommitment,
    /// With `charge_minimum` `after_discounts`: what a charge's net, after its own discounts,
    /// falls short of its minimum (not reduced by those discounts).
    ChargeMinimum,
    /// On a split line of a period (`split_line`): what the earlier lines of the period billed
    /// for the charge, taken off its cumulative amount (a negative line).
    BilledBefore,
}

impl LineOrigin {
    pub fn is_charge(&self) -> bool {
        *self == LineOrigin::Charge
    }
}

/// One invoice line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Line {
    /// The charge this line comes from: the id of a charge of the plan (of the previous plan
    /// when `origin` says so), or `"minimum_commitment"`.
    pub charge_id: String,
    /// Where the line comes from, when not from a charge of the plan.
    #[serde(default, skip_serializing_if = "LineOrigin::is_charge")]
    pub origin: LineOrigin,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Dimension values of the group this line prices.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group: BTreeMap<String, String>,
    /// Billed quantity (after allowance and conversion).
    pub quantity: Dec,
    /// Average unit price (amount / quantity) when meaningful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Dec>,
    /// The amount before rounding, exact.
    pub exact_amount: Dec,
    /// The billed amount: rounded to minor units under line rounding, exact under invoice
    /// rounding.
    pub amount: Amount,
    /// How the amount was computed, row by row.
    pub breakdown: Vec<BreakdownRow>,
    /// The rounding that turned `exact_amount` into `amount`, when it changed anything
    /// (`"0.005 rounded half_up to 2 dp: 0.01"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounding: Option<String>,
}

/// A step of a line's computation: units at a price, a flat fee, an adjustment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BreakdownRow {
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Dec>,
    pub amount: Dec,
}

impl BreakdownRow {
    pub fn units(
        description: String,
        quantity: Decimal,
        unit_price: Decimal,
        amount: Decimal,
    ) -> Self {
        BreakdownRow {
            description,
            quantity: Some(Dec(quantity)),
            unit_price: Some(Dec(unit_price)),
            amount: Dec(amount),
        }
    }

    pub fn fee(description: String, amount: Decimal) -> Self {
        BreakdownRow {
            description,
            quantity: None,
            unit_price: None,
            amount: Dec(amount),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppliedDiscount {
    pub id: String,
    pub description: String,
    /// Positive: the amount taken off.
    pub amount: Amount,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppliedTax {
    pub id: String,
    pub name: String,
    pub percent: Dec,
    pub inclusive: bool,
    /// The amount the tax was computed on.
    pub taxable: Amount,
    pub amount: Amount,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AppliedCredit {
    pub id: String,
    pub description: String,
    /// The amount of credit used on this invoice.
    pub applied: Amount,
    /// What is left of the credit after this invoice.
    pub remaining: Amount,
}
