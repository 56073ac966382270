//! Price models: a quantity in, an exact amount and its breakdown out.
//!
//! Nothing here rounds money: every amount is exact, and the caller rounds at the points the
//! plan's rounding policy names. Quantities are continuous, so a tier boundary never leaves a gap:
//! tier `i` spans from the previous tier's `up_to` (its *lower bound*, 0 for the first) to its own
//! `up_to` (unbounded for the last). Which tier a quantity exactly on a bound belongs to is the
//! plan's [`TierConvention`]:
//!
//! | model      | `upper_inclusive` (default, Stripe) | `lower_inclusive`           |
//! |------------|-------------------------------------|-----------------------------|
//! | graduated  | units split the same way; tier flat fee due when q > lower | flat fee due when q ≥ lower |
//! | volume     | tier i when lower < q ≤ up_to       | tier i when lower ≤ q < up_to |
//! | stairstep  | band i when lower < q ≤ up_to       | band i when lower ≤ q < up_to |
//!
//! A zero quantity prices at zero in every usage model (no tier fee, no stairstep band): a base fee
//! belongs in a `flat` charge or a charge `minimum`.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::decimal::normalized_text;
use crate::invoice::BreakdownRow;
use crate::plan::{PackageRounding, Step, Tier, TierConvention};

/// An exact amount and how it was computed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Priced {
    pub amount: Decimal,
    pub breakdown: Vec<BreakdownRow>,
}

impl Priced {
    fn push(&mut self, row: BreakdownRow) -> Result<(), Overflow> {
        self.amount = add(self.amount, row.amount.0)?;
        self.breakdown.push(row);
        Ok(())
    }
}

/// What a price model computes into: a [`Priced`] (the amount and every breakdown row, for an
/// invoice) or [`AmountOnly`] (the amount alone, for totals and curves). Each model is written
/// once, generic over this, so both give the same amount by construction: the amount-only
/// kind just never builds a row's text.
pub trait Rows: Default {
    /// Adds a row of `amount`, built by `row` only when rows are kept (its amount is `amount`).
    fn push_row(
        &mut self,
        amount: Decimal,
        row: impl FnOnce(Decimal) -> BreakdownRow,
    ) -> Result<(), Overflow>;
    /// Keeps a row that adds nothing (free units), when rows are kept.
    fn note(&mut self, row: impl FnOnce() -> BreakdownRow);
    /// The amount so far.
    fn amount(&self) -> Decimal;
}

impl Rows for Priced {
    fn push_row(
        &mut self,
        amount: Decimal,
        row: impl FnOnce(Decimal) -> BreakdownRow,
    ) -> Result<(), Overflow> {
        self.push(row(amount))
    }

    fn note(&mut self, row: impl FnOnce() -> BreakdownRow) {
        self.breakdown.push(row());
    }

    fn amount(&self) -> Decimal {
        self.amount
    }
}

/// The amount of a price model without its breakdown (see [`Rows`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AmountOnly(pub Decimal);

impl Rows for AmountOnly {
    fn push_row(
        &mut self,
        amount: Decimal,
        _row: impl FnOnce(Decimal) -> BreakdownRow,
    ) -> Result<(), Overflow> {
        self.0 = add(self.0, amount)?;
        Ok(())
    }

    fn note(&mut self, _row: impl FnOnce() -> BreakdownRow) {}

    fn amount(&self) -> Decimal {
        self.0
    }
}

/// An arithmetic result that does not fit in a decimal (≈ 7.9 × 10²⁸).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

pub(crate) fn add(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_add(b).ok_or(Overflow)
}

pub(crate) fn sub(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_sub(b).ok_or(Overflow)
}

pub(crate) fn mul(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_mul(b).ok_or(Overflow)
}

pub(crate) fn div(a: Decimal, b: Decimal) -> Result<Decimal, Overflow> {
    a.checked_div(b).ok_or(Overflow)
}

fn percent_of(amount: Decimal, percent: Decimal) -> Result<Decimal, Overflow> {
    div(mul(amount, percent)?, Decimal::ONE_HUNDRED)
}

/// `(lower, upper]` bounds of tier `idx`; `None` upper = unbounded.
fn bounds(up_tos: &[Option<Decimal>], idx: usize) -> (Decimal, Option<Decimal>) {
    let lower = if idx == 0 {
        Decimal::ZERO
    } else {
        up_tos[idx - 1].unwrap_or(Decimal::MAX)
    };
    (lower, up_tos[idx])
}

fn range_text(lower: Decimal, upper: Option<Decimal>, convention: TierConvention) -> RangeText {
    RangeText {
        lower,
        upper,
        convention,
    }
}

/// A tier's range as text (`(1000, 5000]`, `[0, ∞)`), written where it is formatted (no
/// string of its own).
struct RangeText {
    lower: Decimal,
    upper: Option<Decimal>,
    convention: TierConvention,
}

impl std::fmt::Display for RangeText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, close) = match self.convention {
            TierConvention::UpperInclusive => ('(', ']'),
            TierConvention::LowerInclusive => ('[', ')'),
        };
        let open = if self.lower.is_zero() { '[' } else { open };
        match self.upper {
            Some(upper) => write!(
                f,
                "{open}{}, {}{close}",
                normalized_text(self.lower),
                normalized_text(upper)
            ),
            None => write!(f, "{open}{}, ∞)", normalized_text(self.lower)),
        }
    }
}

/// Index of the tier (or band) a total quantity reaches. Assumes validated, increasing bounds.
pub fn tier_reached(
    up_tos: &[Option<Decimal>],
    quantity: Decimal,
    convention: TierConvention,
) -> usize {
    let last = up_tos.len().saturating_sub(1);
    for (idx, up_to) in up_tos.iter().enumerate() {
        let Some(up_to) = up_to else { return idx };
        let inside = match convention {
            TierConvention::UpperInclusive => quantity <= *up_to,
            TierConvention::LowerInclusive => quantity < *up_to,
        };
        if inside {
            return idx;
        }
    }
    last
}

fn enters(quantity: Decimal, lower: Decimal, convention: TierConvention) -> bool {
    if quantity <= Decimal::ZERO {
        return false;
    }
    match convention {
        TierConvention::UpperInclusive => quantity > lower,
        TierConvention::LowerInclusive => quantity >= lower,
    }
}

/// Graduated tiers: each tier prices the units inside it. `price_scale` multiplies every unit
/// price (1 for money per unit, 1/100 for percentage tiers).
pub fn graduated(
    tiers: &[Tier],
    quantity: Decimal,
    convention: TierConvention,
    price_scale: Decimal,
) -> Result<Priced, Overflow> {
    graduated_into(tiers, quantity, convention, price_scale)
}

/// [`graduated`] into any [`Rows`].
pub fn graduated_into<R: Rows>(
    tiers: &[Tier],
    quantity: Decimal,
    convention: TierConvention,
    price_scale: Decimal,
) -> Result<R, Overflow> {
    let priced = R::default();
    // No tier is entered by a zero or negative quantity (`enters`), so none is looked at.
    if quantity <= Decimal::ZERO {
        return Ok(priced);
    }
    graduated_from(
        tiers,
        0,
        Decimal::ZERO,
        priced,
        quantity,
        convention,
        price_scale,
    )
}

