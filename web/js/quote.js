// The quote builder: customer, plan, expected usage, a sales discount, term and timezone; the
// invoice preview laid out as an invoice (printable), the term's months, and the quote exported
// as the plan and usage documents `ratecard quote` reads (and imported back).
import { addDecimals, amount, engine, h, loadExamples, navigation, ready, savedPlans, showError } from './app.js';
import { defaultsFor, fieldsFor, invoiceView, quantitiesFor, usageInputs } from './widgets.js';

const $ = (id) => document.getElementById(id);
const state = { catalog: [], entry: null, fields: [], values: {} };

function nextMonth() {
  const now = new Date();
  const month = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
  return month.toISOString().slice(0, 10);
}

/// The quoted plan: the catalog plan with the sales discount added (for the first N months).
function quotedPlan() {
  const plan = structuredClone(state.entry.plan);
  const percent = $('discount').value.trim();
  if (percent && percent !== '0') {
    const months = Number.parseInt($('discount-months').value, 10);
    plan.discounts = [
      ...(plan.discounts || []),
      { id: 'sales-discount', description: `Sales discount ${percent} %${months > 0 ? ` (${months} months)` : ''}`, percent, ...(months > 0 ? { duration_periods: months } : {}) },
    ];
  }
  return plan;
}

function usageFor(index) {
  return {
    customer: { id: $('customer').value.trim() || 'customer', timezone: $('timezone').value },
    subscription: { start: $('start').value },
    period: { index },
    quantities: quantitiesFor(state.fields, state.values),
  };
}

/// The quote as one document: `{plan, usage}` (export writes these two for `ratecard quote`).
function quoteDocument() {
  return { ratecard_quote: 1, term_months: Number.parseInt($('term').value, 10) || 1, plan: quotedPlan(), usage: usageFor(0) };
}

function selectPlan(entry, values) {
  state.entry = entry;
  state.fields = fieldsFor(entry.plan);
  state.values = { ...defaultsFor(entry.plan, state.fields, entry.usage), ...(values || {}) };
  $('usage-inputs').replaceChildren(...usageInputs(entry.plan, state.fields, state.values, () => update()));
}

function update() {
  const error = $('error');
  error.hidden = true;
  let prepared;
  try {
    const document = quoteDocument();
    prepared = new engine.PreparedPlan(JSON.stringify(document.plan));
    const invoice = prepared.quote(document.usage);
    const plan = document.plan;
    $('sheet-customer').textContent = document.usage.customer.id;
    $('sheet-plan').textContent = `${plan.name || plan.id} (${plan.id})`;
    $('sheet-period').textContent = `${invoice.period.start.slice(0, 10)} – ${invoice.period.end.slice(0, 10)}`;
    $('sheet-timezone').textContent = invoice.period.timezone;
    $('sheet-date').textContent = new Date().toISOString().slice(0, 10);
    $('preview').replaceChildren(invoiceView(invoice, plan));
    const months = [];
    for (let index = 0; index < document.term_months; index++) {
      const month = index === 0 ? invoice : prepared.quote(usageFor(index));
      months.push(month);
    }
    const termTotal = addDecimals(months.map((m) => m.total));
    $('term-table').replaceChildren(
      h('thead', {}, h('tr', {}, h('th', {}, 'Month'), h('th', {}, 'Period'), h('th', {}, 'Total'))),
      h('tbody', {}, months.map((m, i) => h('tr', {}, h('td', {}, String(i + 1)), h('td', {}, `${m.period.start.slice(0, 10)} – ${m.period.end.slice(0, 10)}`), h('td', {}, amount(m.total, m.currency))))),
      h('tfoot', {}, h('tr', {}, h('th', { colspan: 2 }, `Term total (${document.term_months} months)`), h('td', {}, amount(termTotal, invoice.currency, { dataset: { testid: 'term-total' } })))),
    );
    $('json').textContent = JSON.stringify(document, null, 2);
  } catch (problem) {
    showError(error, problem);
  } finally {
    prepared?.free();
  }
}

