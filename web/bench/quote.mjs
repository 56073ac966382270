// Quote and total latency through the wasm binding (crossing included) against a straightforward
// JavaScript implementation of the same price models with decimal.js (the library a pricing
// page would otherwise use; it lives in this benchmark only), same process, interleaved sample
// by sample. The plan is the engine bench's: 10 metrics, each a 5-tier graduated charge with
// sub-cent prices, line rounding half up (crates/engine/benches/quote.rs).
//
//   cargo xtask bench-web          (builds the package, then runs this)
//   node web/bench/quote.mjs       (the committed web/pkg; RATECARD_WASM_PKG for another build)
//
// RATECARD_BENCH_SAMPLES (default 31) rounds; the median per-call time of each case is reported,
// and each ratio as the median over rounds of the ratio within a round.
import Decimal from 'decimal.js';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadWasm } from '../tools/load.mjs';

const N_CHARGES = 10;
const N_TIERS = 5;
const SAMPLES = Number(process.env.RATECARD_BENCH_SAMPLES || 31);

function decimalText(mantissa, scale) {
  const digits = String(mantissa).padStart(scale + 1, '0');
  return `${digits.slice(0, -scale)}.${digits.slice(-scale)}`.replace(/\.?0+$/, '');
}

export function benchPlan() {
  const metrics = [];
  const charges = [];
  for (let i = 0; i < N_CHARGES; i++) {
    metrics.push({ code: `m${i}`, aggregation: { type: 'count' } });
    const tiers = [];
    for (let t = 0; t < N_TIERS; t++) {
      tiers.push({ up_to: t + 1 < N_TIERS ? String(1000 * 10 ** t * (i + 1)) : null, unit_price: decimalText(50000 - 9000 * t + i, 6) });
    }
    charges.push({ id: `c${i}`, metric: `m${i}`, model: { type: 'graduated', tiers } });
  }
  return { id: 'bench-10x5', currency: 'USD', interval: 'month', rounding: { level: 'line', mode: 'half_up' }, metrics, charges };
}

export function benchQuantities() {
  return Object.fromEntries(Array.from({ length: N_CHARGES }, (_, i) => [`m${i}`, `${3700000 * (i + 1) + 123}.${i}`]));
}

export function benchUsage() {
  return { customer: { id: 'acme', timezone: 'Europe/Paris' }, subscription: { start: '2026-11-01' }, period: { index: 0 }, quantities: benchQuantities() };
}

// The decimal.js implementation a pricing page would write: graduated tiers (upper-inclusive
// bounds), each line rounded half up to cents, the lines summed; an invoice with the breakdown.
export const DECIMAL_CONFIG = { precision: 40, rounding: Decimal.ROUND_HALF_UP };
Decimal.set(DECIMAL_CONFIG);

export function graduated(tiers, quantity) {
  const rows = [];
  let exact = new Decimal(0);
  let lower = new Decimal(0);
  for (const tier of tiers) {
    if (quantity.lte(lower)) break;
    const upper = tier.up_to === null ? quantity : Decimal.min(quantity, new Decimal(tier.up_to));
    const units = upper.minus(lower);
    const price = new Decimal(tier.unit_price);
    const amount = units.times(price);
    rows.push({ description: `tier ${rows.length + 1}`, quantity: units.toString(), unit_price: price.toString(), amount: amount.toString() });
    exact = exact.plus(amount);
    if (tier.up_to === null) break;
    lower = new Decimal(tier.up_to);
  }
  return { exact, rows };
}

export function decimalJsQuote(plan, usage) {
  const lines = [];
  let subtotal = new Decimal(0);
  for (const charge of plan.charges) {
    const quantity = new Decimal(usage.quantities[charge.metric] ?? '0');
    const { exact, rows } = graduated(charge.model.tiers, quantity);
    const amount = exact.toDecimalPlaces(2, Decimal.ROUND_HALF_UP);
    subtotal = subtotal.plus(amount);
    lines.push({ charge_id: charge.id, quantity: quantity.toString(), exact_amount: exact.toString(), amount: amount.toFixed(2), breakdown: rows });
  }
  return { plan_id: plan.id, currency: plan.currency, lines, subtotal: subtotal.toFixed(2), total: subtotal.toFixed(2) };
}