/// What [`graduated_amount`] knows of a graduated charge's tiers ahead of any quantity
/// ([`graduated_prefix`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GraduatedPrefix {
    /// `amounts[k]`: the amount of tiers `0..k` (as [`AmountOnly`] adds it, in the same order)
    /// for a quantity beyond tier `k - 1`'s bound, which depends on the tiers alone.
    amounts: Vec<Decimal>,
    /// `floors[j][s]`: ⌊bound of tier `j` × 10^s⌋, so that a positive quantity of scale `s`
    /// and mantissa `m` is beyond the bound exactly when `m > floors[j][s]` (an integer
    /// comparison instead of a decimal one, which rescales); `None` past `u128`.
    floors: Vec<[Option<u128>; FLOOR_SCALES]>,
}

/// Quantity scales (0 to 12 decimals) with integer bounds in a [`GraduatedPrefix`].
const FLOOR_SCALES: usize = 13;

/// The prefix amounts and integer bounds of graduated `tiers` (see [`GraduatedPrefix`]): with
/// them, [`graduated_amount`] starts at the tier a quantity ends in instead of at the first.
/// `None` when the bounds do not strictly increase or an amount does not fit (the caller prices
/// tier by tier).
pub fn graduated_prefix(tiers: &[Tier], price_scale: Decimal) -> Option<GraduatedPrefix> {
    let mut prefix = GraduatedPrefix {
        amounts: vec![Decimal::ZERO],
        floors: Vec::new(),
    };
    let mut lower = Decimal::ZERO;
    for (tier_idx, tier) in tiers.iter().enumerate() {
        let Some(upper) = tier.up_to.map(Decimal::from) else {
            // Only the last tier may be unbounded; nothing passes through it whole.
            return (tier_idx + 1 == tiers.len()).then_some(prefix);
        };
        if upper <= lower {
            return None;
        }
        // Any quantity beyond `upper` passes through tiers `0..=tier_idx` whole, the same way
        // under either convention (`min(q, upper)` is the bound itself, and every whole tier
        // is entered): price one by the same code.
        let beyond = add(upper, Decimal::ONE).ok()?;
        let whole = &tiers[..=tier_idx];
        let state: AmountOnly = graduated_from(
            whole,
            0,
            Decimal::ZERO,
            AmountOnly::default(),
            beyond,
            TierConvention::UpperInclusive,
            price_scale,
        )
        .ok()?;
        prefix.amounts.push(state.0);
        prefix.floors.push(floors_of(upper));
        lower = upper;
    }
    Some(prefix)
}

/// ⌊`bound` × 10^s⌋ for each scale `s` of [`GraduatedPrefix::floors`] (`bound` positive).
fn floors_of(bound: Decimal) -> [Option<u128>; FLOOR_SCALES] {
    let mantissa = bound.mantissa().unsigned_abs();
    let bound_scale = bound.scale();
    std::array::from_fn(|scale| {
        let scale = scale as u32;
        if scale >= bound_scale {
            mantissa.checked_mul(10u128.checked_pow(scale - bound_scale)?)
        } else {
            Some(mantissa / 10u128.pow(bound_scale - scale))
        }
    })
}

/// Whether positive `quantity` is beyond the bound of tier `tier_idx` (`quantity > up_to`).
fn beyond_bound(
    prefix: &GraduatedPrefix,
    tiers: &[Tier],
    tier_idx: usize,
    quantity: Decimal,
) -> bool {
    let floor = prefix
        .floors
        .get(tier_idx)
        .and_then(|floors| floors.get(quantity.scale() as usize).copied().flatten());
    match (floor, tiers.get(tier_idx).and_then(|t| t.up_to)) {
        (Some(floor), _) => quantity.mantissa().unsigned_abs() > floor,
        (None, Some(upper)) => quantity > upper.0,
        (None, None) => false,
    }
}

/// [`graduated_into`] of [`AmountOnly`] with the [`graduated_prefix`] of these tiers and
/// `price_scale`: the same decimal, digit for digit and scale for scale (the same additions in
/// the same order), with the whole tiers skipped.
pub fn graduated_amount(
    tiers: &[Tier],
    prefix: &GraduatedPrefix,
    quantity: Decimal,
    convention: TierConvention,
    price_scale: Decimal,
) -> Result<Decimal, Overflow> {
    if quantity <= Decimal::ZERO {
        return Ok(Decimal::ZERO);
    }
    // Tiers `0..whole` lie wholly below the quantity (their bounds strictly increase).
    let mut whole = 0;
    while whole + 1 < prefix.amounts.len() && beyond_bound(prefix, tiers, whole, quantity) {
        whole += 1;
    }
    let lower = match whole {
        0 => Decimal::ZERO,
        _ => tiers[whole - 1].up_to.map_or(Decimal::MAX, Decimal::from),
    };
    let state = AmountOnly(prefix.amounts[whole]);
    Ok(graduated_from(
        tiers,
        whole,
        lower,
        state,
        quantity,
        convention,
        price_scale,
    )?
    .0)
}

/// [`graduated_into`] from tier `first` (whose lower bound is `lower`) on, adding to `priced`.
fn graduated_from<R: Rows>(
    tiers: &[Tier],
    first: usize,
    mut lower: Decimal,
    mut priced: R,
    quantity: Decimal,
    convention: TierConvention,
    price_scale: Decimal,
) -> Result<R, Overflow> {
    for (tier_idx, tier) in tiers.iter().enumerate().skip(first) {
        if !enters(quantity, lower, convention) {
            break;
        }
        let upper = tier.up_to.map(Decimal::from);
        let top = match upper {
            Some(upper) => quantity.min(upper),
            None => quantity,
        };
        let n_units = sub(top, lower)?.max(Decimal::ZERO);
        if !n_units.is_zero() || !tier.unit_price.is_zero() {
            // × 1 is a non-zero price itself (same digits, same scale; a zero product is
            // `Decimal::ZERO`): skip the multiplication.
            // (`price_scale` is `1` at scale 0 exactly when its mantissa is 1 and its scale 0.)
            let unit_price = if price_scale.scale() == 0
                && price_scale.mantissa() == 1
                && !tier.unit_price.is_zero()
            {
                tier.unit_price.0
            } else {
                mul(tier.unit_price.0, price_scale)?
            };
            let amount = mul(n_units, unit_price)?;
            priced.push_row(amount, |amount| {
                BreakdownRow::units(
                    format!(
                        "tier {} {}: {} × {}",
                        tier_idx + 1,
                        range_text(lower, upper, convention),
                        normalized_text(n_units),
                        normalized_text(unit_price)
                    ),
                    n_units,
                    unit_price,
                    amount,
                )
            })?;
        }
        if !tier.flat_fee.is_zero() {
            priced.push_row(tier.flat_fee.0, |amount| {
                BreakdownRow::fee(
                    format!(
                        "tier {} {}: flat fee",
                        tier_idx + 1,
                        range_text(lower, upper, convention)
                    ),
                    amount,
                )
            })?;
        }
        // The next tier starts at this one's bound (an unbounded tier is the last).
        lower = upper.unwrap_or(Decimal::MAX);
    }
    Ok(priced)
}

/// The first tier's flat fee alone: what a graduated or volume charge with `zero_usage`
/// `first_tier_flat_fee` bills for a zero (or negative) quantity.
pub fn first_tier_fee_at_zero(
    tiers: &[Tier],
    convention: TierConvention,
) -> Result<Priced, Overflow> {
    first_tier_fee_at_zero_into(tiers, convention)
}

