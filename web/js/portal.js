// The customer portal: one customer's current period (usage per metric with a plot over the
// period, the amount so far, the projected bill), a "what if I use N× as much" priced in this
// browser by the same engine (the wasm package) from the server's usage document of the
// projection, past invoices (HTML and JSON, with their status and balance) and payments. The token comes in the link's fragment
// (`#token=…`, never sent to the server), moves to this tab's sessionStorage and out of the
// address bar, and goes to the portal API as `Authorization: Bearer`.
//
// The page is a list of sections (`sections` below), each a function of the loaded data: the
// past invoices with what each still owes, then the payments.
import { amount, engine, formatDecimal, h, money, parseDecimal, quantity, ready } from './app.js';
import { seriesPlot } from './charts.js';
import { invoiceView } from './widgets.js';

const TOKEN = 'ratecard.portalToken';
const $ = (id) => document.getElementById(id);

/// The token: from the fragment (then kept for this tab and taken out of the address bar), or
/// from an earlier visit in this tab.
function portalToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN, decodeURIComponent(match[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN);
}

class PortalError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `the server answered ${status}`);
    this.status = status;
    this.code = body?.error?.code || 'http';
  }
}

async function portal(path, { raw = false } = {}) {
  const response = await fetch(`/portal/v1/${path}`, { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN)}` } });
  if (!response.ok) throw new PortalError(response.status, await response.json().catch(() => null));
  return raw ? response : response.json();
}

/// What a person reads for a failure to open the portal.
function explain(error) {
  const ask = 'Ask your account manager for a new portal link.';
  const messages = {
    missing: ['This page opens from a portal link', `A portal link looks like …/portal.html#token=rp_…; this address has no token. ${ask}`],
    link_expired: ['This portal link has expired', `Links stop working after the date they were made for. ${ask}`],
    link_revoked: ['This portal link was revoked', `It no longer opens your account. ${ask}`],
    unauthorized: ['This portal link is not valid', `It may be mistyped or incomplete. ${ask}`],
  };
  const [title, text] = messages[error.code] || ['The portal could not load', error.message];
  return h('section', { class: 'panel portal-error', role: 'alert', dataset: { error: error.code } }, h('h2', {}, title), h('p', {}, text));
}

/// `text` × `factor`, both decimal strings, exactly (BigInt mantissas).
export function scaleDecimal(text, factor) {
  const a = parseDecimal(text);
  const b = parseDecimal(factor);
  if (!a || !b) return null;
  return formatDecimal({ mantissa: a.mantissa * b.mantissa, scale: a.scale + b.scale });
}

/// The usage document of the projection with every metric's quantity × `factor` (and each
/// transaction's amount, for a metric priced per transaction).
export function scaledUsage(whatIf, factor) {
  const usage = structuredClone(whatIf);
  for (const [code, value] of Object.entries(usage.quantities || {})) {
    usage.quantities[code] = Array.isArray(value)
      ? value.map((g) => ({
        ...g,
        quantity: scaleDecimal(g.quantity, factor),
        ...(g.transactions ? { transactions: g.transactions.map((t) => scaleDecimal(t, factor)) } : {}),
      }))
      : scaleDecimal(String(value), factor);
  }
  return usage;
}

const dateOf = (rfc3339) => rfc3339.slice(0, 10);
/// A projection or an axis label: four significant digits are enough (Intl formats the decimal
/// string itself).
const about = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 4 });

function addDay(date) {
  const next = new Date(`${date}T00:00:00Z`);
  next.setUTCDate(next.getUTCDate() + 1);
  return next.toISOString().slice(0, 10);
}

function header({ account, usage }) {
  const plan = account.subscription.plan;
  return h(
    'header',
    { class: 'portal-header' },
    h('div', {}, h('h1', {}, 'Your usage and bills'), h('p', { class: 'lede' }, 'Account ', h('strong', { dataset: { testid: 'customer' } }, account.customer_id), plan ? ` · ${account.plan_name || plan.id} (version ${plan.version})` : '')),
    usage ? h('p', { class: 'period' }, `Current period ${dateOf(usage.period.start)} – ${dateOf(usage.period.end)}`, h('br'), h('span', { class: 'unit' }, `${usage.period.timezone} · figures as of ${new Date(usage.as_of).toLocaleString()}`)) : null,
  );
}

