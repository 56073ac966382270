// SVG plots of the portal and the operator pages: a series over days and bars. Values arrive as
// decimal strings; only pixel coordinates are computed from JS numbers, every label is the
// decimal text (or an amount formatted from it).
import { h, quantity } from './app.js';

const svg = (tag, attributes, ...children) => h(tag, { svg: true, ...attributes }, ...children);

/// Lines over a shared x axis of `labels` (days): `series` is `[{name, values: [decimal or null],
/// class}]`, a `null` leaving a gap. `format(decimal)` writes the y-axis labels.
export function seriesPlot(labels, series, { format = quantity, title = '', width = 640, height = 220 } = {}) {
  const pad = { left: width < 500 ? 56 : 76, right: 16, top: 14, bottom: 34 };
  const values = series.flatMap((s) => s.values.filter((v) => v !== null && v !== undefined).map(Number));
  const yMax = Math.max(...values, 0) || 1;
  const n = Math.max(labels.length - 1, 1);
  const x = (i) => pad.left + ((width - pad.left - pad.right) * i) / n;
  const y = (v) => height - pad.bottom - ((height - pad.top - pad.bottom) * Number(v)) / yMax;
  const top = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined).reduce((a, v) => (Number(v) > Number(a) ? v : a), '0');
  const ticks = [0, Math.floor(labels.length / 2), labels.length - 1].filter((i, k, all) => i >= 0 && all.indexOf(i) === k);
  return svg(
    'svg',
    { viewBox: `0 0 ${width} ${height}`, class: 'chart series', role: 'img', 'aria-label': title },
    svg('line', { x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom, class: 'axis' }),
    svg('line', { x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom, class: 'axis' }),
    Number(top) > 0 ? svg('text', { x: pad.left - 6, y: y(top) + 4, class: 'tick', 'text-anchor': 'end' }, format(top)) : null,
    svg('text', { x: pad.left - 6, y: height - pad.bottom, class: 'tick', 'text-anchor': 'end' }, format('0')),
    ...ticks.map((i) => svg('text', { x: x(i), y: height - 12, class: 'tick', 'text-anchor': i === 0 ? 'start' : i === labels.length - 1 ? 'end' : 'middle' }, labels[i])),
    ...series.map((s) => {
      const points = s.values.map((v, i) => (v === null || v === undefined ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
      return svg('g', { class: `series ${s.class || ''}`, dataset: { series: s.name } },
        svg('polyline', { points: points.join(' '), class: 'line' }),
        s.values.length <= 40 ? s.values.map((v, i) => (v === null || v === undefined ? null : svg('circle', { cx: x(i), cy: y(v), r: 2.5 }, svg('title', {}, `${labels[i]}: ${format(v)}`)))) : null,
      );
    }),
  );
}

/// Horizontal bars: `rows` is `[{label, value: decimal, text}]` (`text`: the value as shown).
export function barPlot(rows, { title = '', width = 640 } = {}) {
  const rowHeight = 26;
  const pad = { left: width < 500 ? 100 : 150, right: width < 500 ? 90 : 120, top: 6, bottom: 6 };
  const height = pad.top + pad.bottom + rowHeight * rows.length;
  const max = Math.max(...rows.map((r) => Number(r.value)), 0) || 1;
  const span = width - pad.left - pad.right;
  return svg(
    'svg',
    { viewBox: `0 0 ${width} ${Math.max(height, 30)}`, class: 'chart bars', role: 'img', 'aria-label': title },
    ...rows.map((row, i) => {
      const top = pad.top + i * rowHeight;
      const length = Math.max(1, (span * Math.max(0, Number(row.value))) / max);
      return svg('g', { class: 'bar', dataset: { label: row.label, value: row.value } },
        svg('text', { x: pad.left - 8, y: top + 17, class: 'tick', 'text-anchor': 'end' }, row.label.length > 22 ? `${row.label.slice(0, 21)}…` : row.label),
        svg('rect', { x: pad.left, y: top + 4, width: length.toFixed(1), height: rowHeight - 8, rx: 3 }),
        svg('text', { x: pad.left + length + 6, y: top + 17, class: 'tick value' }, row.text ?? row.value),
        svg('title', {}, `${row.label}: ${row.text ?? row.value}`),
      );
    }),
  );
}
