// The plan editor: a plan as JSON, validated by the engine on every edit (every parse error and
// plan error at its JSON path, lint warnings: volume cliffs, unreachable tiers, gaps), and a live
// preview of the pricing card and cost curve it produces. A click on an issue selects its value.
import { amount, engine, h, loadExamples, navigation, ready, savePlan } from './app.js';
import { locate } from './jsonpath.js';
import { curvePlot, fieldsFor } from './widgets.js';

const $ = (id) => document.getElementById(id);
let timer = null;

function select(path, message) {
  const area = $('plan-text');
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

function issueList(issues, kind) {
  return issues.map((issue) =>
    h(
      'li',
      { class: kind, dataset: { path: issue.path, code: issue.code } },
      h('button', { type: 'button', onclick: () => select(issue.path, issue.message), title: 'Select it in the plan' }, h('code', { class: 'path' }, issue.path), ' ', issue.message, h('code', { class: 'code' }, issue.code)),
    ),
  );
}

function preview(text) {
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
    parts.push(h('button', { type: 'button', class: 'primary', onclick: () => { savePlan(plan); location.href = `index.html?plan=${encodeURIComponent(plan.id)}`; } }, 'Use on the pricing page'));
    $('preview').replaceChildren(...parts);
  } finally {
    prepared.free();
  }
}

function check() {
  const text = $('plan-text').value;
  const report = engine.validate(text);
  const status = $('status');
  $('errors').replaceChildren(...issueList(report.errors, 'error'));
  $('warnings').replaceChildren(...issueList(report.warnings, 'warning'));
  if (report.errors.length > 0) {
    status.className = 'error-count';
    status.textContent = `${report.errors.length} error${report.errors.length === 1 ? '' : 's'}${report.warnings.length ? `, ${report.warnings.length} warning${report.warnings.length === 1 ? '' : 's'}` : ''}`;
    $('preview').replaceChildren(h('p', { class: 'unit' }, 'The preview returns when the plan is valid.'));
    return;
  }
  status.className = 'status-ok';
  status.textContent = report.warnings.length ? `Valid, ${report.warnings.length} warning${report.warnings.length === 1 ? '' : 's'}` : 'Valid';
  try {
    preview(text);
  } catch (error) {
    $('preview').replaceChildren(h('p', { class: 'error' }, error.message, error.path ? h('code', { class: 'path' }, ` at ${error.path}`) : null));
  }
  localStorage.setItem('ratecard.editor', text);
}

async function main() {
  document.body.prepend(navigation('editor.html'));
  const [examples] = await Promise.all([loadExamples(), ready]);
  $('examples').replaceChildren(
    ...examples.map((example) =>
      h('button', { type: 'button', class: 'secondary', onclick: () => { $('plan-text').value = example.text; check(); } }, example.plan.name || example.file),
    ),
  );
  $('plan-text').value = localStorage.getItem('ratecard.editor') || examples[0]?.text || '{}';
  $('plan-text').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(check, 120);
  });
  check();
  document.body.dataset.ready = 'true';
}

main().catch((error) => {
  const box = document.getElementById('status');
  box.textContent = `The engine did not start: ${error.message}`;
});
