// The operator console, behind the operator key (`operator.js`): customers (search, their
// subscription, live usage as it streams in, portal links), invoices (filter by customer, month
// and state, open one: its collection with a form to record a payment, its HTML view), plans and their versions (the plan editor's checker; a valid edit is saved as the
// plan's next version), plugins (upload with the check report, activate). Tabs are the URL's
// fragment: #customers, #invoices, #plans, #plugins.
import { amount, h, money, quantity, ready } from './app.js';
import { api, download, streamEvents, whenSignedIn } from './operator.js';
import { watchPlan } from './plan-editor.js';
import { invoiceView } from './widgets.js';

const $ = (id) => document.getElementById(id);
const TABS = ['customers', 'invoices', 'plans', 'plugins'];
let plans = [];
/// The live-usage stream of the customer shown, closed when another is shown.
let stream = null;

const failure = (error) => h('p', { class: 'error', role: 'alert' }, error.message, error.path ? h('code', { class: 'path' }, ` at ${error.path}`) : null);
const dateOf = (text) => String(text).slice(0, 10);

// Customers

async function showCustomers() {
  const search = h('input', { id: 'customer-search', type: 'search', placeholder: 'Search by id', 'aria-label': 'Search customers', value: sessionStorage.getItem('ratecard.search') || '' });
  const list = h('div', { id: 'customer-list' });
  const detail = h('div', { id: 'customer-detail', class: 'detail' });
  async function refresh() {
    sessionStorage.setItem('ratecard.search', search.value);
    try {
      const found = await api(`/v1/customers?search=${encodeURIComponent(search.value)}&limit=200`);
      const rows = found.customers.map((c) =>
        h('tr', { dataset: { customer: c.id }, class: 'clickable', onclick: () => showCustomer(c.id, detail) },
          h('td', {}, h('button', { type: 'button', class: 'link' }, c.id)),
          h('td', {}, c.plan ? `${c.plan.id} v${c.plan.version}` : '—'),
          h('td', {}, c.timezone),
          h('td', {}, c.subscription_start || '—')),
      );
      list.replaceChildren(
        h('p', { class: 'unit' }, `${found.matched} customer${found.matched === 1 ? '' : 's'}${found.matched > found.customers.length ? `, the first ${found.customers.length} shown` : ''}`),
        h('div', { class: 'table-scroll' }, h('table', { class: 'invoice list' }, h('thead', {}, h('tr', {}, h('th', {}, 'Customer'), h('th', {}, 'Plan'), h('th', {}, 'Timezone'), h('th', {}, 'Since'))), h('tbody', {}, rows))),
      );
    } catch (error) {
      list.replaceChildren(failure(error));
    }
  }
  let timer = null;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  });
  await refresh();
  return [h('div', { class: 'console-layout' }, h('section', { class: 'panel' }, h('h2', {}, 'Customers'), search, list), detail)];
}

