// The pricing page: plan cards, one input per metric, the estimate recomputed by the engine on
// every input, its breakdown, the cost curve with tier boundaries, the cheapest comparable plan
// and break-even points, the usage a budget buys. State lives in the URL (?plan=…&metric=…).
import { amount, engine, h, loadExamples, money, navigation, quantity, ready, savedPlans, showError } from './app.js';
import { curvePlot, defaultsFor, fieldsFor, invoiceView, quantitiesFor, usageInputs } from './widgets.js';

/// The period every estimate prices: a typical full month (the engine's estimate helpers use the
/// same subscription start, so the curve and the estimate agree).
const TYPICAL = { customer: { id: 'prospect' }, subscription: { start: '2000-01-01' } };

const $ = (id) => document.getElementById(id);
const state = { catalog: [], selected: null, fields: [], values: {}, prepared: new Map(), curveMetric: null };

function prepared(entry) {
  if (!state.prepared.has(entry.plan.id)) state.prepared.set(entry.plan.id, new engine.PreparedPlan(entry.text));
  return state.prepared.get(entry.plan.id);
}

/// The usage document this page prices (shown, exported and compared with `ratecard quote`).
function usageDocument() {
  return { ...TYPICAL, quantities: quantitiesFor(state.fields, state.values) };
}

function readUrl() {
  const params = new URLSearchParams(location.search);
  return { plan: params.get('plan'), values: Object.fromEntries([...params].filter(([k]) => k !== 'plan' && k !== 'curve')), curve: params.get('curve') };
}

function writeUrl() {
  const params = new URLSearchParams({ plan: state.selected.plan.id });
  for (const [key, value] of Object.entries(state.values)) params.set(key, value);
  if (state.curveMetric) params.set('curve', state.curveMetric);
  history.replaceState(null, '', `?${params}`);
}

function select(entry, values) {
  state.selected = entry;
  state.fields = fieldsFor(entry.plan);
  state.values = { ...defaultsFor(entry.plan, state.fields, entry.usage), ...(values || {}) };
  const ungrouped = state.fields.filter((f) => f.kind === 'total');
  if (!ungrouped.some((f) => f.metric === state.curveMetric)) state.curveMetric = ungrouped[0]?.metric ?? null;
  $('usage-title').textContent = `Your usage on ${entry.plan.name || entry.plan.id}`;
  $('inputs').replaceChildren(...usageInputs(entry.plan, state.fields, state.values, () => update()));
  if (state.fields.length === 0) $('inputs').append(h('p', {}, 'This plan has no usage charges: its price is fixed.'));
  $('curve-metric').replaceChildren(...ungrouped.map((f) => h('option', { value: f.metric, selected: f.metric === state.curveMetric }, f.label)));
  $('budget-metric').replaceChildren(...ungrouped.map((f) => h('option', { value: f.metric }, f.label)));
  $('budget-currency').textContent = entry.plan.currency;
  $('plot-box').hidden = ungrouped.length === 0;
  $('budget-box').hidden = ungrouped.length === 0;
  update();
}

function cards() {
  const usage = (() => {
    try {
      return usageDocument();
    } catch {
      return null;
    }
  })();
  const metrics = new Set(state.fields.map((f) => f.metric));
  return state.catalog.map((entry) => {
    const plan = entry.plan;
    const selected = entry === state.selected;
    const comparable = [...metrics].every((m) => plan.metrics.some((pm) => pm.code === m));
    let price = null;
    try {
      if (usage && (selected || comparable)) price = ['at your usage', prepared(entry).quote(usage).total];
      else price = ['from', prepared(entry).quote(TYPICAL).total];
    } catch (error) {
      price = ['', null, error.message];
    }
    const flat = (plan.charges || []).filter((c) => c.model?.type === 'flat').map((c) => `${c.description || c.id}: ${money(String(c.model.amount), plan.currency)}`);
    const usageCharges = (plan.charges || []).filter((c) => c.metric).map((c) => c.description || c.id);
    return h(
      'li',
      { class: `card${selected ? ' selected' : ''}`, dataset: { plan: plan.id } },
      h(
        'button',
        { type: 'button', 'aria-pressed': String(selected), onclick: () => { select(entry); } },
        h('span', { class: 'card-name' }, plan.name || plan.id),
        h('span', { class: 'card-price' }, price[1] !== null ? [h('small', {}, price[0]), ' ', amount(price[1], plan.currency)] : h('small', { class: 'error' }, price[2])),
        h('span', { class: 'card-detail' }, [...flat, ...usageCharges].join(' · ')),
        h('span', { class: 'card-interval' }, `${plan.currency} · billed ${intervalText(plan.interval)}`),
      ),
    );
  });
}

