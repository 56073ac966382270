//! Plain-text rendering of invoices and validation reports for terminals.

use std::fmt::Write;

use ratecard_engine::invoice::Invoice;
use ratecard_engine::validate::Report;

/// An invoice as an aligned text table with its breakdown.
pub fn invoice(invoice: &Invoice) -> String {
    let mut out = String::new();
    let customer = if invoice.customer_id.is_empty() {
        "(no id)"
    } else {
        &invoice.customer_id
    };
    let _ = writeln!(
        out,
        "Invoice preview · plan {} · customer {}",
        invoice.plan_id, customer
    );
    let _ = writeln!(
        out,
        "Period {} → {} ({}, #{})",
        invoice.period.start, invoice.period.end, invoice.period.timezone, invoice.period.index
    );
    let _ = writeln!(out);
    // Breakdown rows are indented by 6 and have no quantity or unit price column: 26 more.
    let width = invoice
        .lines
        .iter()
        .flat_map(|l| {
            let rows = l.breakdown.iter();
            std::iter::once(group_digits(&l.description).chars().count()).chain(rows.map(|r| {
                group_digits(&r.description)
                    .chars()
                    .count()
                    .saturating_sub(26)
            }))
        })
        .max()
        .unwrap_or(10)
        .clamp(20, 60);
    let _ = writeln!(
        out,
        "{:<width$}  {:>14}  {:>14}  {:>14}",
        "Description",
        "Quantity",
        "Unit price",
        format!("Amount {}", invoice.currency)
    );
    let _ = writeln!(out, "{}", "─".repeat(width + 48));
    for line in &invoice.lines {
        let unit_price = line
            .unit_price
            .map(|p| group_digits(&p.0.normalize().to_string()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<width$}  {:>14}  {:>14}  {:>14}",
            truncate(&group_digits(&line.description), width),
            group_digits(&line.quantity.0.normalize().round_dp(6).to_string()),
            unit_price,
            group_digits(&line.amount.0.to_string())
        );
        for row in &line.breakdown {
            let _ = writeln!(
                out,
                "    · {:<w2$}  {:>14}",
                truncate(&group_digits(&row.description), width + 26),
                group_digits(&row.amount.0.normalize().to_string()),
                w2 = width + 26
            );
        }
    }
    let _ = writeln!(out, "{}", "─".repeat(width + 48));
    let label = |out: &mut String, name: &str, value: String| {
        let (name, value) = (group_digits(name), group_digits(&value));
        let _ = writeln!(out, "{:>w$}  {:>14}", name, value, w = width + 32);
    };
    label(&mut out, "Subtotal", invoice.subtotal.0.to_string());
    for discount in &invoice.discounts {
        label(
            &mut out,
            &format!("Discount: {}", discount.description),
            format!("-{}", discount.amount.0),
        );
    }
    for tax in &invoice.taxes {
        let kind = if tax.inclusive { " (included)" } else { "" };
        label(
            &mut out,
            &format!("{} {}%{kind}", tax.name, tax.percent.0.normalize()),
            tax.amount.0.to_string(),
        );
    }
    for credit in &invoice.credits {
        label(
            &mut out,
            &format!("Credit: {}", credit.description),
            format!("-{}", credit.applied.0),
        );
    }
    label(
        &mut out,
        &format!("Total {}", invoice.currency),
        invoice.total.0.to_string(),
    );
    for note in &invoice.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(
        out,
        "rounding: {} · input {}",
        invoice.rounding, invoice.input_hash
    );
    out
}

/// `text` with the whole part of each number grouped by thousands (`2250000` → `2,250,000`,
/// `-1234.5` → `-1,234.5`), for people reading a table. Digits that belong to something else
/// are left alone: fractional digits, dates and times (`2026-11-01`, `10:00`), identifiers
/// (`evt_12345`, `v2026`), hashes.
pub fn group_digits(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + text.len() / 3);
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let run = &chars[start..i];
        let before = start.checked_sub(1).map(|b| chars[b]);
        let sign_before = before == Some('-')
            && start
                .checked_sub(2)
                .is_none_or(|b| !chars[b].is_ascii_alphanumeric());
        let part_of_something = |c: Option<char>| {
            c.is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
        };
        let after = chars.get(i).copied();
        let after_is_fraction =
            after == Some('.') && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
        let standalone = (sign_before || !part_of_something(before))
            && (after_is_fraction || !part_of_something(after));
        if run.len() < 4 || !standalone {
            out.extend(run);
            continue;
        }
        for (k, digit) in run.iter().enumerate() {
            if k > 0 && (run.len() - k).is_multiple_of(3) {
                out.push(',');
            }
            out.push(*digit);
        }
    }
    out
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(width.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A validation report, one finding a line.
pub fn report(report: &Report) -> String {
    let mut out = String::new();
    for issue in report.errors.iter().chain(&report.warnings) {
        let kind = match issue.severity {
            ratecard_engine::validate::Severity::Error => "error",
            ratecard_engine::validate::Severity::Warning => "warning",
        };
        let _ = writeln!(
            out,
            "{kind}[{}]: {}: {}",
            issue.code, issue.path, issue.message
        );
    }
    let plural = |n: usize, what: &str| {
        if n == 1 {
            format!("1 {what}")
        } else {
            format!("{n} {what}s")
        }
    };
    let _ = writeln!(
        out,
        "{}, {}",
        plural(report.errors.len(), "error"),
        plural(report.warnings.len(), "warning")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::group_digits;

    #[test]
    fn numbers_are_grouped_and_other_digits_left_alone() {
        for (text, grouped) in [
            ("2250000", "2,250,000"),
            ("1000", "1,000"),
            ("999", "999"),
            ("-1234.5", "-1,234.5"),
            ("0.000015", "0.000015"),
            ("12345.678901", "12,345.678901"),
            (
                "tier 2 (1000000, 10000000]: 1250000 × 0.000015",
                "tier 2 (1,000,000, 10,000,000]: 1,250,000 × 0.000015",
            ),
            (
                "100000 units included in the plan",
                "100,000 units included in the plan",
            ),
            (
                "Period 2026-11-01T00:00:00+01:00",
                "Period 2026-11-01T00:00:00+01:00",
            ),
            (
                "evt_12345 v2026 sha256:719d80fbcf1b",
                "evt_12345 v2026 sha256:719d80fbcf1b",
            ),
            ("Total USD", "Total USD"),
            ("", ""),
        ] {
            assert_eq!(group_digits(text), grouped, "{text}");
        }
    }
}
