// The pieces the pages share: usage inputs for a plan's metrics, the invoice preview, the
// cost-vs-usage plot. They lay out what the engine computed; none of them prices anything.
import { amount, engine, h, isQuantity, money, multiplyDecimal, quantity } from './app.js';

/// The inputs a plan's usage needs: one per ungrouped metric, one per known group of a grouped
/// metric (the values its matrix prices name), a count and an amount per transaction for a
/// percentage charge with per-transaction terms.
export function fieldsFor(plan) {
  const fields = [];
  for (const metric of plan.metrics || []) {
    const charges = (plan.charges || []).filter((c) => c.metric === metric.code);
    const label = metric.name || metric.code;
    const unit = metric.unit || '';
    if ((metric.group_by || []).length > 0) {
      const dimension = metric.group_by[0];
      const values = new Set();
      for (const charge of charges) {
        const model = charge.model || {};
        if (model.type === 'matrix' && (model.dimensions || []).length === 1) {
          for (const price of model.prices || []) values.add(String(price.values[0]));
        }
      }
      for (const value of values) {
        fields.push({ kind: 'group', metric: metric.code, key: `${metric.code}.${value}`, group: { [dimension]: value }, label: `${label}: ${value}`, unit });
      }
      continue;
    }
    const perTransaction = charges.some((c) => c.model?.type === 'percentage' && (c.model.min_per_transaction || c.model.max_per_transaction || c.model.fixed_fee));
    if (perTransaction) {
      fields.push({ kind: 'transactions', metric: metric.code, key: metric.code, label, unit });
    } else {
      fields.push({ kind: 'total', metric: metric.code, key: metric.code, label, unit });
    }
  }
  return fields;
}

/// Default values of the fields: the example usage's quantities where it gives them, else the
/// billed quantities of its invoice plus each charge's allowance.
export function defaultsFor(plan, fields, example) {
  const values = {};
  for (const field of fields) values[field.key] = '0';
  const given = example?.quantities || {};
  let lines = [];
  if (example?.events) {
    try {
      lines = engine.quote(JSON.stringify(plan), JSON.stringify(example)).lines;
    } catch {
      lines = [];
    }
  }
  for (const field of fields) {
    const charge = (plan.charges || []).find((c) => c.metric === field.metric);
    const line = lines.find((l) => l.metric === field.metric && (!field.group || Object.entries(field.group).every(([k, v]) => l.group?.[k] === v)));
    let value = null;
    const input = given[field.metric];
    if (typeof input === 'string' || typeof input === 'number') value = String(input);
    else if (Array.isArray(input) && field.group) {
      value = input.find((g) => Object.entries(field.group).every(([k, v]) => g.group?.[k] === v))?.quantity ?? null;
    } else if (line && line.quantity !== '0') {
      const included = charge?.included ? String(charge.included) : '0';
      value = included === '0' ? line.quantity : addTexts(line.quantity, included);
    }
    if (value !== null) values[field.key] = String(value);
    if (field.kind === 'transactions') values[`${field.key}.n`] = '1';
  }
  return values;
}