function liveView(usage) {
  return h(
    'div',
    { class: 'live', dataset: { events: usage.events } },
    h('div', { class: 'figures' },
      h('div', {}, h('div', { class: 'unit' }, 'So far'), h('div', { class: 'figure' }, amount(usage.amount_so_far, usage.currency, { dataset: { testid: 'live-so-far' } }))),
      usage.projected_total ? h('div', {}, h('div', { class: 'unit' }, 'Projected'), h('div', { class: 'figure' }, amount(usage.projected_total, usage.currency, { dataset: { testid: 'live-projected' } }))) : null,
      h('div', {}, h('div', { class: 'unit' }, 'Events'), h('div', { class: 'figure', dataset: { testid: 'live-events' } }, usage.events.toLocaleString()))),
    h('table', { class: 'invoice' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Line'), h('th', { class: 'num' }, 'Quantity'), h('th', { class: 'num' }, 'Amount'), h('th', { class: 'num' }, 'Projected'))),
      h('tbody', {}, usage.lines.map((line) => h('tr', { dataset: { charge: line.charge_id } },
        h('td', {}, line.charge_id, Object.keys(line.group || {}).length ? h('span', { class: 'unit' }, ` (${Object.entries(line.group).map(([k, v]) => `${k}: ${v}`).join(', ')})`) : null),
        h('td', { class: 'num' }, line.metric ? quantity(line.quantity) : ''),
        h('td', { class: 'num' }, money(line.amount, usage.currency)),
        h('td', { class: 'num' }, line.projected_amount ? money(line.projected_amount, usage.currency) : ''))))),
    h('p', { class: 'unit' }, `Period ${dateOf(usage.period.start)} – ${dateOf(usage.period.end)} (${usage.period.timezone}), as of ${new Date(usage.as_of).toLocaleTimeString()}`),
  );
}

async function portalLinks(id) {
  const box = h('div', { class: 'portal-links' });
  async function refresh(made) {
    const { links } = await api(`/v1/customers/${encodeURIComponent(id)}/portal-links`);
    // (`replaceChildren` writes a null as the text "null": only the nodes.)
    box.replaceChildren(...[
      made ? h('div', { class: 'new-link', role: 'status' }, h('strong', {}, 'New portal link (shown once): '), h('input', { type: 'text', readonly: true, value: new URL(made.url, location.href).href, id: 'new-portal-link', onfocus: (e) => e.target.select() }), h('span', { class: 'unit' }, ` expires ${new Date(made.expires_at).toLocaleDateString()}`)) : null,
      links.length
        ? h('table', { class: 'invoice list' }, h('tbody', {}, links.map((link) => h('tr', { dataset: { link: link.id, status: link.status } },
          h('td', {}, h('code', {}, link.id)),
          h('td', {}, link.status),
          h('td', {}, `until ${dateOf(link.expires_at)}`),
          h('td', {}, link.status === 'active' ? h('button', { type: 'button', class: 'secondary', onclick: async () => { await api(`/v1/portal-links/${link.id}`, { method: 'DELETE' }); refresh(null); } }, 'Revoke') : '')))))
        : h('p', { class: 'unit' }, 'No portal link yet.'),
    ].filter(Boolean));
  }
  const days = h('input', { type: 'number', min: 1, max: 365, value: 30, id: 'link-days', 'aria-label': 'Days until the link expires' });
  const create = h('button', { type: 'button', class: 'primary', id: 'create-link', onclick: async () => {
    try {
      const made = await api(`/v1/customers/${encodeURIComponent(id)}/portal-links`, { method: 'POST', body: JSON.stringify({ expires_in_days: Number(days.value) }) });
      await refresh(made);
    } catch (error) {
      box.prepend(failure(error));
    }
  } }, 'Create a portal link');
  await refresh(null);
  return h('div', {}, h('h3', {}, 'Customer portal'), h('div', { class: 'usage-controls' }, create, h('label', { for: 'link-days' }, 'valid for'), days, h('span', { class: 'unit' }, 'days')), box);
}

/// Cancels the subscription at the end of the current period (billed whole) or now (the period
/// ends now: the engine prorates its flat fees and bills the usage so far).
function cancelForm(id, detail) {
  const when = h('select', { id: 'cancel-at', 'aria-label': 'When the subscription ends' },
    h('option', { value: 'end_of_period' }, 'at the end of the current period'),
    h('option', { value: 'now' }, 'now, prorated'));
  const message = h('p', { class: 'unit', role: 'status' });
  return actionForm('cancel-form', message, async () => {
    const body = when.value === 'now' ? { at: 'now' } : {};
    await api(`/v1/customers/${encodeURIComponent(id)}/cancel`, { method: 'POST', body: JSON.stringify(body) });
    await showCustomer(id, detail);
  }, h('h3', {}, 'Cancel the subscription'), h('label', {}, 'Ends', when), h('button', { type: 'submit', class: 'secondary' }, 'Cancel subscription'), message);
}

/// A form whose submission runs `action`; a failure is shown in `message`.
function actionForm(id, message, action, ...children) {
  return h('form', {
    id,
    class: 'payment-form',
    onsubmit: async (event) => {
      event.preventDefault();
      message.replaceChildren();
      try {
        await action();
      } catch (error) {
        message.replaceChildren(failure(error));
      }
    },
  }, ...children);
}

async function showCustomer(id, detail) {
  stream?.abort();
  stream = new AbortController();
  const live = h('div', { id: 'live-usage' }, h('p', { class: 'unit' }, 'Connecting to live usage…'));
  let subscriptionEnded = null;
  try {
    const [customer, subscription] = await Promise.all([api(`/v1/customers/${encodeURIComponent(id)}`), api(`/v1/customers/${encodeURIComponent(id)}/subscription`)]);
    if (subscription.cancelled_from && new Date(subscription.cancelled_from) <= new Date()) subscriptionEnded = subscription.cancelled_from;
    detail.replaceChildren(h('section', { class: 'panel', dataset: { customer: id } },
      h('h2', {}, id),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Plan'), h('dd', {}, subscription.plan ? `${subscription.plan.id} version ${subscription.plan.version}` : 'none'),
        h('dt', {}, 'Timezone'), h('dd', {}, subscription.timezone),
        h('dt', {}, 'Subscribed since'), h('dd', {}, subscription.start || '—'),
        subscription.cancelled_from ? [h('dt', {}, 'Cancelled from'), h('dd', { id: 'cancelled-from' }, subscription.cancelled_from)] : null,
        subscription.changes.length ? [h('dt', {}, 'Plan moves'), h('dd', {}, subscription.changes.map((c) => `${dateOf(c.at)}: ${c.from.id} v${c.from.version} → ${c.to.id} v${c.to.version}`).join('; '))] : null,
        Object.keys(customer.attributes || {}).length ? [h('dt', {}, 'Attributes'), h('dd', {}, JSON.stringify(customer.attributes))] : null),
      h('h3', {}, 'Live usage ', subscriptionEnded ? null : h('span', { class: 'live-dot', title: 'streaming' })),
      live,
      await portalLinks(id),
      subscription.plan && !subscription.cancelled_from ? cancelForm(id, detail) : null,
    ));
  } catch (error) {
    detail.replaceChildren(h('section', { class: 'panel' }, failure(error)));
    return;
  }
  if (subscriptionEnded) {
    live.replaceChildren(h('p', { class: 'unit', id: 'subscription-ended' }, `The subscription ended at ${subscriptionEnded}: no live usage.`));
    return;
  }
  const signal = stream.signal;
  streamEvents(`/v1/customers/${encodeURIComponent(id)}/usage/stream`, (name, data) => {
    if (name === 'usage') live.replaceChildren(liveView(JSON.parse(data)));
    else if (name === 'ended') live.replaceChildren(h('p', {}, 'The subscription is no longer in force.'));
    else if (name === 'error') live.replaceChildren(h('p', { class: 'error' }, JSON.parse(data).message));
  }, signal).catch((error) => {
    if (error.name === 'AbortError') return;
    live.replaceChildren(error.status === 404 ? h('p', { class: 'unit' }, 'No subscription in force now: no live usage.') : failure(error));
  });
}