function summary({ usage }) {
  if (!usage) return h('section', { class: 'panel' }, h('h2', {}, 'This period'), h('p', {}, 'There is no subscription in force now.'));
  const elapsed = Math.round(Number(usage.elapsed) * 100);
  return h(
    'section',
    { class: 'panel summary', 'aria-labelledby': 'summary-title' },
    h('h2', { id: 'summary-title' }, 'This period'),
    h('div', { class: 'figures' },
      h('div', {}, h('div', { class: 'unit' }, 'So far'), h('div', { class: 'figure' }, amount(usage.amount_so_far, usage.currency, { dataset: { testid: 'amount-so-far' } }))),
      usage.projected_total ? h('div', {}, h('div', { class: 'unit' }, 'Projected bill'), h('div', { class: 'figure' }, amount(usage.projected_total, usage.currency, { dataset: { testid: 'projected' } }))) : null,
      h('div', {}, h('div', { class: 'unit' }, 'Period gone by'), h('div', { class: 'figure' }, `${elapsed} %`), h('div', { class: 'progress', 'aria-hidden': 'true' }, h('span', { style: `width: ${elapsed}%` })))),
    h('p', { class: 'unit' }, `${usage.events.toLocaleString()} events counted. The projection assumes the rest of the period goes as it went so far.`),
  );
}

function metricsSection({ days }) {
  if (!days) return null;
  const labels = days.days.map((d) => d.date);
  const periodEnd = dateOf(days.period.end);
  while (labels.length && labels.at(-1) < periodEnd && labels.length < 400) {
    const next = addDay(labels.at(-1));
    if (next >= periodEnd) break;
    labels.push(next);
  }
  const cards = days.metrics.map((metric) => {
    const soFar = labels.map((_, i) => days.days[i]?.metrics[metric.code]?.to_date ?? null);
    const series = [{ name: 'so far', values: soFar, class: 'so-far' }];
    if (metric.projected_quantity !== metric.quantity && days.days.length) {
      const projected = labels.map(() => null);
      projected[days.days.length - 1] = metric.quantity;
      projected[labels.length - 1] = metric.projected_quantity;
      series.push({ name: 'projected', values: projected, class: 'projected' });
    }
    const unit = metric.unit || '';
    return h(
      'article',
      { class: 'panel metric', dataset: { metric: metric.code } },
      h('h3', {}, metric.name || metric.code),
      h('p', { class: 'metric-figures' },
        h('span', { class: 'figure', dataset: { testid: `quantity-${metric.code}`, quantity: metric.quantity } }, `${quantity(metric.quantity)} ${unit}`),
        metric.projected_quantity !== metric.quantity ? h('span', { class: 'unit' }, ` → about ${about.format(metric.projected_quantity)} ${unit} by the period's end`) : null),
      h('div', { class: 'plot' }, seriesPlot(labels, series, { title: `${metric.name || metric.code} over the period`, format: (v) => about.format(v), width: 380, height: 200 })),
      h('p', { class: 'legend' }, h('span', { class: 'swatch line' }), metric.additive ? 'this period so far, at each day’s end' : 'level so far, at each day’s end', series.length > 1 ? [h('span', { class: 'swatch projected' }), 'projected'] : null),
    );
  });
  return h('section', { 'aria-labelledby': 'metrics-title' }, h('h2', { id: 'metrics-title' }, 'Usage this period'), h('div', { class: 'metric-grid' }, cards));
}

const FACTORS = ['0.5', '1', '1.5', '2', '3', '5', '10'];

/// The operator's plugins a plan prices with (they run on the server only).
const pluginsOf = (plan) => [...new Set([...plan.metrics.map((m) => m.aggregation), ...plan.charges.map((c) => c.model)].filter((x) => x?.type === 'custom').map((x) => x.plugin))];

