//! A final invoice as a printable HTML page (`GET /v1/invoices/{number}/html`): the engine's
//! invoice laid out as an invoice, then its collection (state, due date, payments, refunds,
//! credit notes, balance), every text escaped, a print stylesheet, nothing computed here
//! (amounts are the invoice's and the ledger's own decimal strings).

use std::fmt::Write;

use ratecard_engine::invoice::Invoice;

use super::collect::CollectionView;

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;color:#1b1f24;max-width:820px;margin:2rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin:0}header{display:flex;justify-content:space-between;align-items:flex-start;border-bottom:2px solid #1b1f24;padding-bottom:.75rem;margin-bottom:1rem}
table{width:100%;border-collapse:collapse;margin:.5rem 0}th,td{padding:.35rem .5rem;text-align:left;vertical-align:top}th{border-bottom:1px solid #888;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}tr.line td{border-top:1px solid #ddd}
.breakdown td{color:#555;font-size:.9em;padding-top:0}.totals{margin-left:auto;width:auto;min-width:45%}.totals td{border:0}.totals tr.total td{font-weight:700;border-top:2px solid #1b1f24;font-size:1.1em}
.muted{color:#666;font-size:.85em}ul.notes{color:#555;font-size:.9em}
.state{display:inline-block;padding:.1rem .5rem;border-radius:.25rem;font-weight:600;text-transform:uppercase;font-size:.8em;background:#eee}
.state-paid{background:#d7f5dd}.state-open{background:#fff2c6}.state-uncollectible{background:#fbd5d5}.state-void{background:#e2e2e2}
h2{font-size:1.1rem;margin:1.25rem 0 .25rem}
@media print{body{margin:0;max-width:none}a{color:inherit;text-decoration:none}}";

/// The page of invoice `number`, with its collection when it has one.
pub fn invoice_page(number: i64, invoice: &Invoice, collection: Option<&CollectionView>) -> String {
    let currency = esc(&invoice.currency);
    let mut page = String::with_capacity(8192);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Invoice {number}</title><style>{STYLE}</style></head><body>\
         <header><div><h1>Invoice {number}</h1><div>Customer <strong>{}</strong></div><div class=\"muted\">Plan {}</div></div>\
         <div class=\"n\"><div>Period {} – {}</div><div class=\"muted\">{}</div>{}</div></header>",
        esc(&invoice.customer_id),
        esc(&invoice.plan_id),
        esc(&invoice.period.start),
        esc(&invoice.period.end),
        esc(&invoice.period.timezone),
        collection.map_or(String::new(), |c| format!(
            "<div><span class=\"state state-{0}\">{0}</span></div><div>Due {1}</div>",
            c.state.as_str(),
            esc(&c.due_at)
        )),
    );
    page.push_str("<table><thead><tr><th>Description</th><th class=\"n\">Quantity</th><th class=\"n\">Unit price</th><th class=\"n\">Amount</th></tr></thead><tbody>");
    for line in &invoice.lines {
        let group: Vec<String> = line
            .group
            .iter()
            .map(|(k, v)| format!("{}: {}", esc(k), esc(v)))
            .collect();
        let _ = write!(
            page,
            "<tr class=\"line\"><td>{}{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} {currency}</td></tr>",
            esc(&line.description),
            if group.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"muted\">({})</span>", group.join(", "))
            },
            line.quantity,
            line.unit_price.map(|p| p.to_string()).unwrap_or_default(),
            line.amount.0,
        );
        if line.breakdown.len() > 1 {
            for row in &line.breakdown {
                let _ = write!(
                    page,
                    "<tr class=\"breakdown\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&row.description),
                    row.quantity.map(|q| q.to_string()).unwrap_or_default(),
                    row.unit_price.map(|p| p.to_string()).unwrap_or_default(),
                    row.amount,
                );
            }
        }
    }
    page.push_str("</tbody></table><table class=\"totals\"><tbody>");
    let _ = write!(
        page,
        "<tr><td>Subtotal</td><td class=\"n\">{} {currency}</td></tr>",
        invoice.subtotal.0
    );
    for discount in &invoice.discounts {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">−{} {currency}</td></tr>",
            esc(&discount.description),
            discount.amount.0
        );
    }
    for tax in &invoice.taxes {
        let _ = write!(
            page,
            "<tr><td>{} {}%{}</td><td class=\"n\">{} {currency}</td></tr>",
            esc(&tax.name),
            tax.percent,
            if tax.inclusive { " (included)" } else { "" },
            tax.amount.0
        );
    }
    for credit in &invoice.credits {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"n\">−{} {currency}</td></tr>",
            esc(if credit.description.is_empty() {
                &credit.id
            } else {
                &credit.description
            }),
            credit.applied.0
        );
    }
    let _ = write!(
        page,
        "<tr class=\"total\"><td>Total</td><td class=\"n\">{} {currency}</td></tr></tbody></table>",
        invoice.total.0
    );
    if !invoice.notes.is_empty() {
        page.push_str("<ul class=\"notes\">");
        for note in &invoice.notes {
            let _ = write!(page, "<li>{}</li>", esc(note));
        }
        page.push_str("</ul>");
    }
    if let Some(collection) = collection {
        collection_section(&mut page, collection);
    }
    let _ = write!(
        page,
        "<p class=\"muted\">Rounding: {}. Input hash {}.</p></body></html>",
        esc(&invoice.rounding),
        esc(&invoice.input_hash)
    );
    page
}

