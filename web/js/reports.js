// Reports, behind the operator key: revenue by month and by plan, top customers (from the final
// invoices), accounts receivable aging (from the open invoices' books) and usage by metric over
// time (from the events), drawn as plots, each with its CSV export. Every figure is the server's
// exact decimal text; plots compute only pixels.
import { amount, h, money, quantity, ready } from './app.js';
import { barPlot, seriesPlot } from './charts.js';
import { api, download, whenSignedIn } from './operator.js';

const $ = (id) => document.getElementById(id);
const failure = (error) => h('p', { class: 'error', role: 'alert' }, error.message);

const csvButton = (name, query = '') =>
  h('button', { type: 'button', class: 'secondary csv', dataset: { csv: name }, onclick: () => download(`/v1/reports/${name}.csv${query}`, `${name}.csv`) }, `Download ${name}.csv`);

/// One panel per currency: amounts of two currencies are never drawn on one axis.
const currencies = (rows) => [...new Set(rows.map((r) => r.currency))].sort();

function revenuePanel(report) {
  if (report.rows.length === 0) {
    return h('section', { class: 'panel', id: 'revenue' }, h('h2', {}, 'Revenue'), h('p', { class: 'unit' }, 'No final invoices yet: revenue appears once a period is closed.'), csvButton('revenue'));
  }
  const parts = [];
  for (const currency of currencies(report.totals)) {
    const total = report.totals.find((t) => t.currency === currency);
    const months = report.by_month.filter((r) => r.currency === currency);
    const byPlan = report.by_plan.filter((r) => r.currency === currency);
    parts.push(h('div', { class: 'currency-block', dataset: { currency } },
      h('h3', {}, `${currency}: `, amount(total.total, currency, { dataset: { testid: `revenue-total-${currency}` } }), h('span', { class: 'unit' }, ` from ${total.invoices} invoice${total.invoices === 1 ? '' : 's'}`)),
      h('div', { class: 'report-grid' },
        h('div', {}, h('h4', {}, 'By month'), h('div', { class: 'plot' }, barPlot(months.map((r) => ({ label: r.month, value: r.total, text: money(r.total, currency) })), { title: `Revenue by month in ${currency}`, width: 420 }))),
        h('div', {}, h('h4', {}, 'By plan'), h('div', { class: 'plot' }, barPlot(byPlan.map((r) => ({ label: r.plan_id, value: r.total, text: money(r.total, currency) })), { title: `Revenue by plan in ${currency}`, width: 420 })))),
    ));
  }
  const table = h('table', { class: 'invoice list', id: 'revenue-rows' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Month'), h('th', {}, 'Plan'), h('th', { class: 'num' }, 'Invoices'), h('th', { class: 'num' }, 'Revenue'))),
    h('tbody', {}, report.rows.map((r) => h('tr', { dataset: { month: r.month, plan: r.plan_id } }, h('td', {}, r.month), h('td', {}, r.plan_id), h('td', { class: 'num' }, String(r.invoices)), h('td', { class: 'num' }, amount(r.total, r.currency))))));
  return h('section', { class: 'panel', id: 'revenue' }, h('h2', {}, 'Revenue'), ...parts, h('details', {}, h('summary', {}, 'Rows by month and plan'), h('div', { class: 'table-scroll' }, table)), csvButton('revenue'));
}

function topPanel(top) {
  const rows = top.customers;
  const parts = currencies(rows).map((currency) => h('div', { class: 'plot', dataset: { currency } },
    barPlot(rows.filter((r) => r.currency === currency).map((r) => ({ label: r.customer_id, value: r.total, text: money(r.total, currency) })), { title: `Top customers in ${currency}`, width: 900 })));
  return h('section', { class: 'panel', id: 'top-customers' }, h('h2', {}, 'Top customers'), rows.length ? parts : h('p', { class: 'unit' }, 'No invoiced customer yet.'), csvButton('top-customers', '?limit=100'));
}

function agingPanel(aging) {
  const names = aging.bucket_names;
  const label = (name) => (name === 'current' ? 'Not yet due' : `${name} days`);
  const parts = aging.totals.map((total) => {
    const currency = total.currency;
    const rows = aging.customers.filter((r) => r.currency === currency);
    return h('div', { class: 'currency-block', dataset: { currency } },
      h('h3', {}, `${currency}: `, amount(total.total, currency, { dataset: { testid: `aging-total-${currency}` } }), h('span', { class: 'unit' }, ` owed on ${total.invoices} open invoice${total.invoices === 1 ? '' : 's'}`)),
      h('div', { class: 'plot' }, barPlot(names.map((name, i) => ({ label: label(name), value: total.buckets[i], text: money(total.buckets[i], currency) })), { title: `Receivables by days past due in ${currency}`, width: 900 })),
      h('div', { class: 'table-scroll' }, h('table', { class: 'invoice list aging-table', id: `aging-${currency}` },
        h('thead', {}, h('tr', {}, h('th', {}, 'Customer'), h('th', { class: 'num' }, 'Invoices'), names.map((name) => h('th', { class: 'num' }, label(name))), h('th', { class: 'num' }, 'Total'))),
        h('tbody', {}, rows.map((r) => h('tr', { dataset: { customer: r.customer_id } }, h('td', {}, r.customer_id), h('td', { class: 'num' }, String(r.invoices)), r.buckets.map((b, i) => h('td', { class: 'num', dataset: { bucket: names[i] } }, amount(b, currency))), h('td', { class: 'num' }, amount(r.total, currency))))),
        h('tfoot', {}, h('tr', {}, h('th', {}, 'Total'), h('th', { class: 'num' }, String(total.invoices)), total.buckets.map((b, i) => h('th', { class: 'num', dataset: { bucket: names[i] } }, amount(b, currency))), h('th', { class: 'num' }, amount(total.total, currency)))))));
  });
  return h('section', { class: 'panel', id: 'aging' },
    h('h2', {}, 'Accounts receivable aging'),
    h('p', { class: 'unit' }, `Open invoices' balances by days past their due date, as of ${aging.as_of.replace('T', ' ').replace('Z', ' UTC')}. Paid, void and uncollectible invoices are not aged.`),
    parts.length ? parts : h('p', { class: 'unit' }, 'Nothing is owed: no open invoice has a balance.'),
    csvButton('aging'));
}

function usagePanel(report, onRange) {
  const from = h('input', { type: 'date', id: 'usage-from', value: report.from });
  const to = h('input', { type: 'date', id: 'usage-to', value: report.to });
  const apply = h('button', { type: 'button', class: 'secondary', onclick: () => onRange(from.value, to.value) }, 'Show');
  const dates = [...new Set(report.rows.map((r) => r.date))];
  const plots = report.metrics.map((metric) => {
    const values = dates.map((d) => report.rows.find((r) => r.date === d && r.metric === metric.code)?.quantity ?? '0');
    const sum = values.reduce((a, v) => a + Number(v), 0);
    return h('div', { class: 'usage-plot', dataset: { metric: metric.code } },
      h('h4', {}, `${metric.code} `, h('span', { class: 'unit' }, `(${metric.aggregation}, ${metric.unit || 'units'} per day)`)),
      h('div', { class: 'plot' }, seriesPlot(dates, [{ name: metric.code, values }], { title: `${metric.code} per day`, format: (v) => quantity(v), width: 380, height: 200 })),
      sum === 0 ? h('p', { class: 'unit' }, 'No usage in this range.') : null);
  });
  const range = `?from=${report.from}&to=${report.to}`;
  return h('section', { class: 'panel', id: 'usage' },
    h('h2', {}, 'Usage by metric'),
    h('div', { class: 'usage-controls' }, h('label', { for: 'usage-from' }, 'From'), from, h('label', { for: 'usage-to' }, 'to'), to, apply, h('span', { class: 'unit' }, 'UTC days, summed over customers')),
    h('div', { class: 'report-grid' }, plots),
    report.omitted.length ? h('p', { class: 'unit' }, `Not summed by day (levels, maxima, unique counts): ${report.omitted.join(', ')}.`) : null,
    csvButton('usage', range));
}

async function start() {
  await ready;
  const main = $('operator-main');
  async function load(from, to) {
    document.body.dataset.ready = 'false';
    const range = from && to ? `?from=${from}&to=${to}` : '';
    try {
      const [revenue, top, aging, usage] = await Promise.all([api('/v1/reports/revenue'), api('/v1/reports/top-customers?limit=10'), api('/v1/reports/aging'), api(`/v1/reports/usage${range}`)]);
      main.replaceChildren(h('h1', {}, 'Reports'), revenuePanel(revenue), topPanel(top), agingPanel(aging), usagePanel(usage, load));
    } catch (error) {
      main.replaceChildren(h('h1', {}, 'Reports'), failure(error));
    }
    document.body.dataset.ready = 'true';
  }
  await load();
}

document.body.dataset.nav = 'reports.html';
if (!whenSignedIn(start)) document.body.dataset.ready = 'true';
