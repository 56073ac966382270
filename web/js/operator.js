// The operator pages' session: the operator key typed once into a sign-in form, kept in this
// tab's sessionStorage (gone when the tab closes), sent as `Authorization: Bearer` on every API
// call; server-sent events read through fetch streaming (EventSource cannot send a header).
import { h } from './app.js';

const KEY = 'ratecard.operatorKey';

export const operatorKey = () => sessionStorage.getItem(KEY);

export function signOut() {
  sessionStorage.removeItem(KEY);
  location.reload();
}

/// An API failure: the server's `{error: {code, message}}`, with the HTTP status.
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `the server answered ${status}`);
    this.status = status;
    this.code = body?.error?.code || 'http';
    this.path = body?.error?.path || null;
  }
}

/// A call of the operator API: the parsed JSON (or the Response itself with `raw`); a 401
/// signs out (the key is wrong or was removed).
export async function api(path, { method = 'GET', body, type = 'application/json', raw = false } = {}) {
  const headers = { Authorization: `Bearer ${operatorKey()}` };
  if (body !== undefined) headers['Content-Type'] = type;
  const response = await fetch(path, { method, headers, body });
  if (response.status === 401) {
    sessionStorage.removeItem(KEY);
    showSignIn('The operator key was refused: sign in again.');
    throw new ApiError(401, await response.json().catch(() => null));
  }
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  return raw ? response : response.json();
}

/// Reads server-sent events from `path` until `signal` aborts: `onEvent(name, data)` per event.
export async function streamEvents(path, onEvent, signal) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${operatorKey()}`, Accept: 'text/event-stream' }, signal });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      let name = 'message';
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(':')) continue;
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

/// Downloads what an API path answers (a CSV, an invoice's JSON) as `filename`.
export async function download(path, filename) {
  const response = await api(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = h('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/// The operator pages' navigation.
export function operatorNavigation(current) {
  const pages = [
    ['console.html#customers', 'Customers'],
    ['console.html#invoices', 'Invoices'],
    ['console.html#plans', 'Plans'],
    ['console.html#plugins', 'Plugins'],
    ['reports.html', 'Reports'],
  ];
  return h(
    'nav',
    { class: 'top', 'aria-label': 'Operator pages' },
    h('span', { class: 'brand' }, 'Ratecard console'),
    pages.map(([href, label]) => h('a', { href, 'aria-current': href === current ? 'page' : null }, label)),
    operatorKey() ? h('button', { type: 'button', class: 'sign-out', onclick: signOut }, 'Sign out') : null,
  );
}

let signedIn = null;

function showSignIn(message) {
  const box = document.getElementById('sign-in');
  const main = document.getElementById('operator-main');
  if (main) main.hidden = true;
  box.hidden = false;
  const input = h('input', { id: 'operator-key', type: 'password', autocomplete: 'off', spellcheck: 'false', placeholder: 'rk_…', required: true });
  const note = h('p', { class: message ? 'error' : 'unit', role: message ? 'alert' : null }, message || 'The key `ratecard keys create` (or `ratecard serve --demo`) printed. It stays in this tab only.');
  const form = h(
    'form',
    { class: 'panel sign-in' },
    h('h2', {}, 'Sign in'),
    h('label', { for: 'operator-key' }, 'Operator key'),
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
    note,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    const response = await fetch('/v1/plans', { headers: { Authorization: `Bearer ${key}` } });
    if (!response.ok) {
      note.className = 'error';
      note.textContent = response.status === 401 ? 'This key is not an operator key of this server.' : `The server answered ${response.status}.`;
      return;
    }
    sessionStorage.setItem(KEY, key);
    box.hidden = true;
    if (main) main.hidden = false;
    signedIn?.();
  });
  box.replaceChildren(form);
  input.focus();
}

/// Runs `start` once signed in: at once with a key in this tab, else after the sign-in form.
export function whenSignedIn(start) {
  signedIn = async () => {
    document.querySelector('nav.top')?.replaceWith(operatorNavigation(document.body.dataset.nav));
    await start();
  };
  if (operatorKey()) return signedIn();
  showSignIn(null);
  return null;
}