function intervalText(interval) {
  if (typeof interval === 'string') return `per ${interval}`;
  const count = interval?.count ?? 1;
  const unit = interval?.unit ?? 'month';
  return count === 1 ? `per ${unit}` : `every ${count} ${unit}s`;
}

function comparison(usage) {
  const box = $('compare');
  const metrics = state.fields.map((f) => f.metric);
  const others = state.catalog.filter((e) => e !== state.selected && metrics.every((m) => e.plan.metrics.some((pm) => pm.code === m)));
  if (others.length === 0) {
    box.replaceChildren(h('p', {}, `No other plan prices ${metrics.length ? 'the same metrics' : 'this usage'}. Make a variant in the `, h('a', { href: 'editor.html' }, 'plan editor'), ' to compare.'));
    return;
  }
  const simple = state.fields.every((f) => f.kind === 'total');
  const ranked = simple
    ? engine.cheapestPlan([state.selected, ...others].map((e) => e.text), Object.fromEntries(state.fields.map((f) => [f.metric, usage.quantities[f.metric]])))
    : [state.selected, ...others].map((e) => ({ plan_id: e.plan.id, name: e.plan.name, currency: e.plan.currency, total: prepared(e).quote(usage).total }));
  const items = [h('p', { class: 'cheapest', dataset: { testid: 'cheapest' } }, 'Cheapest for your usage: ', h('strong', {}, ranked[0].name || ranked[0].plan_id), ' at ', amount(ranked[0].total, ranked[0].currency))];
  if (state.curveMetric && simple) {
    const to = curveTo();
    for (const other of others) {
      const base = baseQuantities();
      const found = engine.breakEven(state.selected.text, other.text, state.curveMetric, '0', to, base);
      const label = state.fields.find((f) => f.metric === state.curveMetric)?.label;
      items.push(h('p', { class: 'break-even' }, found ? `${other.plan.name || other.plan.id} and ${state.selected.plan.name} cost the same at ${quantity(found.quantity)} ${label}: ${found.cheaper_below} is cheaper below, ${found.cheaper_above} above.` : `No break-even with ${other.plan.name || other.plan.id} up to ${quantity(to)} ${label}.`));
    }
  }
  box.replaceChildren(...items);
}

/// The other ungrouped quantities, held fixed while the curve's metric varies.
function baseQuantities() {
  return Object.fromEntries(state.fields.filter((f) => f.kind === 'total' && f.metric !== state.curveMetric).map((f) => [f.metric, state.values[f.key]]));
}

/// The curve's range: past the current usage and the next tier boundary above it, rounded up to
/// 1, 2 or 5 × 10^k (a whole number: the engine gets it as text).
function curveTo() {
  const field = state.fields.find((f) => f.metric === state.curveMetric);
  const current = Number(state.values[field.key]) || 0;
  const points = engine.breakpoints(state.selected.text, state.curveMetric).map(Number).filter((p) => p > 0);
  const next = points.find((p) => p > current) ?? points.at(-1) ?? 0;
  const top = Math.max(10, current * 3, next * 1.5);
  const power = 10 ** Math.floor(Math.log10(top));
  const step = [1, 2, 5, 10].find((m) => m * power >= top);
  return BigInt(step * power).toString();
}