function whatIfSection({ days, plan, usage }) {
  if (!days || !plan) return null;
  const plugins = pluginsOf(plan.plan);
  if (plugins.length) {
    return h('section', { class: 'panel what-if', 'aria-labelledby': 'what-if-title' },
      h('h2', { id: 'what-if-title' }, 'What if I use more, or less?'),
      h('p', { class: 'unit', dataset: { testid: 'what-if-unavailable' } }, `Your plan is priced with ${plugins.join(', ')}, which run on our servers only: a what-if estimate cannot be computed in your browser.`));
  }
  const planText = JSON.stringify(plan.plan);
  const result = h('div', { class: 'what-if-result', 'aria-live': 'polite' });
  const custom = h('input', { id: 'what-if-factor', type: 'text', inputmode: 'decimal', value: '2', size: 5, 'aria-label': 'Usage multiple' });
  const buttons = FACTORS.map((f) => h('button', { type: 'button', class: 'secondary factor', dataset: { factor: f }, onclick: () => { custom.value = f; update(); } }, `${f}×`));
  function update() {
    const factor = custom.value.trim();
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.factor === factor));
    if (!/^\d+(\.\d+)?$/.test(factor)) {
      custom.setAttribute('aria-invalid', 'true');
      result.replaceChildren(h('p', { class: 'error' }, `“${factor}” is not a multiple: type a number such as 2 or 0.5.`));
      return;
    }
    custom.setAttribute('aria-invalid', 'false');
    const prepared = new engine.PreparedPlan(planText);
    try {
      const invoice = prepared.quote(scaledUsage(days.what_if, factor));
      const base = usage?.projected_total;
      result.replaceChildren(
        h('p', { class: 'estimate' }, amount(invoice.total, invoice.currency, { dataset: { testid: 'what-if-total', factor } }), ' ', h('small', {}, `for the period at ${quantity(factor)}× your projected usage`)),
        base ? h('p', { class: 'unit' }, `Projected at your current pace: ${money(base, invoice.currency)}.`) : '',
        h('details', {}, h('summary', {}, 'How this is computed'), invoiceView(invoice, plan.plan)),
      );
    } catch (error) {
      result.replaceChildren(h('p', { class: 'error' }, error.message, error.path ? h('code', { class: 'path' }, ` at ${error.path}`) : null));
    } finally {
      prepared.free();
    }
  }
  custom.addEventListener('input', update);
  const section = h(
    'section',
    { class: 'panel what-if', 'aria-labelledby': 'what-if-title' },
    h('h2', { id: 'what-if-title' }, 'What if I use more, or less?'),
    h('p', { class: 'unit' }, 'Your projected usage of every metric times a multiple, priced here in your browser by the same engine that bills you.'),
    h('div', { class: 'factors' }, buttons, h('label', { for: 'what-if-factor' }, 'or'), custom, h('span', {}, '×')),
    result,
  );
  update();
  return section;
}