function addTexts(a, b) {
  // Allowances and billed quantities are plain decimals: add them exactly.
  const [ia, fa = ''] = a.split('.');
  const [ib, fb = ''] = b.split('.');
  const scale = Math.max(fa.length, fb.length);
  const sum = BigInt(ia + fa.padEnd(scale, '0')) + BigInt(ib + fb.padEnd(scale, '0'));
  const digits = sum.toString().padStart(scale + 1, '0');
  return scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}`.replace(/\.?0+$/, '') : digits;
}

/// The usage document's `quantities` for the values (or an error message naming the field).
export function quantitiesFor(fields, values) {
  const quantities = {};
  for (const field of fields) {
    const value = (values[field.key] ?? '0').trim();
    if (!isQuantity(value)) throw new Error(`${field.label}: “${value}” is not a quantity`);
    if (field.kind === 'group') {
      (quantities[field.metric] ||= []).push({ group: field.group, quantity: value });
    } else if (field.kind === 'transactions') {
      const count = Number.parseInt(values[`${field.key}.n`] ?? '1', 10);
      if (!(count >= 0 && count <= 10000)) throw new Error(`${field.label}: between 0 and 10,000 transactions`);
      quantities[field.metric] = [{ group: {}, quantity: multiplyDecimal(value, count), transactions: Array(count).fill(value) }];
    } else {
      quantities[field.metric] = value;
    }
  }
  return quantities;
}

/// The slider's range: ten times the last breakpoint or the value, at least 100, a power of ten.
function sliderMax(plan, field, value) {
  let top = 100;
  for (const point of engine.breakpoints(JSON.stringify(plan), field.metric)) top = Math.max(top, Number(point) * 10);
  top = Math.max(top, Number(value) * 10 || 0);
  return 10 ** Math.ceil(Math.log10(top));
}

const toPosition = (q, max) => Math.round((1000 * Math.log1p(Math.max(0, Number(q)))) / Math.log1p(max));
const fromPosition = (p, max) => String(Math.round(Math.expm1((Number(p) / 1000) * Math.log1p(max))));

/// One labelled row per field: a log-scale slider and a number field (the exact text typed is
/// what is priced; the slider sets whole units).
export function usageInputs(plan, fields, values, onChange) {
  return fields.map((field) => {
    const id = `usage-${field.key.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const max = sliderMax(plan, field, values[field.key]);
    const number = h('input', { id, type: 'text', inputmode: 'decimal', value: values[field.key], 'aria-describedby': `${id}-unit`, dataset: { metric: field.key } });
    const slider = h('input', { type: 'range', min: 0, max: 1000, step: 1, value: toPosition(values[field.key], max), 'aria-label': `${field.label} (slider)`, tabindex: 0 });
    slider.addEventListener('input', () => {
      number.value = fromPosition(slider.value, max);
      values[field.key] = number.value;
      onChange(field);
    });
    number.addEventListener('input', () => {
      values[field.key] = number.value;
      if (isQuantity(number.value)) slider.value = toPosition(number.value, max);
      number.setAttribute('aria-invalid', String(!isQuantity(number.value)));
      onChange(field);
    });
    const row = h(
      'div',
      { class: 'usage-row' },
      h('label', { for: id }, field.label),
      h('div', { class: 'usage-controls' }, slider, number, h('span', { class: 'unit', id: `${id}-unit` }, field.unit)),
    );
    if (field.kind === 'transactions') {
      const count = h('input', { id: `${id}-n`, type: 'number', min: 0, max: 10000, step: 1, value: values[`${field.key}.n`] ?? '1', dataset: { metric: `${field.key}.n` } });
      count.addEventListener('input', () => {
        values[`${field.key}.n`] = count.value;
        onChange(field);
      });
      number.setAttribute('aria-label', `${field.label} per transaction`);
      row.append(h('div', { class: 'usage-controls transactions' }, h('label', { for: `${id}-n` }, 'transactions'), count, h('span', { class: 'unit' }, `× ${field.unit} each`)));
    }
    return row;
  });
}