// Invoices

const STATES = ['open', 'paid', 'void', 'uncollectible'];
const METHODS = { card: 'Card', bank_transfer: 'Bank transfer', digital_wallet: 'Digital wallet' };
const stateBadge = (collection) => (collection ? h('span', { class: `state state-${collection.state}`, dataset: { state: collection.state } }, collection.state) : '—');

async function showInvoices() {
  let { invoices } = await api('/v1/invoices');
  const customer = h('input', { id: 'invoice-customer', type: 'search', placeholder: 'Customer', 'aria-label': 'Filter by customer' });
  const months = [...new Set(invoices.map((i) => i.invoice.period.start.slice(0, 7)))].sort().reverse();
  const month = h('select', { id: 'invoice-month', 'aria-label': 'Filter by month' }, h('option', { value: '' }, 'Every month'), months.map((m) => h('option', { value: m }, m)));
  const state = h('select', { id: 'invoice-state', 'aria-label': 'Filter by state' }, h('option', { value: '' }, 'Every state'), STATES.map((s) => h('option', { value: s }, s)));
  const body = h('tbody');
  const detail = h('div', { id: 'invoice-detail', class: 'detail' });
  const count = h('p', { class: 'unit' });
  /// After a payment: the list and the open invoice read again from the server.
  async function reload(number) {
    ({ invoices } = await api('/v1/invoices'));
    render();
    const item = invoices.find((i) => i.number === number);
    if (item) await showInvoice(item, detail, reload);
  }
  function render() {
    const shown = invoices.filter((i) => i.customer_id.toLowerCase().includes(customer.value.trim().toLowerCase()) && (!month.value || i.invoice.period.start.startsWith(month.value)) && (!state.value || i.collection?.state === state.value));
    count.textContent = `${shown.length} of ${invoices.length} invoices`;
    body.replaceChildren(...shown.map((i) => h('tr', { dataset: { invoice: i.number, state: i.collection?.state || '' }, class: 'clickable', onclick: () => showInvoice(i, detail, reload) },
      h('td', {}, h('button', { type: 'button', class: 'link' }, String(i.number))),
      h('td', {}, i.customer_id),
      h('td', {}, `${dateOf(i.invoice.period.start)} – ${dateOf(i.invoice.period.end)}`),
      h('td', {}, i.invoice.plan_id),
      h('td', { class: 'num' }, amount(i.invoice.total, i.invoice.currency)),
      h('td', {}, stateBadge(i.collection)),
      h('td', { class: 'num' }, i.collection ? amount(i.collection.balance, i.collection.currency, { dataset: { testid: `balance-${i.number}` } }) : '—'))));
  }
  customer.addEventListener('input', render);
  month.addEventListener('change', render);
  state.addEventListener('change', render);
  render();
  return [h('div', { class: 'console-layout' },
    h('section', { class: 'panel' }, h('h2', {}, 'Invoices'), h('div', { class: 'usage-controls' }, customer, month, state), count,
      h('div', { class: 'table-scroll' }, h('table', { class: 'invoice list', id: 'invoice-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'Number'), h('th', {}, 'Customer'), h('th', {}, 'Period'), h('th', {}, 'Plan'), h('th', { class: 'num' }, 'Total'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Balance'))), body)),
      invoices.length ? null : h('p', { class: 'unit' }, 'No final invoices yet: they are made when a period is closed (POST /v1/close).')),
    detail)];
}