function plot(usage, invoice) {
  if (!state.curveMetric) return;
  const field = state.fields.find((f) => f.metric === state.curveMetric);
  const plan = prepared(state.selected);
  const points = plan.costCurve(state.curveMetric, '0', curveTo(), 200, baseQuantities());
  const current = { quantity: usage.quantities[state.curveMetric], total: invoice.total };
  $('plot').replaceChildren(curvePlot(points, plan.breakpoints(state.curveMetric), current, invoice.currency, field.unit || field.label));
}

function budget() {
  const out = $('budget-result');
  const text = $('budget').value.trim();
  const metric = $('budget-metric').value;
  if (!text || !metric) {
    out.textContent = '';
    return;
  }
  try {
    const base = Object.fromEntries(state.fields.filter((f) => f.kind === 'total' && f.metric !== metric).map((f) => [f.metric, state.values[f.key]]));
    const found = prepared(state.selected).maxUsageForBudget(metric, text, base);
    const field = state.fields.find((f) => f.metric === metric);
    out.replaceChildren(found === undefined || found === null ? `Even no ${field.label} costs more than ${money(text, state.selected.plan.currency)}.` : h('span', { dataset: { testid: 'budget-quantity', quantity: found } }, `Up to ${quantity(found)} ${field.unit || field.label} for ${money(text, state.selected.plan.currency)}`));
  } catch (error) {
    showError(out, error);
  }
}

function update() {
  const error = $('error');
  error.hidden = true;
  let usage;
  let invoice;
  try {
    usage = usageDocument();
    invoice = prepared(state.selected).quote(usage);
  } catch (problem) {
    showError(error, problem);
    $('plans').replaceChildren(...cards());
    return;
  }
  $('estimate').replaceChildren(amount(invoice.total, invoice.currency, { dataset: { testid: 'estimate' } }));
  $('estimate-period').textContent = `for a full ${typeof state.selected.plan.interval === 'string' ? state.selected.plan.interval : state.selected.plan.interval?.unit ?? 'month'}, ${invoice.taxes.some((t) => !t.inclusive) ? 'tax included in the total' : 'all taxes included'}`;
  $('breakdown').replaceChildren(invoiceView(invoice, state.selected.plan));
  $('usage-json').textContent = JSON.stringify(usage, null, 2);
  $('plans').replaceChildren(...cards());
  try {
    plot(usage, invoice);
    comparison(usage);
    budget();
  } catch (problem) {
    showError(error, problem);
  }
  writeUrl();
}

async function main() {
  document.body.prepend(navigation('index.html'));
  const started = performance.now();
  const [examples] = await Promise.all([loadExamples(), ready]);
  state.catalog = [...examples, ...savedPlans().map((plan) => ({ file: null, plan, text: JSON.stringify(plan), usage: null }))];
  const url = readUrl();
  const entry = state.catalog.find((e) => e.plan.id === url.plan) || state.catalog[0];
  state.curveMetric = url.curve;
  select(entry, url.plan === entry.plan.id ? url.values : null);
  $('curve-metric').addEventListener('change', (event) => {
    state.curveMetric = event.target.value;
    update();
  });
  $('budget').addEventListener('input', budget);
  $('budget-metric').addEventListener('change', budget);
  $('copy-link').addEventListener('click', async () => {
    await navigator.clipboard?.writeText(location.href).catch(() => {});
    $('copy-link').textContent = 'Link copied';
  });
  document.body.dataset.firstEstimateMs = String(Math.round(performance.now() - started));
  document.body.dataset.ready = 'true';
}

main().catch((error) => {
  const box = document.getElementById('error');
  box.hidden = false;
  box.textContent = `The pricing engine did not start: ${error.message}`;
});
