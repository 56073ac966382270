// Shared by the pages: the engine (the wasm package), the example plans, formatting, and exact
// decimal helpers for assembling inputs. Every amount shown comes from the engine as a decimal
// string and is formatted from that string (Intl.NumberFormat formats decimal strings exactly);
// no amount is ever a JS number.
import init, * as engine from '../pkg/ratecard_wasm.js';

export { engine };

/// Loads the wasm package once.
export const ready = init();

/// The example plans served by `ratecard serve` (`/plans/index.json`), with their example usage
/// when there is one: `[{file, plan, text, usage}]`.
export async function loadExamples() {
  const names = await (await fetch('plans/index.json')).json();
  return Promise.all(
    names.map(async (file) => {
      const text = await (await fetch(`plans/${file}`)).text();
      const response = await fetch(`usage/${file}`);
      const usage = response.ok ? await response.json() : null;
      return { file, text, plan: JSON.parse(text), usage };
    }),
  );
}

/// Plans saved from the plan editor (this browser only).
export function savedPlans() {
  try {
    return JSON.parse(localStorage.getItem('ratecard.plans') || '[]');
  } catch {
    return [];
  }
}

export function savePlan(plan) {
  const plans = savedPlans().filter((p) => p.id !== plan.id);
  plans.push(plan);
  localStorage.setItem('ratecard.plans', JSON.stringify(plans));
}

const formats = new Map();

function currencyFormat(currency, scale) {
  const key = `${currency}/${scale}`;
  if (!formats.has(key)) {
    let format = null;
    try {
      const base = new Intl.NumberFormat(undefined, { style: 'currency', currency });
      const minor = base.resolvedOptions().minimumFractionDigits;
      format = new Intl.NumberFormat(undefined, {
        style: 'currency',
        currency,
        minimumFractionDigits: minor,
        maximumFractionDigits: Math.max(minor, scale),
      });
    } catch {
      // A plan's custom unit ("credits") is no ISO currency.
      format = null;
    }
    formats.set(key, format);
  }
  return formats.get(key);
}

export function scaleOf(decimal) {
  const dot = String(decimal).indexOf('.');
  return dot < 0 ? 0 : String(decimal).length - dot - 1;
}

/// An engine amount ("1234.50") in the currency, with the currency's minor units (JPY none,
/// BHD three) and any finer digits the amount has.
export function money(amount, currency) {
  const format = currencyFormat(currency, scaleOf(amount));
  return format ? format.format(amount) : `${new Intl.NumberFormat().format(amount)} ${currency}`;
}

const plain = new Intl.NumberFormat(undefined, { maximumFractionDigits: 20 });
export const quantity = (decimal) => plain.format(decimal);

/// An element: h('div', {class: 'x', onclick}, child, 'text', …).
export function h(tag, attributes = {}, ...children) {
  const element = document.createElementNS(
    tag === 'svg' || attributes.svg ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml',
    tag,
  );
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'svg' || value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/// An amount element: the formatted text, the exact decimal in data-amount.
export const amount = (value, currency, attributes = {}) =>
  h('span', { class: 'amount', ...attributes, dataset: { amount: value, ...(attributes.dataset || {}) } }, money(value, currency));

// Exact decimal arithmetic for assembling inputs (sums of the quote builder's term, a
// transaction count times an amount): BigInt mantissa and scale, never floats.
export function parseDecimal(text) {
  const match = /^\s*(-?)(\d*)(?:\.(\d*))?\s*$/.exec(String(text));
  if (!match || (match[2] === '' && !match[3])) return null;
  const fraction = match[3] || '';
  const mantissa = BigInt(`${match[1]}${match[2] || '0'}${fraction}`);
  return { mantissa, scale: fraction.length };
}

function align(a, b) {
  const scale = Math.max(a.scale, b.scale);
  return [a.mantissa * 10n ** BigInt(scale - a.scale), b.mantissa * 10n ** BigInt(scale - b.scale), scale];
}

export function formatDecimal({ mantissa, scale }) {
  const negative = mantissa < 0n;
  let digits = (negative ? -mantissa : mantissa).toString().padStart(scale + 1, '0');
  if (scale > 0) digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return `${negative ? '-' : ''}${digits}`;
}

export function addDecimals(texts) {
  let sum = { mantissa: 0n, scale: 0 };
  for (const text of texts) {
    const value = parseDecimal(text);
    if (!value) return null;
    const [x, y, scale] = align(sum, value);
    sum = { mantissa: x + y, scale };
  }
  return formatDecimal(sum);
}

export function multiplyDecimal(text, count) {
  const value = parseDecimal(text);
  return value ? formatDecimal({ mantissa: value.mantissa * BigInt(count), scale: value.scale }) : null;
}

/// Whether `text` is a non-negative decimal the engine reads.
export const isQuantity = (text) => /^\s*\d+(\.\d+)?\s*$/.test(String(text));

/// Shows an engine error (an Error with `path` and `code`) in `element`.
export function showError(element, error) {
  element.replaceChildren(
    h('strong', {}, 'Cannot price this: '),
    error.message,
    // (`replaceChildren` would write a null as the text "null".)
    error.path ? h('code', { class: 'path' }, ` at ${error.path}`) : '',
  );
  element.hidden = false;
}

export function navigation(current) {
  const pages = [
    ['index.html', 'Pricing'],
    ['quote.html', 'Quote builder'],
    ['editor.html', 'Plan editor'],
  ];
  return h(
    'nav',
    { class: 'top', 'aria-label': 'Pages' },
    h('span', { class: 'brand' }, 'Ratecard'),
    pages.map(([href, label]) => h('a', { href, 'aria-current': href === current ? 'page' : null }, label)),
  );
}