/// [`first_tier_fee_at_zero`] into any [`Rows`].
pub fn first_tier_fee_at_zero_into<R: Rows>(
    tiers: &[Tier],
    convention: TierConvention,
) -> Result<R, Overflow> {
    let mut priced = R::default();
    let Some(first) = tiers.first() else {
        return Ok(priced);
    };
    if !first.flat_fee.is_zero() {
        priced.push_row(first.flat_fee.0, |fee| {
            let up_tos: Vec<Option<Decimal>> =
                tiers.iter().map(|t| t.up_to.map(Decimal::from)).collect();
            let (lower, upper) = bounds(&up_tos, 0);
            BreakdownRow::fee(
                format!(
                    "tier 1 {}: flat fee, due at zero usage",
                    range_text(lower, upper, convention)
                ),
                fee,
            )
        })?;
    }
    Ok(priced)
}

/// Volume tiers: every unit at the price of the tier the total reaches, plus its flat fee.
pub fn volume(
    tiers: &[Tier],
    quantity: Decimal,
    convention: TierConvention,
) -> Result<Priced, Overflow> {
    volume_into(tiers, quantity, convention)
}

/// [`volume`] into any [`Rows`].
pub fn volume_into<R: Rows>(
    tiers: &[Tier],
    quantity: Decimal,
    convention: TierConvention,
) -> Result<R, Overflow> {
    let mut priced = R::default();
    if quantity <= Decimal::ZERO || tiers.is_empty() {
        return Ok(priced);
    }
    let up_tos: Vec<Option<Decimal>> = tiers.iter().map(|t| t.up_to.map(Decimal::from)).collect();
    let tier_idx = tier_reached(&up_tos, quantity, convention);
    let range = || {
        let (lower, upper) = bounds(&up_tos, tier_idx);
        range_text(lower, upper, convention)
    };
    let tier = &tiers[tier_idx];
    priced.push_row(mul(quantity, tier.unit_price.0)?, |amount| {
        BreakdownRow::units(
            format!(
                "all {} units at tier {} {}: × {}",
                normalized_text(quantity),
                tier_idx + 1,
                range(),
                normalized_text(tier.unit_price)
            ),
            quantity,
            tier.unit_price.0,
            amount,
        )
    })?;
    if !tier.flat_fee.is_zero() {
        priced.push_row(tier.flat_fee.0, |amount| {
            BreakdownRow::fee(
                format!("tier {} {}: flat fee", tier_idx + 1, range()),
                amount,
            )
        })?;
    }
    Ok(priced)
}

/// Volume prorated for a partial period (`usage_proration` `tier_by_full_units`): the tier is
/// the one the `full` units reach, the `billed` units (the full units × `share` of the period)
/// pay its unit price, and its flat fee is due in full. Nothing when no unit is billed.
/// The tier `quantity` reaches and its range's text.
fn reached_with_range(
    up_tos: &[Option<Decimal>],
    quantity: Decimal,
    convention: TierConvention,
) -> (usize, RangeText) {
    let idx = tier_reached(up_tos, quantity, convention);
    let (lower, upper) = bounds(up_tos, idx);
    (idx, range_text(lower, upper, convention))
}

pub fn volume_prorated(
    tiers: &[Tier],
    full: Decimal,
    billed: Decimal,
    share: Decimal,
    convention: TierConvention,
) -> Result<Priced, Overflow> {
    volume_prorated_into(tiers, full, billed, Some(share), convention)
}

/// [`volume_prorated`] into any [`Rows`]; without `share` (units prorated by the days each
/// was held, not by one share of the period) the row does not name one.
pub fn volume_prorated_into<R: Rows>(
    tiers: &[Tier],
    full: Decimal,
    billed: Decimal,
    share: Option<Decimal>,
    convention: TierConvention,
) -> Result<R, Overflow> {
    let mut priced = R::default();
    if full <= Decimal::ZERO || billed <= Decimal::ZERO || tiers.is_empty() {
        return Ok(priced);
    }
    let up_tos: Vec<Option<Decimal>> = tiers.iter().map(|t| t.up_to.map(Decimal::from)).collect();
    let (tier_idx, range) = reached_with_range(&up_tos, full, convention);
    let tier = &tiers[tier_idx];
    priced.push_row(mul(billed, tier.unit_price.0)?, |amount| {
        BreakdownRow::units(
            format!(
                "tier {} {range} chosen by the full {} units; {} units billed{}: × {}",
                tier_idx + 1,
                normalized_text(full),
                normalized_text(billed),
                share.map_or(String::new(), |share| format!(
                    " ({} of the period)",
                    normalized_text(share.round_dp(6))
                )),
                normalized_text(tier.unit_price)
            ),
            billed,
            tier.unit_price.0,
            amount,
        )
    })?;
    if !tier.flat_fee.is_zero() {
        priced.push_row(tier.flat_fee.0, |fee| {
            BreakdownRow::fee(
                format!("tier {} {range}: flat fee, not prorated", tier_idx + 1),
                fee,
            )
        })?;
    }
    Ok(priced)
}

/// Stairstep: the flat price of the band the total reaches.
pub fn stairstep(
    steps: &[Step],
    quantity: Decimal,
    convention: TierConvention,
) -> Result<Priced, Overflow> {
    stairstep_into(steps, quantity, convention)
}

/// [`stairstep`] into any [`Rows`].
pub fn stairstep_into<R: Rows>(
    steps: &[Step],
    quantity: Decimal,
    convention: TierConvention,
) -> Result<R, Overflow> {
    let mut priced = R::default();
    if quantity <= Decimal::ZERO || steps.is_empty() {
        return Ok(priced);
    }
    let up_tos: Vec<Option<Decimal>> = steps.iter().map(|s| s.up_to.map(Decimal::from)).collect();
    let step_idx = tier_reached(&up_tos, quantity, convention);
    priced.push_row((steps[step_idx].price).0, |amount| {
        let (lower, upper) = bounds(&up_tos, step_idx);
        BreakdownRow::fee(
            format!(
                "band {} {}: {} units",
                step_idx + 1,
                range_text(lower, upper, convention),
                normalized_text(quantity)
            ),
            amount,
        )
    })?;
    Ok(priced)
}

/// Packages: units beyond the free ones, in packages rounded up or down, each at one price.
pub fn package(
    quantity: Decimal,
    package_size: Decimal,
    package_price: Decimal,
    free_units: Decimal,
    rounding: PackageRounding,
) -> Result<Priced, Overflow> {
    package_into(quantity, package_size, package_price, free_units, rounding)
}

/// [`package`] into any [`Rows`].
pub fn package_into<R: Rows>(
    quantity: Decimal,
    package_size: Decimal,
    package_price: Decimal,
    free_units: Decimal,
    rounding: PackageRounding,
) -> Result<R, Overflow> {
    let mut priced = R::default();
    let billable = sub(quantity, free_units)?.max(Decimal::ZERO);
    if !free_units.is_zero() {
        priced.note(|| {
            BreakdownRow::units(
                format!(
                    "{} free units",
                    normalized_text(quantity.min(free_units).max(Decimal::ZERO))
                ),
                quantity.min(free_units).max(Decimal::ZERO),
                Decimal::ZERO,
                Decimal::ZERO,
            )
        });
    }
    if package_size <= Decimal::ZERO {
        return Err(Overflow);
    }
    let strategy = match rounding {
        PackageRounding::Up => RoundingStrategy::ToPositiveInfinity,
        PackageRounding::Down => RoundingStrategy::ToNegativeInfinity,
    };
    let n_packages = div(billable, package_size)?.round_dp_with_strategy(0, strategy);
    priced.push_row(mul(n_packages, package_price)?, |amount| {
        BreakdownRow::units(
            format!(
                "{} units in {} packages of {} (rounded {})",
                normalized_text(billable),
                crate::decimal::text(n_packages),
                normalized_text(package_size),
                match rounding {
                    PackageRounding::Up => "up",
                    PackageRounding::Down => "down",
                }
            ),
            n_packages,
            package_price,
            amount,
        )
    })?;
    Ok(priced)
}