async function downloadBlob(path, filename) {
  const response = await portal(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = h('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function invoicesSection({ invoices }) {
  const viewer = h('div', { class: 'invoice-viewer' });
  async function view(number) {
    const html = await (await portal(`invoices/${number}/html`, { raw: true })).text();
    viewer.replaceChildren(
      h('div', { class: 'viewer-bar' }, h('strong', {}, `Invoice ${number}`), h('button', { type: 'button', class: 'secondary', onclick: () => downloadBlob(`invoices/${number}/html`, `invoice-${number}.html`) }, 'Download HTML'), h('button', { type: 'button', class: 'secondary', onclick: () => viewer.replaceChildren() }, 'Close')),
      h('iframe', { title: `Invoice ${number}`, sandbox: '', srcdoc: html, dataset: { invoice: number } }),
    );
  }
  const rows = invoices.invoices.map((invoice) =>
    h(
      'tr',
      { dataset: { invoice: invoice.number } },
      h('td', {}, String(invoice.number)),
      h('td', {}, `${dateOf(invoice.period_start)} – ${dateOf(invoice.period_end)}`),
      h('td', { class: 'num' }, amount(invoice.total, invoice.currency, { dataset: { testid: `invoice-total-${invoice.number}` } })),
      h('td', {}, invoice.state ? stateBadge(invoice.state, invoice.due_at) : '—'),
      h('td', { class: 'num' }, invoice.balance === undefined ? '—' : amount(invoice.balance, invoice.currency, { dataset: { testid: `invoice-balance-${invoice.number}` } })),
      h('td', { class: 'actions-cell' },
        h('button', { type: 'button', class: 'secondary', onclick: () => view(invoice.number) }, 'View'),
        h('button', { type: 'button', class: 'secondary', onclick: () => downloadBlob(`invoices/${invoice.number}`, `invoice-${invoice.number}.json`) }, 'JSON')),
    ),
  );
  return h(
    'section',
    { class: 'panel', 'aria-labelledby': 'invoices-title' },
    h('h2', { id: 'invoices-title' }, 'Past invoices'),
    rows.length
      ? h('div', { class: 'table-scroll' }, h('table', { class: 'invoice list', id: 'portal-invoices' }, h('thead', {}, h('tr', {}, h('th', {}, 'Number'), h('th', {}, 'Period'), h('th', { class: 'num' }, 'Total'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Balance'), h('th', {}, ''))), h('tbody', {}, rows)))
      : h('p', { class: 'unit' }, 'No invoices yet: the first one comes when this period closes.'),
    viewer,
  );
}

/// An invoice's state as a customer reads it: "Due 5 Jan 2027" while open, "Overdue" past it.
function stateBadge(state, dueAt) {
  const due = dueAt ? new Date(dueAt) : null;
  const dueText = due ? due.toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' }) : '';
  const overdue = state === 'open' && due && due.getTime() < Date.now();
  const text = { open: overdue ? `Overdue since ${dueText}` : `Due ${dueText}`, paid: 'Paid', void: 'Void', uncollectible: 'Uncollectible' }[state] || state;
  return h('span', { class: `state state-${overdue ? 'overdue' : state}`, dataset: { state } }, text);
}

const METHODS = { card: 'Card', bank_transfer: 'Bank transfer', digital_wallet: 'Digital wallet' };

function paymentsSection({ payments }) {
  if (!payments) return null;
  const rows = payments.payments.map((p) =>
    h('tr', { dataset: { invoice: p.invoice } },
      h('td', {}, dateOf(p.at)),
      h('td', {}, `Invoice ${p.invoice}`),
      h('td', {}, METHODS[p.method] || p.method),
      h('td', { class: 'num' }, amount(p.amount, p.currency, { dataset: { testid: `payment-${p.invoice}` } })),
      h('td', { class: 'num' }, /^0(\.0+)?$/.test(p.refunded) ? '—' : amount(p.refunded, p.currency))));
  return h(
    'section',
    { class: 'panel', 'aria-labelledby': 'payments-title' },
    h('h2', { id: 'payments-title' }, 'Payments'),
    rows.length
      ? h('div', { class: 'table-scroll' }, h('table', { class: 'invoice list', id: 'portal-payments' }, h('thead', {}, h('tr', {}, h('th', {}, 'Date'), h('th', {}, 'For'), h('th', {}, 'Method'), h('th', { class: 'num' }, 'Amount'), h('th', { class: 'num' }, 'Refunded'))), h('tbody', {}, rows)))
      : h('p', { class: 'unit' }, 'No payments yet.'),
  );
}

/// The page's sections, in order; each takes the loaded data and returns an element or null.
const sections = [header, summary, metricsSection, whatIfSection, invoicesSection, paymentsSection];

/// A part of the portal the customer may not have (no subscription now): `null` on 404.
const optional = (promise) => promise.catch((error) => (error.status === 404 ? null : Promise.reject(error)));

async function main() {
  const root = $('portal');
  if (!portalToken()) {
    root.replaceChildren(explain({ code: 'missing' }));
    document.body.dataset.ready = 'true';
    return;
  }
  try {
    const account = await portal('account');
    const [usage, days, plan, invoices, payments] = await Promise.all([optional(portal('usage')), optional(portal('usage/daily')), optional(portal('plan')), portal('invoices'), portal('payments'), ready]);
    const data = { account, usage, days, plan, invoices, payments };
    root.replaceChildren(...sections.map((section) => section(data)).filter(Boolean));
  } catch (error) {
    if (error.status === 401) sessionStorage.removeItem(TOKEN);
    root.replaceChildren(explain(error));
  }
  document.body.dataset.ready = 'true';
}

main();