/// The invoice's collection: payments, refunds, credit notes and the balance.
fn collection_section(page: &mut String, c: &CollectionView) {
    let currency = esc(&c.currency);
    let _ = write!(
        page,
        "<section class=\"collection\"><h2>Payments and balance</h2><p>State <span class=\"state state-{0}\">{0}</span> · issued {1} · due {2} (net {3} days)</p>",
        c.state.as_str(),
        esc(&c.issued_at),
        esc(&c.due_at),
        c.net_days
    );
    if !c.payments.is_empty() || !c.refunds.is_empty() || !c.credit_notes.is_empty() {
        page.push_str("<table><thead><tr><th>Date</th><th>Entry</th><th>Reference</th><th class=\"n\">Amount</th></tr></thead><tbody>");
        for p in &c.payments {
            let _ = write!(
                page,
                "<tr class=\"line\"><td>{}</td><td>Payment {} ({})</td><td>{}</td><td class=\"n\">−{} {currency}</td></tr>",
                esc(&p.at),
                p.id,
                esc(p.method.as_str()),
                esc(&p.reference),
                esc(&p.amount)
            );
        }
        for r in &c.refunds {
            let _ = write!(
                page,
                "<tr class=\"line\"><td>{}</td><td>Refund {} of payment {}</td><td>{}</td><td class=\"n\">{} {currency}</td></tr>",
                esc(&r.at),
                r.id,
                r.payment_id,
                esc(r.reference.as_deref().unwrap_or("")),
                esc(&r.amount)
            );
        }
        for n in &c.credit_notes {
            let _ = write!(
                page,
                "<tr class=\"line\"><td>{}</td><td>Credit note CN-{}: {}</td><td></td><td class=\"n\">−{} {currency}</td></tr>",
                esc(&n.at),
                n.number,
                esc(&n.reason),
                esc(&n.amount)
            );
        }
        page.push_str("</tbody></table>");
    }
    let _ = write!(
        page,
        "<table class=\"totals\"><tbody><tr><td>Total</td><td class=\"n\">{} {currency}</td></tr>\
         <tr><td>Paid</td><td class=\"n\">−{} {currency}</td></tr><tr><td>Refunded</td><td class=\"n\">{} {currency}</td></tr>\
         <tr><td>Credited</td><td class=\"n\">−{} {currency}</td></tr>\
         <tr class=\"total\"><td>Balance due</td><td class=\"n\">{} {currency}</td></tr>",
        esc(&c.total),
        esc(&c.paid),
        esc(&c.refunded),
        esc(&c.credited),
        esc(&c.balance)
    );
    if c.overpaid.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        let _ = write!(
            page,
            "<tr><td>Account credit from this invoice</td><td class=\"n\">{} {currency}</td></tr>",
            esc(&c.overpaid)
        );
    }
    page.push_str("</tbody></table></section>");
}