export function decimalJsTotal(plan, quantities) {
  let total = new Decimal(0);
  for (const charge of plan.charges) {
    total = total.plus(graduated(charge.model.tiers, new Decimal(quantities[charge.metric] ?? '0')).exact.toDecimalPlaces(2, Decimal.ROUND_HALF_UP));
  }
  return total.toFixed(2);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/// Median µs per call of each case, and per round the times of all cases: a round runs every
/// case once (each for `calls[name]` calls, calibrated to ≥ 10 ms), back to back, so the cases
/// of one round see the same machine even when other work comes and goes between rounds.
function measure(cases) {
  const calls = {};
  for (const [name, run] of Object.entries(cases)) {
    let n = 1;
    for (;;) {
      const start = performance.now();
      for (let i = 0; i < n; i++) run();
      if (performance.now() - start >= 10) break;
      n *= 2;
    }
    calls[name] = n;
  }
  const rounds = [];
  for (let s = 0; s < SAMPLES; s++) {
    const round = {};
    for (const [name, run] of Object.entries(cases)) {
      const start = performance.now();
      for (let i = 0; i < calls[name]; i++) run();
      round[name] = ((performance.now() - start) * 1000) / calls[name];
    }
    rounds.push(round);
  }
  const medians = Object.fromEntries(Object.keys(cases).map((k) => [k, median(rounds.map((r) => r[k]))]));
  return { medians, rounds };
}

/// The median over rounds of the ratio `slow / fast` within each round.
function ratio(rounds, slow, fast) {
  return median(rounds.map((r) => r[slow] / r[fast]));
}

async function main() {
  const wasm = await loadWasm();
  const plan = benchPlan();
  const planText = JSON.stringify(plan);
  const usage = benchUsage();
  const usageText = JSON.stringify(usage);
  const quantities = benchQuantities();
  const prepared = new wasm.PreparedPlan(planText);
  // Both implementations agree on the total before anything is timed.
  const engineTotal = prepared.quote(usage).total;
  const jsTotal = decimalJsQuote(plan, usage).total;
  if (engineTotal !== jsTotal || prepared.total(quantities) !== decimalJsTotal(plan, quantities)) {
    throw new Error(`the implementations disagree: engine ${engineTotal}, decimal.js ${jsTotal}`);
  }
  // The last result of each case is kept (so no call is optimized away), not every result: a
  // growing array made garbage collection land on whichever case ran next.
  let sink;
  const { medians: result, rounds } = measure(
    {
      'wasm quote (unprepared: plan + usage JSON in, invoice object out)': () => (sink = wasm.quote(planText, usageText)),
      'wasm PreparedPlan.quote (usage object in, invoice object out)': () => (sink = prepared.quote(usage)),
      'wasm PreparedPlan.quoteJson (usage JSON in, invoice JSON out)': () => (sink = prepared.quoteJson(usageText)),
      'wasm PreparedPlan.total (quantities in, total string out)': () => (sink = prepared.total(quantities)),
      'decimal.js quote (invoice with breakdown)': () => (sink = decimalJsQuote(plan, usage)),
      'decimal.js total': () => (sink = decimalJsTotal(plan, quantities)),
    },
  );
  if (sink === undefined) throw new Error('nothing ran');
  const curveTimes = [];
  let points = 0;
  for (let s = 0; s < Math.min(SAMPLES, 11); s++) {
    const start = performance.now();
    points = prepared.costCurve('m0', '0', '50000000', 200, {}).length;
    curveTimes.push(performance.now() - start);
  }
  console.log(`Node ${process.version}, ${SAMPLES} samples, median µs per call (total ${engineTotal} USD on both sides)`);
  for (const [name, us] of Object.entries(result)) console.log(`  ${name.padEnd(70)} ${us.toFixed(2).padStart(9)} µs`);
  const QUOTE = 'wasm PreparedPlan.quote (usage object in, invoice object out)';
  const QUOTE_JSON = 'wasm PreparedPlan.quoteJson (usage JSON in, invoice JSON out)';
  const TOTAL = 'wasm PreparedPlan.total (quantities in, total string out)';
  const JS_QUOTE = 'decimal.js quote (invoice with breakdown)';
  const JS_TOTAL = 'decimal.js total';
  const UNPREPARED = 'wasm quote (unprepared: plan + usage JSON in, invoice object out)';
  const r = (slow, fast) => ratio(rounds, slow, fast).toFixed(2);
  console.log(`  ratio decimal.js/wasm (median over rounds of the ratio within a round): quote ${r(JS_QUOTE, QUOTE)}× (target ≥ 5×; quoteJson ${r(JS_QUOTE, QUOTE_JSON)}×), total ${r(JS_TOTAL, TOTAL)}× (target ≥ 20×); unprepared quote ${r(JS_QUOTE, UNPREPARED)}×`);
  console.log(`  cost curve of m0, ${points} points (200 samples + breakpoints): ${median(curveTimes).toFixed(2)} ms`);
  prepared.free();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