function download(name, value) {
  const link = h('a', { href: URL.createObjectURL(new Blob([`${JSON.stringify(value, null, 2)}\n`], { type: 'application/json' })), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

function slug() {
  return ($('customer').value.trim() || 'customer').replace(/[^A-Za-z0-9_-]+/g, '-');
}

/// Restores a quote exported here (`{plan, usage}`).
function importQuote(document) {
  if (!document?.plan || !document?.usage) throw new Error('not a Ratecard quote: expected {"plan", "usage"}');
  const plan = structuredClone(document.plan);
  const discount = (plan.discounts || []).find((d) => d.id === 'sales-discount');
  plan.discounts = (plan.discounts || []).filter((d) => d.id !== 'sales-discount');
  let entry = state.catalog.find((e) => JSON.stringify(e.plan) === JSON.stringify(plan));
  if (!entry) {
    entry = { file: null, plan, text: JSON.stringify(plan), usage: null };
    state.catalog.push(entry);
    fillPlans();
  }
  $('plan').value = String(state.catalog.indexOf(entry));
  $('customer').value = document.usage.customer?.id ?? '';
  $('timezone').value = document.usage.customer?.timezone ?? 'UTC';
  $('start').value = document.usage.subscription?.start ?? nextMonth();
  $('term').value = String(document.term_months ?? 12);
  $('discount').value = discount?.percent ?? '';
  $('discount-months').value = String(discount?.duration_periods ?? 0);
  const values = {};
  for (const [metric, input] of Object.entries(document.usage.quantities || {})) {
    if (typeof input === 'string') values[metric] = input;
    else if (Array.isArray(input)) {
      for (const group of input) {
        const value = Object.values(group.group || {})[0];
        if (group.transactions) {
          values[metric] = group.transactions[0] ?? '0';
          values[`${metric}.n`] = String(group.transactions.length);
        } else values[value === undefined ? metric : `${metric}.${value}`] = group.quantity;
      }
    }
  }
  selectPlan(entry, values);
  update();
}

function fillPlans() {
  $('plan').replaceChildren(...state.catalog.map((e, i) => h('option', { value: String(i) }, `${e.plan.name || e.plan.id} (${e.plan.currency})`)));
}

async function main() {
  document.body.prepend(navigation('quote.html'));
  const [examples] = await Promise.all([loadExamples(), ready]);
  state.catalog = [...examples, ...savedPlans().map((plan) => ({ file: null, plan, text: JSON.stringify(plan), usage: null }))];
  fillPlans();
  $('timezone').replaceChildren(...engine.timezones().sort().map((zone) => h('option', { value: zone, selected: zone === 'UTC' }, zone)));
  $('start').value = nextMonth();
  selectPlan(state.catalog[0]);
  $('plan').addEventListener('change', () => {
    selectPlan(state.catalog[Number($('plan').value)]);
    update();
  });
  for (const id of ['customer', 'start', 'term', 'timezone', 'discount', 'discount-months']) $(id).addEventListener('input', update);
  $('print').addEventListener('click', () => window.print());
  $('export').addEventListener('click', () => download(`${slug()}-quote.json`, quoteDocument()));
  $('export-plan').addEventListener('click', () => download(`${slug()}-plan.json`, quotedPlan()));
  $('export-usage').addEventListener('click', () => download(`${slug()}-usage.json`, usageFor(0)));
  $('import').addEventListener('change', async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      importQuote(JSON.parse(await file.text()));
    } catch (problem) {
      showError($('error'), problem);
    }
    event.target.value = '';
  });
  update();
  document.body.dataset.ready = 'true';
}

main().catch((error) => {
  const box = document.getElementById('error');
  box.hidden = false;
  box.textContent = `The pricing engine did not start: ${error.message}`;
});
