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
            std::iter::once(l.description.chars().count())
                .chain(rows.map(|r| r.description.chars().count().saturating_sub(26)))
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
            .map(|p| p.0.normalize().to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<width$}  {:>14}  {:>14}  {:>14}",
            truncate(&line.description, width),
            line.quantity.0.normalize().round_dp(6).to_string(),
            unit_price,
            line.amount.0.to_string()
        );
        for row in &line.breakdown {
            let _ = writeln!(
                out,
                "    · {:<w2$}  {:>14}",
                truncate(&row.description, width + 26),
                row.amount.0.normalize().to_string(),
                w2 = width + 26
            );
        }
    }
    let _ = writeln!(out, "{}", "─".repeat(width + 48));
    let label = |out: &mut String, name: &str, value: String| {
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
    let _ = writeln!(
        out,
        "{} errors, {} warnings",
        report.errors.len(),
        report.warnings.len()
    );
    out
}
