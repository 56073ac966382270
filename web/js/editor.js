// The plan editor: a plan as JSON, validated by the engine on every edit (every parse error and
// plan error at its JSON path, lint warnings: volume cliffs, unreachable tiers, gaps), and a live
// preview of the pricing card and cost curve it produces. A click on an issue selects its value.
// The checker itself is `plan-editor.js` (the operator console edits plan versions with it).
import { h, loadExamples, navigation, ready, savePlan } from './app.js';
import { checkPlan, watchPlan } from './plan-editor.js';

const $ = (id) => document.getElementById(id);

const elements = () => ({ text: $('plan-text'), errors: $('errors'), warnings: $('warnings'), status: $('status'), preview: $('preview') });

const actions = (plan) => [
  h('button', { type: 'button', class: 'primary', onclick: () => { savePlan(plan); location.href = `index.html?plan=${encodeURIComponent(plan.id)}`; } }, 'Use on the pricing page'),
];

function check() {
  if (checkPlan(elements(), actions)) localStorage.setItem('ratecard.editor', $('plan-text').value);
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
  watchPlan(elements(), actions, (plan) => {
    if (plan) localStorage.setItem('ratecard.editor', $('plan-text').value);
  });
  document.body.dataset.ready = 'true';
}

main().catch((error) => {
  const box = document.getElementById('status');
  box.textContent = `The engine did not start: ${error.message}`;
});