/// What the invoice owes and what was paid, and a form to record a payment while it is open.
function collectionView(item, reload) {
  const c = item.collection;
  if (!c) return null;
  const shown = (value, testid) => amount(value, c.currency, testid ? { dataset: { testid } } : {});
  const payments = c.payments.length
    ? h('table', { class: 'invoice list', id: 'invoice-payments' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Received'), h('th', {}, 'Method'), h('th', {}, 'Reference'), h('th', {}, 'By'), h('th', { class: 'num' }, 'Amount'), h('th', { class: 'num' }, 'Refunded'))),
      h('tbody', {}, c.payments.map((p) => h('tr', { dataset: { payment: p.id } }, h('td', {}, p.at.replace('T', ' ').replace('Z', ' UTC')), h('td', {}, METHODS[p.method] || p.method), h('td', {}, h('code', {}, p.reference)), h('td', {}, p.actor), h('td', { class: 'num' }, shown(p.amount)), h('td', { class: 'num' }, shown(p.refunded))))))
    : h('p', { class: 'unit' }, 'No payment recorded.');
  let form = null;
  if (c.state === 'open') {
    const value = h('input', { id: 'payment-amount', inputmode: 'decimal', value: c.balance, 'aria-label': 'Amount' });
    const method = h('select', { id: 'payment-method', 'aria-label': 'Method' }, Object.entries(METHODS).map(([v, label]) => h('option', { value: v }, label)));
    const reference = h('input', { id: 'payment-reference', placeholder: 'e.g. bank transfer id', 'aria-label': 'Reference' });
    const message = h('p', { class: 'unit', role: 'status' });
    // Made once per form: a retry of the same submission (a double click, a lost answer)
    // carries the same reference, which the server records once.
    const generated = `console-${item.number}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    form = actionForm('payment-form', message, async () => {
      const ref = reference.value.trim() || generated;
      await api(`/v1/invoices/${item.number}/payments`, { method: 'POST', body: JSON.stringify({ amount: value.value.trim(), method: method.value, reference: ref }) });
      await reload(item.number);
    },
    h('label', {}, `Amount (${c.currency})`, value), h('label', {}, 'Method', method), h('label', {}, 'Reference', reference),
    h('button', { type: 'submit' }, 'Record payment'), message);
  }
  return h('div', { class: 'collection', dataset: { state: c.state } },
    h('h3', {}, 'Collection'),
    h('p', {}, stateBadge(c), ` · due ${dateOf(c.due_at)} (net ${c.net_days}) · paid `, shown(c.paid, 'invoice-paid'), ' · balance ', shown(c.balance, 'invoice-balance'),
      !/^0(\.0+)?$/.test(c.overpaid) ? [' · overpaid ', shown(c.overpaid)] : null),
    payments, form);
}

async function showInvoice(item, detail, reload) {
  const html = await (await api(`/v1/invoices/${item.number}/html`, { raw: true })).text();
  const plan = plans.find((p) => p.id === item.invoice.plan_id)?.plan || { metrics: [], charges: [] };
  detail.replaceChildren(h('section', { class: 'panel', dataset: { invoice: item.number } },
    h('h2', {}, `Invoice ${item.number}`),
    h('p', {}, `${item.customer_id} · ${dateOf(item.invoice.period.start)} – ${dateOf(item.invoice.period.end)} · total `, amount(item.invoice.total, item.invoice.currency, { dataset: { testid: 'invoice-total' } })),
    collectionView(item, reload),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => download(`/v1/invoices/${item.number}/html`, `invoice-${item.number}.html`) }, 'Download HTML'),
      h('button', { type: 'button', class: 'secondary', onclick: () => download(`/v1/invoices/${item.number}`, `invoice-${item.number}.json`) }, 'Download JSON')),
    h('h3', {}, 'HTML view'),
    h('iframe', { class: 'invoice-frame', title: `Invoice ${item.number}`, sandbox: '', srcdoc: html }),
    h('details', {}, h('summary', {}, 'Lines'), invoiceView(item.invoice, plan)),
  ));
}

// Plans

async function showPlans() {
  const byId = new Map();
  for (const p of plans) byId.set(p.id, [...(byId.get(p.id) || []), p]);
  const editor = h('div', { id: 'plan-version-editor', class: 'detail' });
  const list = h('ul', { class: 'plan-list' }, [...byId].map(([id, versions]) => h('li', {},
    h('strong', {}, versions.at(-1).plan.name || id), ' ', h('code', {}, id),
    h('div', { class: 'versions' }, versions.map((v) => h('button', { type: 'button', class: 'secondary', dataset: { plan: id, version: v.version }, onclick: () => editVersion(v, editor) }, `v${v.version}`))))));
  return [h('div', { class: 'console-layout' }, h('section', { class: 'panel' }, h('h2', {}, 'Plans and versions'), h('p', { class: 'unit' }, 'Versions are immutable: edit one and save it as the next version.'), list), editor)];
}

function editVersion(version, editor) {
  const text = h('textarea', { id: 'plan-text', wrap: 'off', spellcheck: 'false', 'aria-label': `Plan ${version.id} version ${version.version}` });
  text.value = JSON.stringify(version.plan, null, 2);
  const elements = { text, errors: h('ul', { class: 'issues', 'aria-label': 'Errors' }), warnings: h('ul', { class: 'issues', 'aria-label': 'Warnings' }), status: h('span', { id: 'status', 'aria-live': 'polite' }), preview: h('div') };
  const saved = h('div', { 'aria-live': 'polite' });
  const save = h('button', { type: 'button', class: 'primary', id: 'save-version', disabled: true, onclick: async () => {
    try {
      const made = await api('/v1/plans', { method: 'POST', body: text.value });
      saved.replaceChildren(h('p', { class: 'status-ok', dataset: { saved: `${made.id}@${made.version}` } }, `Saved as ${made.id} version ${made.version}.`));
      plans = (await api('/v1/plans')).plans;
    } catch (error) {
      saved.replaceChildren(failure(error));
    }
  } }, 'Save as a new version');
  editor.replaceChildren(h('section', { class: 'panel' },
    h('h2', {}, `${version.id} version ${version.version} `, elements.status),
    h('div', { class: 'editor-layout' }, h('div', {}, text), h('div', {}, elements.errors, elements.warnings, h('div', { class: 'actions' }, save), saved, h('h3', {}, 'Preview'), elements.preview))));
  watchPlan(elements, () => [], (plan) => {
    save.disabled = !plan;
  });
}

// Plugins

async function showPlugins() {
  const list = h('div', { id: 'plugin-list' });
  const report = h('div', { id: 'plugin-report', 'aria-live': 'polite' });
  async function refresh() {
    try {
      const plugins = await api('/v1/plugins');
      list.replaceChildren(plugins.length
        ? h('table', { class: 'invoice list' }, h('thead', {}, h('tr', {}, h('th', {}, 'Reference'), h('th', {}, 'sha256'), h('th', {}, 'Kinds'), h('th', {}, 'Uploaded'), h('th', {}, ''))),
          h('tbody', {}, plugins.map((p) => h('tr', { dataset: { reference: p.reference, active: String(p.active) } },
            h('td', {}, p.reference, h('div', { class: 'unit' }, p.description)),
            h('td', {}, h('code', { title: p.sha256 }, `${p.sha256.slice(0, 12)}…`)),
            h('td', {}, p.kinds.join(', ')),
            h('td', {}, new Date(p.uploaded_at).toLocaleString()),
            h('td', {}, p.active ? h('strong', { class: 'status-ok' }, 'active') : h('button', { type: 'button', class: 'secondary', onclick: async () => {
              try {
                await api(`/v1/plugins/${encodeURIComponent(p.reference)}/activate`, { method: 'POST', body: JSON.stringify({ sha256: p.sha256 }) });
                await refresh();
              } catch (error) {
                report.replaceChildren(failure(error));
              }
            } }, 'Activate'))))))
        : h('p', { class: 'unit' }, 'No plugin uploaded yet.'));
    } catch (error) {
      list.replaceChildren(failure(error));
    }
  }
  const file = h('input', { type: 'file', id: 'plugin-file', accept: '.wasm,application/wasm' });
  const config = h('input', { id: 'plugin-config', class: 'wide', placeholder: '{"rates": {"peak": "0.30"}}', 'aria-label': 'Config for the dry run (JSON, optional)' });
  const upload = h('button', { type: 'button', class: 'primary', onclick: async () => {
    const chosen = file.files?.[0];
    if (!chosen) {
      report.replaceChildren(h('p', { class: 'error' }, 'Choose a plugin component (.wasm) first.'));
      return;
    }
    const configText = config.value.trim();
    if (configText) {
      try {
        JSON.parse(configText);
      } catch (error) {
        report.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The dry-run config is not JSON: ${error.message}`));
        return;
      }
    }
    report.replaceChildren(h('p', { class: 'unit' }, `Checking ${chosen.name}…`));
    try {
      const query = configText ? `?config=${encodeURIComponent(configText)}` : '';
      const check = await api(`/v1/plugins${query}`, { method: 'POST', body: await chosen.arrayBuffer(), type: 'application/wasm' });
      report.replaceChildren(h('div', { class: 'check-report' },
        h('p', { class: 'status-ok' }, `${check.reference} passed its checks${check.active ? ' (active)' : ' (not active yet)'}`),
        h('dl', { class: 'facts' }, h('dt', {}, 'sha256'), h('dd', {}, h('code', {}, check.sha256)), h('dt', {}, 'Size'), h('dd', {}, `${check.size.toLocaleString()} bytes`), h('dt', {}, 'Kinds'), h('dd', {}, check.kinds.join(', ')), h('dt', {}, 'Description'), h('dd', {}, check.description)),
        h('h3', {}, 'Dry run'), h('ul', {}, check.dry_run.map((step) => h('li', {}, step)))));
      await refresh();
    } catch (error) {
      report.replaceChildren(failure(error));
    }
  } }, 'Upload and check');
  await refresh();
  return [h('section', { class: 'panel' }, h('h2', {}, 'Plugins'), list, h('h3', {}, 'Upload a version'),
    h('div', { class: 'usage-controls' }, file, h('label', { for: 'plugin-config' }, 'Dry-run config'), config, upload),
    h('p', { class: 'unit' }, 'The check runs the plugin once with this config (a plan’s config for it; empty: {}): a plugin with required settings needs them.'),
    report)];
}

const views = { customers: showCustomers, invoices: showInvoices, plans: showPlans, plugins: showPlugins };

async function route() {
  stream?.abort();
  const tab = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'customers';
  document.body.dataset.nav = `console.html#${tab}`;
  for (const link of document.querySelectorAll('nav.top a')) link.setAttribute('aria-current', link.getAttribute('href') === `console.html#${tab}` ? 'page' : 'false');
  const main = $('operator-main');
  main.dataset.tab = tab;
  document.body.dataset.ready = 'false';
  try {
    main.replaceChildren(...(await views[tab]()));
  } catch (error) {
    main.replaceChildren(failure(error));
  }
  document.body.dataset.ready = 'true';
}

async function start() {
  await ready;
  plans = (await api('/v1/plans')).plans;
  window.addEventListener('hashchange', route);
  await route();
}

document.body.dataset.nav = 'console.html#customers';
const waiting = whenSignedIn(start);
if (!waiting) document.body.dataset.ready = 'true';
