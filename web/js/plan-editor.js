// The plan editor's checker, shared by the plan editor page and the operator console: a plan as
// JSON text, validated by the engine (every parse error and plan error at its JSON path, lint
// warnings with their codes), a click on an issue selecting its value in the text, and a preview
// of the card and cost curve the plan prices. Nothing here prices by itself: the engine does.
import { amount, engine, h } from './app.js';
import { locate } from './jsonpath.js';
import { curvePlot, fieldsFor } from './widgets.js';

/// Selects the value at `path` (or the line and column a syntax error names) in `area`.
export function selectPath(area, path, message) {
  const text = area.value;
  let { start, end } = locate(text, path);
  // A syntax error names its line and column, not a path.
  const place = /line (\d+), column (\d+)/.exec(message);
  if (place && start === 0 && end === text.length) {
    const lines = text.split('\n');
    start = lines.slice(0, Number(place[1]) - 1).reduce((sum, line) => sum + line.length + 1, 0) + Number(place[2]) - 1;
    end = start + 1;
  }
  area.focus();
  area.setSelectionRange(start, end);
  const line = text.slice(0, start).split('\n').length;
  area.scrollTop = Math.max(0, (line - 5) * 16);
}

function issueList(area, issues, kind) {
  return issues.map((issue) =>
    h(
      'li',
      { class: kind, dataset: { path: issue.path, code: issue.code } },
      h('button', { type: 'button', onclick: () => selectPath(area, issue.path, issue.message), title: 'Select it in the plan' }, h('code', { class: 'path' }, issue.path), ' ', issue.message, h('code', { class: 'code' }, issue.code)),
    ),
  );
}

/// The card and cost curve of a valid plan's text, and `actions(plan)` after them.
function preview(text, actions) {
  const plan = JSON.parse(text);
  const prepared = new engine.PreparedPlan(text);
  try {
    const base = prepared.quote({ customer: { id: 'preview' }, subscription: { start: '2000-01-01' } });
    const charges = (plan.charges || []).map((c) => h('li', {}, c.description || c.id, h('span', { class: 'unit' }, ` · ${c.model?.type}${c.metric ? ` on ${c.metric}` : ''}`)));
    const parts = [
      h('div', { class: 'card selected' }, h('button', { type: 'button', tabindex: -1 }, h('span', { class: 'card-name' }, plan.name || plan.id), h('span', { class: 'card-price' }, h('small', {}, 'from'), ' ', amount(base.total, base.currency, { dataset: { testid: 'preview-from' } })), h('span', { class: 'card-interval' }, plan.currency))),
      h('ul', {}, charges),
    ];
    const metric = fieldsFor(plan).find((f) => f.kind === 'total');
    if (metric) {
      const points = prepared.breakpoints(metric.metric);
      const last = Math.max(100, ...points.map((p) => Number(p) * 1.5));
      const to = String(BigInt(10 ** Math.ceil(Math.log10(last))));
      const curve = prepared.costCurve(metric.metric, '0', to, 200, {});
      parts.push(h('h3', {}, `Cost against ${metric.label}`), h('div', { class: 'plot' }, curvePlot(curve, points, null, base.currency, metric.unit || metric.label)));
    }
    parts.push(...actions(plan));
    return parts;
  } finally {
    prepared.free();
  }
}

/// Checks the plan in `elements.text` (a textarea) and shows the result in `elements.errors`,
/// `.warnings`, `.status` and `.preview`; `actions(plan)` gives the preview's buttons. Returns
/// the plan when it is valid, else `null`.
export function checkPlan(elements, actions = () => []) {
  const text = elements.text.value;
  const report = engine.validate(text);
  const { status } = elements;
  elements.errors.replaceChildren(...issueList(elements.text, report.errors, 'error'));
  elements.warnings.replaceChildren(...issueList(elements.text, report.warnings, 'warning'));
  if (report.errors.length > 0) {
    status.className = 'error-count';
    status.textContent = `${report.errors.length} error${report.errors.length === 1 ? '' : 's'}${report.warnings.length ? `, ${report.warnings.length} warning${report.warnings.length === 1 ? '' : 's'}` : ''}`;
    elements.preview.replaceChildren(h('p', { class: 'unit' }, 'The preview returns when the plan is valid.'));
    return null;
  }
  status.className = 'status-ok';
  status.textContent = report.warnings.length ? `Valid, ${report.warnings.length} warning${report.warnings.length === 1 ? '' : 's'}` : 'Valid';
  try {
    elements.preview.replaceChildren(...preview(text, actions));
  } catch (error) {
    elements.preview.replaceChildren(h('p', { class: 'error' }, error.message, error.path ? h('code', { class: 'path' }, ` at ${error.path}`) : null));
    return null;
  }
  return JSON.parse(text);
}

/// Re-checks `elements.text` 120 ms after each edit; `onCheck(plan or null)` after each check.
export function watchPlan(elements, actions, onCheck = () => {}) {
  let timer = null;
  const run = () => onCheck(checkPlan(elements, actions));
  elements.text.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, 120);
  });
  run();
  return run;
}