/// The parameters of a percentage charge.
#[derive(Clone, Copy, Debug)]
pub struct PercentageTerms<'a> {
    pub percent: Option<Decimal>,
    pub tiers: &'a [Tier],
    pub fixed_fee: Option<Decimal>,
    pub min_per_transaction: Option<Decimal>,
    pub max_per_transaction: Option<Decimal>,
    /// The first N transactions pay nothing.
    pub free_events: Option<u64>,
    /// The transactions within the free amount pay no fixed fee (Lago's free amount alone:
    /// `fixed_fee_within_free_amount` `waived`); needs each transaction's running total.
    pub waive_fixed_fee_within_free_amount: bool,
}

impl PercentageTerms<'_> {
    /// Per-transaction bounds make each transaction's fee depend on its own amount, and free
    /// events depend on which transactions came first.
    pub fn needs_transactions(&self) -> bool {
        self.min_per_transaction.is_some()
            || self.max_per_transaction.is_some()
            || self.free_events.is_some()
            || self.waive_fixed_fee_within_free_amount
    }
}

/// A percentage of transaction amounts. `total` is the sum of amounts; `n_transactions` their
/// count; `transactions` the individual amounts, required when the terms have per-transaction
/// bounds (the caller checks).
pub fn percentage(
    terms: PercentageTerms<'_>,
    total: Decimal,
    n_transactions: u64,
    transactions: Option<&[Decimal]>,
    convention: TierConvention,
) -> Result<Priced, Overflow> {
    percentage_into(terms, total, n_transactions, transactions, convention)
}