/// The invoice preview: lines with their tier breakdown and allowance, subtotal, discounts,
/// taxes, credits, total.
export function invoiceView(invoice, plan) {
  const currency = invoice.currency;
  const unitOf = (metricCode) => (plan.metrics || []).find((m) => m.code === metricCode)?.unit || '';
  const rows = [];
  for (const line of invoice.lines) {
    const charge = (plan.charges || []).find((c) => c.id === line.charge_id);
    const group = Object.entries(line.group || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
    const included = charge?.included && line.metric ? `includes ${quantity(String(charge.included))} ${unitOf(line.metric)}` : null;
    rows.push(
      h(
        'tr',
        { class: 'line', dataset: { charge: line.charge_id, group } },
        h('th', { scope: 'row' }, line.description, included ? h('div', { class: 'included' }, included) : null),
        h('td', { class: 'num' }, line.metric ? `${quantity(line.quantity)} ${unitOf(line.metric)}` : ''),
        h('td', { class: 'num' }, amount(line.amount, currency, { dataset: { line: line.charge_id } })),
      ),
    );
    for (const row of line.breakdown || []) {
      if (line.breakdown.length === 1 && !row.quantity) continue;
      rows.push(
        h(
          'tr',
          { class: 'breakdown' },
          h('td', {}, row.description),
          h('td', { class: 'num' }, row.quantity ? `${quantity(row.quantity)} × ${money(row.unit_price, currency)}` : ''),
          h('td', { class: 'num' }, money(row.amount, currency)),
        ),
      );
    }
  }
  const summary = [h('tr', { class: 'subtotal' }, h('th', { scope: 'row', colspan: 2 }, 'Subtotal'), h('td', { class: 'num' }, amount(invoice.subtotal, currency, { dataset: { testid: 'subtotal' } })))];
  for (const discount of invoice.discounts) {
    summary.push(h('tr', { class: 'discount' }, h('th', { scope: 'row', colspan: 2 }, discount.description), h('td', { class: 'num' }, '−', amount(discount.amount, currency))));
  }
  for (const tax of invoice.taxes) {
    const label = `${tax.name} ${quantity(tax.percent)} %${tax.inclusive ? ' (included)' : ''} on ${money(tax.taxable, currency)}`;
    summary.push(h('tr', { class: 'tax' }, h('th', { scope: 'row', colspan: 2 }, label), h('td', { class: 'num' }, amount(tax.amount, currency))));
  }
  for (const credit of invoice.credits) {
    summary.push(h('tr', { class: 'credit' }, h('th', { scope: 'row', colspan: 2 }, credit.description), h('td', { class: 'num' }, '−', amount(credit.applied, currency))));
  }
  summary.push(h('tr', { class: 'total' }, h('th', { scope: 'row', colspan: 2 }, 'Total'), h('td', { class: 'num' }, amount(invoice.total, currency, { dataset: { testid: 'total' } }))));
  return h('div', { class: 'table-scroll' }, h(
    'table',
    { class: 'invoice' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Charge'), h('th', { scope: 'col', class: 'num' }, 'Quantity'), h('th', { scope: 'col', class: 'num' }, 'Amount'))),
    h('tbody', {}, rows),
    h('tfoot', {}, summary),
    invoice.notes?.length ? h('caption', { class: 'notes' }, invoice.notes.join(' · ')) : null,
  ));
}

/// Where the quantity axis turns logarithmic: when the first tier boundary is at most this
/// fraction of the plotted range, a linear axis would squeeze the first tiers into a few pixels.
const LOG_AXIS_RATIO = 100;

/// Total against one metric's quantity: the curve, its breakpoints (tier boundaries, dashed) and
/// the current point. Coordinates are pixels: only they are computed from JS numbers. When the
/// tier boundaries span orders of magnitude the quantity axis is logarithmic (log(1 + q/u), u a
/// decade below the first boundary's, so 0 stays at the origin), with a label at each power of
/// ten (`data-scale` says which axis).
export function curvePlot(points, breakpoints, current, currency, label) {
  const width = 640;
  const height = 240;
  const pad = { left: 70, right: 16, top: 12, bottom: 36 };
  const xs = points.map((p) => Number(p.quantity));
  const ys = points.map((p) => Number(p.total));
  const xMax = Math.max(...xs, 1);
  const yMin = Math.min(0, ...ys);
  const yMax = Math.max(...ys, yMin + 1);
  const span = width - pad.left - pad.right;
  const firstBoundary = Math.min(...breakpoints.map(Number).filter((b) => b > 0 && b <= xMax), Infinity);
  const log = xMax / firstBoundary >= LOG_AXIS_RATIO;
  // The log axis starts a decade below the first boundary's (nothing bends below it).
  const unit = log ? 10 ** Math.floor(Math.log10(firstBoundary)) / 10 : 1;
  const x = log
    ? (q) => pad.left + (span * Math.log1p(Math.max(0, Number(q)) / unit)) / Math.log1p(xMax / unit)
    : (q) => pad.left + (span * Number(q)) / xMax;
  const endLabel = `${quantity(String(xMax))} ${label}`;
  const decades = [];
  if (log) {
    for (let power = unit; power < xMax; power *= 10) {
      // Not on top of the axis' own `0` and end labels (~6 px a character).
      if (x(power) - pad.left >= 28 && width - pad.right - x(power) >= endLabel.length * 6 + 28) decades.push(power);
    }
  }
  const y = (t) => height - pad.bottom - ((height - pad.top - pad.bottom) * (Number(t) - yMin)) / (yMax - yMin);
  const svg = (tag, attributes, ...children) => h(tag, { svg: true, ...attributes }, ...children);
  const top = points.reduce((a, p) => (Number(p.total) > Number(a.total) ? p : a), points[0]);
  const bottom = points.reduce((a, p) => (Number(p.total) < Number(a.total) ? p : a), points[0]);
  return svg(
    'svg',
    { viewBox: `0 0 ${width} ${height}`, class: 'curve', role: 'img', 'aria-label': `Total against ${label}${log ? ' (logarithmic quantity axis)' : ''}`, 'data-scale': log ? 'log' : 'linear' },
    svg('line', { x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom, class: 'axis' }),
    svg('line', { x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom, class: 'axis' }),
    breakpoints
      .filter((b) => Number(b) > 0 && Number(b) <= xMax)
      .map((b) => svg('g', { class: 'breakpoint' }, svg('line', { x1: x(b), y1: pad.top, x2: x(b), y2: height - pad.bottom }), svg('title', {}, `tier boundary at ${quantity(b)}`))),
    svg('polyline', { points: points.map((p) => `${x(p.quantity).toFixed(1)},${y(p.total).toFixed(1)}`).join(' '), class: 'line' }),
    current ? svg('circle', { cx: x(Math.min(Number(current.quantity), xMax)), cy: y(current.total), r: 5, class: 'current' }, svg('title', {}, `${quantity(current.quantity)}: ${money(current.total, currency)}`)) : null,
    svg('text', { x: pad.left - 6, y: y(bottom.total), class: 'tick', 'text-anchor': 'end' }, money(bottom.total, currency)),
    svg('text', { x: pad.left - 6, y: y(top.total) + 4, class: 'tick', 'text-anchor': 'end' }, money(top.total, currency)),
    svg('text', { x: pad.left, y: height - 12, class: 'tick' }, '0'),
    ...decades.map((power) => svg('text', { x: x(power), y: height - 12, class: 'tick decade', 'text-anchor': 'middle' }, quantity(String(power)))),
    svg('text', { x: width - pad.right, y: height - 12, class: 'tick', 'text-anchor': 'end' }, endLabel),
  );
}