/// [`percentage`] into any [`Rows`].
pub fn percentage_into<R: Rows>(
    terms: PercentageTerms<'_>,
    total: Decimal,
    n_transactions: u64,
    transactions: Option<&[Decimal]>,
    convention: TierConvention,
) -> Result<R, Overflow> {
    let fixed_fee = terms.fixed_fee.unwrap_or_default();
    if let (true, Some(transactions)) = (terms.needs_transactions(), transactions) {
        let percent = terms.percent.unwrap_or_default();
        let mut priced = R::default();
        let (mut n_raised, mut n_capped) = (0u64, 0u64);
        let mut sum = Decimal::ZERO;
        let n_free = usize::try_from(terms.free_events.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(transactions.len());
        let (free, paid) = transactions.split_at(n_free);
        if !free.is_empty() {
            let free_total = free.iter().try_fold(Decimal::ZERO, |acc, a| add(acc, *a))?;
            priced.note(|| {
                BreakdownRow::units(
                    format!(
                        "first {} transactions free, totalling {}",
                        free.len(),
                        normalized_text(free_total)
                    ),
                    Decimal::from(free.len()),
                    Decimal::ZERO,
                    Decimal::ZERO,
                )
            });
        }
        for amount in paid {
            let mut fee = add(percent_of(*amount, percent)?, fixed_fee)?;
            if let Some(min) = terms.min_per_transaction
                && fee < min
            {
                fee = min;
                n_raised += 1;
            }
            if let Some(max) = terms.max_per_transaction
                && fee > max
            {
                fee = max;
                n_capped += 1;
            }
            sum = add(sum, fee)?;
        }
        let n = paid.len();
        let paid_total = if free.is_empty() {
            total
        } else {
            paid.iter().try_fold(Decimal::ZERO, |acc, a| add(acc, *a))?
        };
        let bounds = if terms.min_per_transaction.is_some() || terms.max_per_transaction.is_some() {
            format!(", {n_raised} raised to the minimum, {n_capped} capped at the maximum")
        } else {
            String::new()
        };
        priced.push_row(sum, |sum| {
            BreakdownRow::fee(
                format!(
                    "{n} transactions totalling {}: {}% + {} each{bounds}",
                    normalized_text(paid_total),
                    normalized_text(percent),
                    normalized_text(fixed_fee)
                ),
                sum,
            )
        })?;
        return Ok(priced);
    }
    let mut priced = if terms.tiers.is_empty() {
        let percent = terms.percent.unwrap_or_default();
        let mut priced = R::default();
        let rate = div(percent, Decimal::ONE_HUNDRED)?;
        priced.push_row(percent_of(total, percent)?, |amount| {
            BreakdownRow::units(
                format!(
                    "{}% of {}",
                    normalized_text(percent),
                    normalized_text(total)
                ),
                total,
                rate,
                amount,
            )
        })?;
        priced
    } else {
        graduated_into(terms.tiers, total, convention, Decimal::new(1, 2))?
    };
    if !fixed_fee.is_zero() && n_transactions > 0 {
        let n = Decimal::from(n_transactions);
        priced.push_row(mul(n, fixed_fee)?, |amount| {
            BreakdownRow::units(
                format!(
                    "{n_transactions} transactions × {} fixed fee",
                    normalized_text(fixed_fee)
                ),
                n,
                fixed_fee,
                amount,
            )
        })?;
    }
    Ok(priced)
}

/// A percentage charge's free amount (the charge's `included`, Lago's
/// `free_units_per_total_aggregation`) taken from the transactions themselves, combined with
/// free events and/or per-transaction bounds, as Lago computes it
/// (getlago/lago-api `app/services/charge_models/percentage_service.rb`):
///
/// - with a per-transaction minimum or maximum, transaction by transaction
///   (`compute_amount_with_transaction_min_max`): while free events or free amount remain, a
///   transaction takes one free event and, when some free amount remains, is free if the
///   amount left is above its value; otherwise its value less the amount left pays and both
///   counters end; every paying transaction pays `percent` of what it pays on + `fixed_fee`,
///   bounded by the minimum and maximum;
/// - without bounds, on the totals (`free_units_value`, `free_units_count`): the free amount is
///   the running total of the first `free_events` transactions, at most the free amount; the
///   fixed fee is waived for the transactions whose running total (among the first
///   `free_events`) is below the free amount, or for all the first `free_events` when none is;
///   no fixed fee is due when the transactions total zero;
/// - the free amount alone (`fixed_fee_within_free_amount` `waived`, no free events, no bounds):
///   the free amount is taken off the total (at most the total); the fixed fee is waived for
///   the transactions whose running total is below the free amount (Lago's `free_units_count`
///   over its `running_total_per_aggregation`), none when no running total is.
pub fn percentage_free_amount_into<R: Rows>(
    terms: PercentageTerms<'_>,
    total: Decimal,
    free_amount: Decimal,
    transactions: &[Decimal],
) -> Result<R, Overflow> {
    if terms.min_per_transaction.is_some() || terms.max_per_transaction.is_some() {
        free_amount_by_transaction(terms, free_amount, transactions)
    } else {
        free_amount_on_totals(terms, total, free_amount, transactions)
    }
}

/// Lago's per-transaction loop: the free events and the free amount are spent together,
/// transaction by transaction.
fn free_amount_by_transaction<R: Rows>(
    terms: PercentageTerms<'_>,
    free_amount: Decimal,
    transactions: &[Decimal],
) -> Result<R, Overflow> {
    let percent = terms.percent.unwrap_or_default();
    let fixed_fee = terms.fixed_fee.unwrap_or_default();
    let mut free_events_left = terms.free_events.unwrap_or(0);
    let mut free_amount_left = free_amount;
    let (mut n_free, mut free_of_rate) = (0u64, Decimal::ZERO);
    let mut partly_free: Option<(usize, Decimal)> = None;
    let (mut n_paid, mut paid_on, mut sum) = (0u64, Decimal::ZERO, Decimal::ZERO);
    let (mut n_raised, mut n_capped) = (0u64, 0u64);
    for (idx, amount) in transactions.iter().enumerate() {
        let mut value = *amount;
        if free_events_left > 0 || free_amount_left > Decimal::ZERO {
            free_events_left = free_events_left.saturating_sub(1);
            if free_amount_left <= Decimal::ZERO || free_amount_left > value {
                if free_amount_left > Decimal::ZERO {
                    free_amount_left = sub(free_amount_left, value)?;
                }
                n_free += 1;
                free_of_rate = add(free_of_rate, value)?;
                continue;
            }
            value = sub(value, free_amount_left)?;
            free_of_rate = add(free_of_rate, free_amount_left)?;
            partly_free = Some((idx + 1, free_amount_left));
            free_amount_left = Decimal::ZERO;
            free_events_left = 0;
        }
        let mut fee = add(percent_of(value, percent)?, fixed_fee)?;
        if let Some(min) = terms.min_per_transaction
            && fee < min
        {
            fee = min;
            n_raised += 1;
        } else if let Some(max) = terms.max_per_transaction
            && fee > max
        {
            fee = max;
            n_capped += 1;
        }
        sum = add(sum, fee)?;
        n_paid += 1;
        paid_on = add(paid_on, value)?;
    }
    let mut priced = R::default();
    priced.note(|| {
        let partly = partly_free.map_or(String::new(), |(nth, free)| {
            format!(", {} of transaction {nth} free", normalized_text(free))
        });
        BreakdownRow::units(
            format!(
                "free amount {}{}: {n_free} transactions free{partly} ({} free of the rate)",
                normalized_text(free_amount),
                terms
                    .free_events
                    .map_or(String::new(), |n| format!(" and {n} free transactions")),
                normalized_text(free_of_rate)
            ),
            Decimal::from(n_free),
            Decimal::ZERO,
            Decimal::ZERO,
        )
    });
    priced.push_row(sum, |sum| {
        BreakdownRow::fee(
            format!(
                "{n_paid} transactions paying on {}: {}% + {} each, {n_raised} raised to the minimum, {n_capped} capped at the maximum",
                normalized_text(paid_on),
                normalized_text(percent),
                normalized_text(fixed_fee)
            ),
            sum,
        )
    })?;
    Ok(priced)
}

/// Lago's rule without per-transaction bounds: the free amount within the first free events,
/// computed on running totals.
fn free_amount_on_totals<R: Rows>(
    terms: PercentageTerms<'_>,
    total: Decimal,
    free_amount: Decimal,
    transactions: &[Decimal],
) -> Result<R, Overflow> {
    let percent = terms.percent.unwrap_or_default();
    // Without free events (the free amount alone), every transaction's running total counts.
    let n_free_events = terms
        .free_events
        .unwrap_or(u64::try_from(transactions.len()).unwrap_or(u64::MAX));
    let firsts = usize::try_from(n_free_events)
        .unwrap_or(usize::MAX)
        .min(transactions.len());
    let (mut running, mut n_below) = (Decimal::ZERO, 0u64);
    for amount in &transactions[..firsts] {
        running = add(running, *amount)?;
        if running < free_amount {
            n_below += 1;
        }
    }
    // `free_units_value`: the running total of the first free events, at most the free amount.
    let free_value = if running.is_zero() || free_amount.is_zero() || running <= free_amount {
        running
    } else {
        free_amount
    };
    // `free_units_count`: the smaller of the free events and the transactions below the free
    // amount, a zero left out.
    let n_free = match (n_below, terms.free_events) {
        (0, Some(n_free_events)) => n_free_events,
        (0, None) => 0,
        (n_below, _) => n_below.min(n_free_events),
    };
    let rate_base = if free_value > total {
        Decimal::ZERO
    } else {
        sub(total, free_value)?
    };
    let mut priced = R::default();
    priced.note(|| {
        let within = match terms.free_events {
            Some(_) => format!(
                "within the first {n_free_events} transactions (totalling {})",
                normalized_text(running)
            ),
            None => format!(
                "of {n_free_events} transactions totalling {}",
                normalized_text(running)
            ),
        };
        BreakdownRow::units(
            format!(
                "free amount {} {within}: {} free of the rate, {n_free} transactions free of the fixed fee",
                normalized_text(free_amount),
                normalized_text(free_value)
            ),
            Decimal::from(n_free),
            Decimal::ZERO,
            Decimal::ZERO,
        )
    });
    let rate = div(percent, Decimal::ONE_HUNDRED)?;
    priced.push_row(percent_of(rate_base, percent)?, |amount| {
        BreakdownRow::units(
            format!(
                "{}% of {}",
                normalized_text(percent),
                normalized_text(rate_base)
            ),
            rate_base,
            rate,
            amount,
        )
    })?;
    let n_transactions = u64::try_from(transactions.len()).unwrap_or(u64::MAX);
    if let Some(fixed_fee) = terms.fixed_fee
        && !fixed_fee.is_zero()
        && !total.is_zero()
        && n_free < n_transactions
    {
        let n_paying = n_transactions - n_free;
        let n = Decimal::from(n_paying);
        priced.push_row(mul(n, fixed_fee)?, |amount| {
            BreakdownRow::units(
                format!(
                    "{n_paying} transactions × {} fixed fee",
                    normalized_text(fixed_fee)
                ),
                n,
                fixed_fee,
                amount,
            )
        })?;
    }
    Ok(priced)
}

/// One of Lago's graduated ranges as its prorated graduated calculator reads it: whole units
/// `from`–`to` (`to` inclusive, `None` for the last), a unit price and a flat amount.
#[derive(Clone, Copy, Debug)]
struct LagoRange {
    from: Decimal,
    to: Option<Decimal>,
    unit_price: Decimal,
    flat_fee: Decimal,
}

/// Lago's ranges of `tiers`: from 0, then each previous `up_to` + 1 (Lago's `from_value`).
fn lago_ranges(tiers: &[Tier]) -> Result<Vec<LagoRange>, Overflow> {
    let mut ranges = Vec::with_capacity(tiers.len());
    let mut from = Decimal::ZERO;
    for tier in tiers {
        let to = tier.up_to.map(Decimal::from);
        ranges.push(LagoRange {
            from,
            to,
            unit_price: tier.unit_price.into(),
            flat_fee: tier.flat_fee.into(),
        });
        if let Some(to) = to {
            from = add(to, Decimal::ONE)?;
        }
    }
    Ok(ranges)
}

/// Lago's prorated graduated charge (getlago/lago-api
/// `app/services/charge_models/prorated_graduated_service.rb`, `compute_amount`), ported step
/// for step: the events in time order, each as (full value, prorated value); the running sum of
/// full values chooses the range, the prorated values are priced at its unit price, and an
/// event crossing a range's bound is split between the ranges by its prorated / full ratio (the
/// "overflow"). The flat amounts of the ranges up to the highest full sum reached are added;
/// a negative final full sum bills 0, a negative amount is 0. With no prorated units, the
/// first range's flat amount. `Err` on an overflow or when the steps do not end (they always
/// do: each step enters a range or takes an event).
pub fn lago_prorated_graduated_into<R: Rows>(
    tiers: &[Tier],
    events: &[(Decimal, Decimal)],
) -> Result<R, Overflow> {
    let ranges = lago_ranges(tiers)?;
    let Some(first) = ranges.first().copied() else {
        return Ok(R::default());
    };
    let coefficient = |idx: usize| -> Result<Decimal, Overflow> {
        let (full, prorated) = *events.get(idx).ok_or(Overflow)?;
        if full.is_zero() {
            Ok(Decimal::ZERO)
        } else {
            div(prorated, full)
        }
    };
    let units = events
        .iter()
        .try_fold(Decimal::ZERO, |acc, (_, prorated)| add(acc, *prorated))?;
    let mut priced = R::default();
    if units.is_zero() {
        priced.push_row(first.flat_fee, |amount| {
            BreakdownRow::fee(
                "no unit held: range 1's flat amount (Lago's prorated graduated)".to_owned(),
                amount,
            )
        })?;
        return Ok(priced);
    }
    let range_of = |full_units: Decimal,
                    overflow: Decimal,
                    next: Option<Decimal>|
     -> Result<LagoRange, Overflow> {
        if full_units <= Decimal::ZERO {
            return Ok(first);
        }
        let units = if overflow.is_zero() {
            full_units
        } else if overflow > Decimal::ZERO {
            add(sub(full_units, overflow)?, Decimal::ONE)?
        } else {
            add(full_units, overflow)?
        };
        for (idx, range) in ranges.iter().enumerate() {
            if Some(units) == range.to {
                // Usage resting on a range's top moves to the next range when an event follows.
                if next.is_some_and(|n| n > Decimal::ZERO)
                    && let Some(next_range) = ranges.get(idx + 1)
                {
                    return Ok(*next_range);
                }
                return Ok(*range);
            }
            if units >= range.from && range.to.is_none_or(|to| units < to) {
                return Ok(*range);
            }
        }
        Ok(first)
    };
    let (mut index, mut overflow) = (0usize, Decimal::ZERO);
    let (mut full_sum, mut max_full_sum) = (Decimal::ZERO, Decimal::ZERO);
    let (mut prorated_sum, mut result) = (Decimal::ZERO, Decimal::ZERO);
    let mut range = first;
    let mut steps_left = events
        .len()
        .saturating_add(1)
        .saturating_mul(ranges.len().saturating_add(2));
    while index < events.len() || !overflow.is_zero() {
        steps_left = steps_left.checked_sub(1).ok_or(Overflow)?;
        range = range_of(full_sum, overflow, events.get(index).map(|e| e.0))?;
        if !overflow.is_zero() {
            let ratio = coefficient(index.saturating_sub(1))?;
            prorated_sum = add(prorated_sum, mul(overflow, ratio)?)?;
            if let Some(to) = range.to
                && full_sum >= to
            {
                overflow = sub(full_sum, to)?;
                prorated_sum = sub(prorated_sum, mul(overflow, ratio)?)?;
                result = add(result, mul(prorated_sum, range.unit_price)?)?;
                prorated_sum = Decimal::ZERO;
                continue;
            }
            overflow = Decimal::ZERO;
        }
        let Some(&(full, prorated)) = events.get(index) else {
            break;
        };
        // An added unit held for no day, and the removal of such a unit, change no range.
        if prorated.is_zero()
            && (full > Decimal::ZERO
                || (full < Decimal::ZERO && add(full_sum, full)? < Decimal::ZERO))
        {
            index += 1;
            continue;
        }
        full_sum = add(full_sum, full)?;
        max_full_sum = max_full_sum.max(full_sum);
        prorated_sum = add(prorated_sum, prorated)?;
        index += 1;
        let within = match range.to {
            None => full_sum >= sub(range.from, Decimal::ONE)?,
            Some(to) => full_sum < to && full_sum >= range.from,
        };
        if within {
            continue;
        }
        overflow = match range.to {
            Some(to) if full_sum >= to => sub(full_sum, to)?,
            _ => add(sub(full_sum, range.from)?, Decimal::ONE)?,
        };
        prorated_sum = sub(
            prorated_sum,
            mul(overflow, coefficient(index.saturating_sub(1))?)?,
        )?;
        result = add(result, mul(prorated_sum, range.unit_price)?)?;
        prorated_sum = Decimal::ZERO;
    }
    result = add(result, mul(prorated_sum, range.unit_price)?)?;
    if full_sum < Decimal::ZERO {
        priced.push_row(Decimal::ZERO, |amount| {
            BreakdownRow::fee(
                format!(
                    "{} events ending at {} units: billed 0 (Lago's prorated graduated)",
                    events.len(),
                    normalized_text(full_sum)
                ),
                amount,
            )
        })?;
        return Ok(priced);
    }
    let result = result.max(Decimal::ZERO);
    priced.push_row(result, |amount| {
        BreakdownRow::fee(
            format!(
                "{} events, {} units held by day, priced range by range as the running full units reach them (Lago's prorated graduated)",
                events.len(),
                normalized_text(units)
            ),
            amount,
        )
    })?;
    for (idx, range) in ranges.iter().enumerate() {
        if !range.flat_fee.is_zero() {
            priced.push_row(range.flat_fee, |amount| {
                BreakdownRow::fee(
                    format!(
                        "range {} flat amount (reached by {} units)",
                        idx + 1,
                        normalized_text(max_full_sum)
                    ),
                    amount,
                )
            })?;
        }
        if range.to.is_none_or(|to| max_full_sum <= to) {
            break;
        }
    }
    Ok(priced)
}

/// Every unit at one price.
pub fn per_unit(quantity: Decimal, unit_price: Decimal) -> Result<Priced, Overflow> {
    per_unit_into(quantity, unit_price)
}

/// [`per_unit`] into any [`Rows`].
pub fn per_unit_into<R: Rows>(quantity: Decimal, unit_price: Decimal) -> Result<R, Overflow> {
    let mut priced = R::default();
    priced.push_row(mul(quantity, unit_price)?, |amount| {
        BreakdownRow::units(
            format!(
                "{} × {}",
                normalized_text(quantity),
                normalized_text(unit_price)
            ),
            quantity,
            unit_price,
            amount,
        )
    })?;
    Ok(priced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::Dec;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn tiers(spec: &[(Option<&str>, &str, &str)]) -> Vec<Tier> {
        spec.iter()
            .map(|(up_to, unit_price, flat_fee)| Tier {
                from: None,
                up_to: up_to.map(d).map(Dec),
                unit_price: Dec(d(unit_price)),
                flat_fee: Dec(d(flat_fee)),
            })
            .collect()
    }

    fn check_graduated(convention: TierConvention, quantity: &str, expected: &str) {
        let tiers = tiers(&[
            (Some("50"), "0.10", "5"),
            (Some("100"), "0.08", "2"),
            (None, "0.05", "0"),
        ]);
        let priced = graduated(&tiers, d(quantity), convention, Decimal::ONE).unwrap();
        assert_eq!(
            priced.amount,
            d(expected),
            "{convention:?} at {quantity}: {:#?}",
            priced.breakdown
        );
        let sum: Decimal = priced.breakdown.iter().map(|r| r.amount.0).sum();
        assert_eq!(sum, priced.amount);
    }

    #[test]
    fn graduated_splits_units_and_charges_entered_tier_fees() {
        use TierConvention::*;
        check_graduated(UpperInclusive, "0", "0");
        check_graduated(UpperInclusive, "10", "6.00"); // 10 × 0.10 + 5
        check_graduated(UpperInclusive, "50", "10.00"); // boundary: tier 2 not entered
        check_graduated(LowerInclusive, "50", "12.00"); // boundary: tier 2 entered (its fee)
        check_graduated(UpperInclusive, "50.5", "12.04"); // 5 + 5 + 2 + 0.5 × 0.08
        check_graduated(UpperInclusive, "150", "18.50"); // 5+5 + 4+2 + 2.5
    }

    fn check_volume(convention: TierConvention, quantity: &str, expected: &str) {
        let tiers = tiers(&[
            (Some("10"), "1.00", "0"),
            (Some("20"), "0.90", "3"),
            (None, "0.80", "0"),
        ]);
        let priced = volume(&tiers, d(quantity), convention).unwrap();
        assert_eq!(priced.amount, d(expected), "{convention:?} at {quantity}");
    }

    #[test]
    fn volume_picks_the_tier_reached_at_the_boundary_by_convention() {
        use TierConvention::*;
        check_volume(UpperInclusive, "0", "0");
        check_volume(UpperInclusive, "10", "10.00");
        check_volume(LowerInclusive, "10", "12.00"); // 10 × 0.90 + 3
        check_volume(UpperInclusive, "10.5", "12.45");
        check_volume(UpperInclusive, "25", "20.00");
    }

    #[test]
    fn stairstep_charges_the_band_price() {
        let steps = vec![
            Step {
                from: None,
                up_to: Some(Dec(d("10"))),
                price: Dec(d("50")),
            },
            Step {
                from: None,
                up_to: Some(Dec(d("50"))),
                price: Dec(d("200")),
            },
            Step {
                from: None,
                up_to: None,
                price: Dec(d("500")),
            },
        ];
        let cases = [
            ("0", "0"),
            ("1", "50"),
            ("10", "50"),
            ("10.01", "200"),
            ("51", "500"),
        ];
        for (quantity, expected) in cases {
            let priced = stairstep(&steps, d(quantity), TierConvention::UpperInclusive).unwrap();
            assert_eq!(priced.amount, d(expected), "at {quantity}");
        }
        let priced = stairstep(&steps, d("10"), TierConvention::LowerInclusive).unwrap();
        assert_eq!(priced.amount, d("200"));
    }

    #[test]
    fn packages_round_up_or_down_after_free_units() {
        let cases = [
            ("0", "0", PackageRounding::Up, "0"),
            ("1", "0", PackageRounding::Up, "5"),
            ("1000", "0", PackageRounding::Up, "5"),
            ("1001", "0", PackageRounding::Up, "10"),
            ("1999", "0", PackageRounding::Down, "5"),
            ("1500", "600", PackageRounding::Up, "5"),
            ("100", "600", PackageRounding::Up, "0"),
        ];
        for (quantity, free, rounding, expected) in cases {
            let priced = package(d(quantity), d("1000"), d("5"), d(free), rounding).unwrap();
            assert_eq!(
                priced.amount,
                d(expected),
                "{quantity} free {free} {rounding:?}"
            );
        }
    }

    #[test]
    fn percentage_with_fixed_fee_and_per_transaction_bounds() {
        let terms = PercentageTerms {
            percent: Some(d("2.9")),
            tiers: &[],
            fixed_fee: Some(d("0.30")),
            min_per_transaction: None,
            max_per_transaction: None,
            free_events: None,
            waive_fixed_fee_within_free_amount: false,
        };
        let priced =
            percentage(terms, d("1000"), 10, None, TierConvention::UpperInclusive).unwrap();
        assert_eq!(priced.amount, d("32.00")); // 29 + 3
        let bounded = PercentageTerms {
            min_per_transaction: Some(d("0.50")),
            max_per_transaction: Some(d("5")),
            ..terms
        };
        let transactions = [d("1"), d("100"), d("1000")];
        // 1 → 0.329 → 0.50; 100 → 3.20; 1000 → 29.30 → 5
        let priced = percentage(
            bounded,
            d("1101"),
            3,
            Some(&transactions),
            TierConvention::UpperInclusive,
        )
        .unwrap();
        assert_eq!(priced.amount, d("8.70"));
    }

    /// Lago's free amount with free events or per-transaction bounds, checked against the
    /// figures of getlago/lago-api `spec/services/charge_models/percentage_service_spec.rb`.
    #[test]
    fn lago_free_amount_with_free_events_and_bounds() {
        let check = |terms: PercentageTerms<'_>, free_amount: &str, amounts: &[&str]| {
            let transactions: Vec<Decimal> = amounts.iter().map(|a| d(a)).collect();
            let total = transactions.iter().sum();
            let priced: Priced =
                percentage_free_amount_into(terms, total, d(free_amount), &transactions).unwrap();
            let only: AmountOnly =
                percentage_free_amount_into(terms, total, d(free_amount), &transactions).unwrap();
            assert_eq!(priced.amount, only.amount());
            priced.amount
        };
        let totals = PercentageTerms {
            percent: Some(d("1.3")),
            tiers: &[],
            fixed_fee: Some(d("2")),
            min_per_transaction: None,
            max_per_transaction: None,
            free_events: Some(3),
            waive_fixed_fee_within_free_amount: false,
        };
        let events = ["50", "100", "250", "400"];
        // (800 − 250) × 1.3 % + (4 − 2) × 2
        assert_eq!(check(totals, "250", &events), d("11.15"));
        // The first 3 total 400, below 500: (800 − 400) × 1.3 % + (4 − 3) × 2
        assert_eq!(check(totals, "500", &events), d("7.2"));
        // The first transaction alone reaches the free amount: none is below it, so the fixed
        // fee is waived for all 3 free events (Lago's `free_units_count` leaves the 0 out).
        assert_eq!(check(totals, "10", &events), d("12.27")); // 790 × 1.3 % + 1 × 2
        // Transactions totalling zero pay no fixed fee.
        assert_eq!(check(totals, "10", &["5", "-5", "0", "0"]), d("0"));
        let bounded = PercentageTerms {
            percent: Some(d("2.99")),
            fixed_fee: None,
            min_per_transaction: Some(d("1.75")),
            max_per_transaction: Some(d("12")),
            free_events: None,
            ..totals
        };
        let events = ["10", "80", "10000"];
        // 10 free (20 left), 60 of 80 → 1.794, 10000 → 299 capped at 12
        assert_eq!(check(bounded, "30", &events), d("13.794"));
        // With 3 free events and 10000 free: 10 and 80 free, 90 of 10000 → 2.691
        let both = PercentageTerms {
            free_events: Some(3),
            ..bounded
        };
        assert_eq!(check(both, "10000", &events), d("2.691"));
        // A transaction exactly spending the free amount is not free: it pays on 0, raised to
        // the minimum 1.75; then 2.392 and 12.
        assert_eq!(check(bounded, "10", &events), d("16.142"));
        // The free amount alone, the fixed fee waived within it (spec "when
        // free_units_per_events is nil"): running totals 50, 150 below 250.
        let alone = PercentageTerms {
            free_events: None,
            waive_fixed_fee_within_free_amount: true,
            ..totals
        };
        let events = ["50", "100", "250", "400"];
        assert_eq!(check(alone, "250", &events), d("11.15"));
        // A free amount above the total: nothing at the rate, no fixed fee.
        assert_eq!(check(alone, "1000", &events), d("0"));
        // The first transaction alone reaches it: every transaction pays the fixed fee.
        assert_eq!(check(alone, "10", &events), d("18.27")); // 790 × 1.3 % + 4 × 2
    }

    /// Lago's prorated graduated calculator, checked against the figures of getlago/lago-api
    /// `spec/services/charge_models/prorated_graduated_service_spec.rb`.
    #[test]
    fn lago_prorated_graduated_matches_lagos_spec() {
        let two = tiers(&[(Some("5"), "10", "100"), (None, "5", "50")]);
        let three = tiers(&[
            (Some("5"), "10", "100"),
            (Some("15"), "5", "50"),
            (None, "2", "0"),
        ]);
        let check = |tiers: &[Tier], events: &[(&str, &str)]| {
            let events: Vec<(Decimal, Decimal)> =
                events.iter().map(|(f, p)| (d(f), d(p))).collect();
            let priced: Priced = lago_prorated_graduated_into(tiers, &events).unwrap();
            let only: AmountOnly = lago_prorated_graduated_into(tiers, &events).unwrap();
            assert_eq!(priced.amount, only.amount());
            priced
                .amount
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        };
        let spec = [("5", "3.5"), ("5", "2.66667"), ("10", "2"), ("-6", "-2.2")];
        assert_eq!(check(&two, &spec), d("197.33"));
        assert_eq!(check(&two, &[]), d("100"));
        let partly = [("2", "1.4"), ("5", "2.66667"), ("10", "2"), ("-6", "-2.2")];
        assert_eq!(check(&two, &partly), d("184.33"));
        let to_zero = [
            ("1", "0.7097"),
            ("4", "1.54839"),
            ("1", "0.2258"),
            ("-5", "-0.80645"),
            ("-1", "-0.0645"),
        ];
        assert_eq!(check(&two, &to_zero), d("165.81"));
        assert_eq!(check(&two, &[("5", "3.5"), ("-2", "-1")]), d("125"));
        assert_eq!(
            check(&two, &[("4", "2.8"), ("2", "1"), ("-3", "-0.6")]),
            d("180.5")
        );
        assert_eq!(
            check(
                &two,
                &[("5", "3.5"), ("2", "1"), ("-4", "-1.6"), ("10", "2")]
            ),
            d("190")
        );
        assert_eq!(check(&two, &[("5", "2"), ("-100", "-33.33")]), d("0"));
        assert_eq!(check(&two, &[("4", "1.6"), ("-100", "-33.33")]), d("0"));
        assert_eq!(check(&two, &[("1", "0.7")]), d("107"));
        let one_wide = tiers(&[(Some("1"), "10", "100"), (None, "5", "50")]);
        assert_eq!(check(&one_wide, &[("1", "0.7")]), d("107"));
        let six = [
            ("2", "1.4"),
            ("5", "2.5"),
            ("10", "2"),
            ("-6", "-2.2"),
            ("4", "0.667"),
            ("60", "2"),
        ];
        let amount: Priced = lago_prorated_graduated_into(
            &three,
            &six.iter().map(|(f, p)| (d(f), d(p))).collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(
            amount
                .amount
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToPositiveInfinity),
            d("191.34")
        );
        assert_eq!(check(&three, &[("75", "75")]), d("370"));
    }

    #[test]
    fn graduated_percentage_uses_percent_tiers() {
        let terms = PercentageTerms {
            percent: None,
            tiers: &tiers(&[(Some("10000"), "2.9", "0"), (None, "2.5", "0")]),
            fixed_fee: None,
            min_per_transaction: None,
            max_per_transaction: None,
            free_events: None,
            waive_fixed_fee_within_free_amount: false,
        };
        let priced =
            percentage(terms, d("15000"), 0, None, TierConvention::UpperInclusive).unwrap();
        assert_eq!(priced.amount, d("415")); // 290 + 125
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert_eq!(per_unit(Decimal::MAX, d("2")), Err(Overflow));
        let tiers = tiers(&[(None, "79228162514264337593543950335", "0")]);
        assert_eq!(
            graduated(
                &tiers,
                d("10"),
                TierConvention::UpperInclusive,
                Decimal::ONE
            ),
            Err(Overflow)
        );
    }

    proptest::proptest! {
        /// A graduated amount from the whole tiers' prefix is the tier-by-tier amount, digit
        /// for digit and scale for scale, on and around every bound, under both conventions.
        #[test]
        fn graduated_from_whole_tiers_is_tier_by_tier(
            bounds in proptest::collection::vec((1u64..5_000, 0u32..4), 0..6),
            prices in proptest::collection::vec((0i64..2_000_000, 0u32..8, 0i64..300), 6),
            quantity in (0i64..100_000_000_000, 0u32..15),
            on_bound in 0usize..8,
            unbounded_last in proptest::bool::ANY,
        ) {
            let mut up_tos = Vec::new();
            let mut bound = Decimal::ZERO;
            for (step, scale) in &bounds {
                bound += Decimal::new(*step as i64 * 10i64.pow(*scale), *scale);
                up_tos.push(Some(bound));
            }
            if unbounded_last || up_tos.is_empty() {
                up_tos.push(None);
            }
            let tiers: Vec<Tier> = up_tos
                .iter()
                .zip(&prices)
                .map(|(up_to, (price, scale, fee))| Tier {
                    from: None,
                    up_to: up_to.map(Dec),
                    unit_price: Dec(Decimal::new(*price, *scale)),
                    flat_fee: Dec(Decimal::new(*fee, 1)),
                })
                .collect();
            let mut quantities = vec![Decimal::new(quantity.0, quantity.1), Decimal::ZERO];
            if let Some(Some(bound)) = up_tos.get(on_bound) {
                quantities.extend([*bound, *bound + Decimal::new(1, 3), *bound - Decimal::new(1, 3)]);
            }
            let prefix = graduated_prefix(&tiers, Decimal::ONE).expect("increasing bounds");
            for quantity in quantities {
                for convention in [TierConvention::UpperInclusive, TierConvention::LowerInclusive] {
                    let by_tier: Result<AmountOnly, _> =
                        graduated_into(&tiers, quantity, convention, Decimal::ONE);
                    let fast = graduated_amount(&tiers, &prefix, quantity, convention, Decimal::ONE);
                    let by_tier = by_tier.map(|a| a.0);
                    proptest::prop_assert_eq!(fast, by_tier);
                    if let (Ok(a), Ok(b)) = (fast, by_tier) {
                        proptest::prop_assert_eq!(a.scale(), b.scale());
                        proptest::prop_assert_eq!(a.to_string(), b.to_string());
                    }
                }
            }
        }
    }
}
