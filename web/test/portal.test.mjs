// Browser end-to-end of the customer portal, the operator console and the reports: Debian's
// Chromium (headless, through playwright-core) against the real `ratecard serve --demo` binary
// (RATECARD_BIN, which `cargo xtask test` sets) on a free loopback port with a temporary data
// directory. Last month gets events and is closed (the server restarted with no grace window),
// so there are invoices. A customer's portal link shows the operator API's totals; the what-if
// control's amount is the engine's quote of the scaled usage (computed here in Node by the same
// wasm package); the console signs in, lists customers, streams live usage and opens invoices;
// the reports page draws and its CSV downloads equal the API's. Screenshots go to
// target/web-screenshots/ (portal-*, console-*, reports-*).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { loadWasm, repoDir, webDir } from '../tools/load.mjs';

const BIN = process.env.RATECARD_BIN || path.join(repoDir, 'target/debug/ratecard');
const SHOTS = process.env.RATECARD_SCREENSHOTS || path.join(repoDir, 'target/web-screenshots');
const CHROMIUM = '/usr/bin/chromium';
const work = mkdtempSync(path.join(os.tmpdir(), 'ratecard-portal-'));
const dataDir = path.join(work, 'data');

let server;
let base;
let key;
let browser;
let wasm;

/// Starts `ratecard serve` on the data directory: its base URL and the demo key, if printed.
function serve(args) {
  const child = spawn(BIN, ['serve', '--addr', '127.0.0.1:0', '--web', webDir, '--examples', path.join(repoDir, 'examples'), '--data-dir', dataDir, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RATECARD_LOG: 'warn' } });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const url = /Ratecard pages on (http:\/\/[\d.]+:\d+\/)/.exec(out);
      if (url) resolve({ child, url: url[1], key: /operator key \(demo\): (\S+)/.exec(out)?.[1] });
    });
    child.on('exit', (code) => reject(new Error(`ratecard serve exited with ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`no URL from ratecard serve: ${out}`)), 20000);
  });
}

async function call(method, route, { token = key, body, type = 'application/json' } = {}) {
  const response = await fetch(new URL(route, base), { method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': type }, body });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return response.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(text) : text;
}

const utcDate = (d) => d.toISOString().slice(0, 10);
/// A day in the middle of last month (UTC).
function lastMonthDay(day) {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, day, 12));
}

before(async () => {
  assert.ok(existsSync(BIN), `${BIN} is missing: cargo build -p ratecard-host`);
  wasm = await loadWasm();
  // The demo, with late events accepted: last month gets usage.
  let first = await serve(['--demo', '--grace-hours', '100000']);
  base = first.url;
  key = first.key;
  assert.ok(key, 'the demo prints an operator key');
  const events = [];
  for (let day = 3; day <= 20; day += 1) {
    const at = Math.floor(lastMonthDay(day).getTime() / 1000);
    for (const customer of ['acme', 'globex']) events.push({ id: `lm-${customer}-${day}`, customer, timestamp: at, code: 'egress', properties: { bytes: 40000000000 + day * 1000000000 } });
    for (const customer of ['initech', 'umbrella']) events.push({ id: `lm-${customer}-${day}`, customer, timestamp: at, code: 'trip.completed', properties: { km: 120 + day, vehicle_id: `v${day % 4}` } });
    for (const customer of ['hooli', 'stark']) events.push({ id: `lm-${customer}-${day}`, customer, timestamp: at, code: 'ppv.purchase', properties: { quality: day % 2 ? 'hd' : '4k' } });
  }
  const ingested = await call('POST', '/v1/events', { body: JSON.stringify(events) });
  assert.equal(ingested.rejected, 0, JSON.stringify(ingested.results.filter((r) => r.status === 'rejected')));
  first.child.kill();
  await new Promise((resolve) => first.child.on('exit', resolve));
  // Restarted with no grace window: last month closes.
  first = null;
  const second = await serve(['--grace-hours', '0']);
  server = second.child;
  base = second.url;
  const closed = await call('POST', '/v1/close', { body: JSON.stringify({ date: utcDate(lastMonthDay(15)) }) });
  // Six customers on the example plans and `wayne` on the demo's plugins plan.
  assert.equal(closed.invoices.length, 7);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

/// A page recording console errors, page errors and failed requests into `problems` (statuses
/// in `expected` are what the test provokes).
async function open(url, { viewport = { width: 1280, height: 900 }, expected = [] } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error' && !expected.some((status) => message.text().includes(`${status}`))) page.problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => page.problems.push(error.message));
  page.on('requestfailed', (request) => {
    // A live-usage stream is aborted when the page moves on.
    if (!request.url().includes('/usage/stream')) page.problems.push(`request failed ${request.url()}`);
  });
  page.on('response', (response) => {
    // The portal's daily usage as the page read it (its what-if prices exactly that).
    if (response.url().includes('/portal/v1/usage/daily') && response.ok()) page.daily = response.json();
    if (response.status() >= 400 && !expected.includes(response.status())) page.problems.push(`${response.status()} ${response.url()}`);
  });
  await page.goto(new URL(url, base).href);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  return page;
}

const dataAmount = (page, testid) => page.getAttribute(`[data-testid="${testid}"]`, 'data-amount');

async function portalLink(customer, days = 30) {
  return call('POST', `/v1/customers/${customer}/portal-links`, { body: JSON.stringify({ expires_in_days: days }) });
}

test('a customer opens their portal link and sees the totals of the operator API', async () => {
  const link = await portalLink('acme');
  const before = await call('GET', '/v1/customers/acme/usage');
  const page = await open(link.url);
  const after = await call('GET', '/v1/customers/acme/usage');
  assert.equal(await page.textContent('[data-testid="customer"]'), 'acme');
  assert.equal(await dataAmount(page, 'amount-so-far'), after.amount_so_far);
  assert.equal(before.amount_so_far, after.amount_so_far);
  // The projection moves with the clock: it is the API's of a moment before or after.
  assert.ok([before.projected_total, after.projected_total].includes(await dataAmount(page, 'projected')), `${await dataAmount(page, 'projected')} vs ${before.projected_total}/${after.projected_total}`);
  // The token left the address bar.
  assert.ok(!page.url().includes('token'), page.url());
  // A plot per metric, its quantity so far as the daily endpoint's.
  const daily = await call('GET', '/portal/v1/usage/daily', { token: link.token });
  for (const metric of daily.metrics) {
    assert.equal(await page.getAttribute(`[data-testid="quantity-${metric.code}"]`, 'data-quantity'), metric.quantity);
    assert.ok(await page.locator(`article[data-metric="${metric.code}"] svg.chart polyline`).count() >= 1);
  }
  // Last month's invoice, with the operator's total; its HTML opens in the page.
  const { invoices } = await call('GET', '/v1/invoices');
  const own = invoices.find((i) => i.customer_id === 'acme');
  assert.equal(await dataAmount(page, `invoice-total-${own.number}`), own.invoice.total);
  assert.equal(await page.locator('#portal-invoices tbody tr').count(), 1);
  await page.click(`tr[data-invoice="${own.number}"] button:has-text("View")`);
  const frame = page.frameLocator(`iframe[data-invoice="${own.number}"]`);
  await frame.locator('h1').waitFor();
  assert.equal(await frame.locator('h1').textContent(), `Invoice ${own.number}`);
  // The sandboxed frame lays out once shown; a viewport screenshot paints it (a full-page one
  // leaves out-of-process frames below the fold blank).
  await page.waitForTimeout(500);
  await page.locator('.invoice-viewer').scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(SHOTS, 'portal-invoice.png') });
  const [json] = await Promise.all([page.waitForEvent('download'), page.click(`tr[data-invoice="${own.number}"] button:has-text("JSON")`)]);
  const downloaded = JSON.parse(readFileSync(await json.path(), 'utf8'));
  assert.deepEqual(downloaded.invoice, own.invoice);
  await page.screenshot({ path: path.join(SHOTS, 'portal-desktop.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  // Reloaded (the token kept in this tab), and at phone width with no sideways scroll.
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  assert.equal(await page.textContent('[data-testid="customer"]'), 'acme');
  await page.context().close();
  const phone = await open(link.url, { viewport: { width: 390, height: 844 } });
  assert.ok(await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1), 'no sideways scroll');
  await phone.screenshot({ path: path.join(SHOTS, 'portal-phone.png'), fullPage: true });
  assert.deepEqual(phone.problems, []);
  await phone.context().close();
});

/// The engine's total for the what-if usage of `daily` scaled by `factor` (exact decimals).
function engineWhatIf(plan, daily, factor) {
  const usage = structuredClone(daily.what_if);
  const scale = (text) => {
    const [ai, af = ''] = String(text).split('.');
    const [bi, bf = ''] = factor.split('.');
    const digits = (BigInt(ai + af) * BigInt(bi + bf)).toString().padStart(af.length + bf.length + 1, '0');
    const s = af.length + bf.length;
    return s ? `${digits.slice(0, -s)}.${digits.slice(-s)}` : digits;
  };
  for (const [code, value] of Object.entries(usage.quantities)) {
    usage.quantities[code] = Array.isArray(value)
      ? value.map((g) => ({ ...g, quantity: scale(g.quantity), ...(g.transactions ? { transactions: g.transactions.map(scale) } : {}) }))
      : scale(value);
  }
  return wasm.quote(JSON.stringify(plan.plan), JSON.stringify(usage)).total;
}

test('the what-if control prices N× the projected usage through the engine', async () => {
  for (const customer of ['globex', 'hooli', 'initech']) {
    const link = await portalLink(customer);
    const plan = await call('GET', '/portal/v1/plan', { token: link.token });
    const page = await open(link.url);
    const dailyBefore = await call('GET', '/portal/v1/usage/daily', { token: link.token });
    for (const factor of ['1', '3', '0.5', '10']) {
      await page.click(`button.factor[data-factor="${factor}"]`);
      await page.waitForSelector(`[data-testid="what-if-total"][data-factor="${factor}"]`);
      const shown = await dataAmount(page, 'what-if-total');
      const dailyAfter = await call('GET', '/portal/v1/usage/daily', { token: link.token });
      // Time-weighted usage moves with the clock: the page's own read is the one it priced.
      const expected = [engineWhatIf(plan, await page.daily, factor), engineWhatIf(plan, dailyBefore, factor), engineWhatIf(plan, dailyAfter, factor)];
      assert.ok(expected.includes(shown), `${customer} ${factor}×: ${shown} vs ${expected}`);
      if (factor === '1') assert.equal(shown, await dataAmount(page, 'projected'), `${customer}: 1× is the projected bill`);
    }
    // Typed: a bad multiple is named, a good one priced.
    await page.fill('#what-if-factor', 'lots');
    assert.match(await page.textContent('.what-if-result .error'), /not a multiple/);
    await page.fill('#what-if-factor', '2.5');
    await page.waitForSelector('[data-testid="what-if-total"][data-factor="2.5"]');
    if (customer === 'globex') await page.screenshot({ path: path.join(SHOTS, 'portal-what-if.png'), fullPage: false, clip: await page.locator('section.what-if').boundingBox() });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  }
});

test('a customer on a plan priced by plugins sees the server\'s figures and why there is no what-if', async () => {
  const link = await portalLink('wayne');
  const page = await open(link.url);
  const usage = await call('GET', '/v1/customers/wayne/usage');
  assert.equal(await dataAmount(page, 'amount-so-far'), usage.amount_so_far);
  assert.match(await page.textContent('[data-testid="what-if-unavailable"]'), /p95-bandwidth@1\.0\.0, tou-electricity@1\.0\.0/);
  await page.screenshot({ path: path.join(SHOTS, 'portal-plugins.png'), fullPage: true });
  assert.ok(await page.locator('article[data-metric="bandwidth"]').count() === 1, 'the plugin metric has its card');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('a missing, revoked or guessed portal link is explained (expiry: host/tests/portal.rs, on the server clock)', async () => {
  const missing = await open('/portal.html');
  assert.match(await missing.textContent('.portal-error h2'), /opens from a portal link/);
  await missing.screenshot({ path: path.join(SHOTS, 'portal-missing-link.png') });
  await missing.context().close();
  const link = await portalLink('stark');
  await call('DELETE', `/v1/portal-links/${link.id}`);
  const revoked = await open(link.url, { expected: [401] });
  assert.match(await revoked.textContent('.portal-error h2'), /was revoked/);
  assert.equal(await revoked.getAttribute('.portal-error', 'data-error'), 'link_revoked');
  await revoked.screenshot({ path: path.join(SHOTS, 'portal-revoked-link.png') });
  assert.deepEqual(revoked.problems, []);
  await revoked.context().close();
  const guessed = await open(`/portal.html#token=rp_${'0'.repeat(64)}`, { expected: [401] });
  assert.match(await guessed.textContent('.portal-error h2'), /not valid/);
  await guessed.context().close();
});

async function signIn(page) {
  await page.waitForSelector('#operator-key');
  await page.fill('#operator-key', key);
  await page.click('.sign-in button[type="submit"]');
  await page.waitForSelector('#operator-main:not([hidden])');
}

test('the console signs in and shows customers with live usage, invoices, plans and plugins', async () => {
  const page = await open('/console.html', { expected: [401] });
  // A wrong key is refused with a message.
  await page.fill('#operator-key', 'rk_wrong');
  await page.click('.sign-in button[type="submit"]');
  await page.waitForSelector('.sign-in .error');
  assert.match(await page.textContent('.sign-in .error'), /not an operator key/);
  await page.screenshot({ path: path.join(SHOTS, 'console-sign-in.png') });
  await signIn(page);
  await page.waitForSelector('#customer-list tbody tr');
  const listed = await page.$$eval('#customer-list tbody tr', (rows) => rows.map((r) => r.dataset.customer));
  assert.deepEqual(listed, ['acme', 'globex', 'hooli', 'initech', 'stark', 'umbrella', 'wayne']);
  await page.fill('#customer-search', 'ST');
  await page.waitForFunction(() => document.querySelectorAll('#customer-list tbody tr').length === 1);
  assert.equal(await page.getAttribute('#customer-list tbody tr', 'data-customer'), 'stark');
  await page.fill('#customer-search', '');
  await page.waitForFunction(() => document.querySelectorAll('#customer-list tbody tr').length === 7);
  // acme's live usage, and a new event streamed in.
  await page.click('tr[data-customer="acme"]');
  await page.waitForSelector('[data-testid="live-so-far"]');
  const usage = await call('GET', '/v1/customers/acme/usage');
  assert.equal(await dataAmount(page, 'live-so-far'), usage.amount_so_far);
  const events = Number(await page.getAttribute('#live-usage .live', 'data-events'));
  await call('POST', '/v1/events', { body: JSON.stringify({ id: `live-${Date.now()}`, customer: 'acme', timestamp: Math.floor(Date.now() / 1000) - 5, code: 'request', properties: { method: 'PUT' } }) });
  await page.waitForFunction((n) => Number(document.querySelector('#live-usage .live')?.dataset.events) === n + 1, events, { timeout: 10000 });
  // A portal link made from the console.
  await page.click('#create-link');
  await page.waitForSelector('#new-portal-link');
  assert.match(await page.inputValue('#new-portal-link'), /\/portal\.html#token=rp_[0-9a-f]{64}$/);
  await page.screenshot({ path: path.join(SHOTS, 'console-customers.png'), fullPage: true });

  // Invoices: filter, open one, its HTML view.
  await page.click('nav.top a[href="console.html#invoices"]');
  await page.waitForSelector('#invoice-table tbody tr');
  assert.equal(await page.locator('#invoice-table tbody tr').count(), 7);
  await page.fill('#invoice-customer', 'glob');
  assert.equal(await page.locator('#invoice-table tbody tr').count(), 1);
  const { invoices } = await call('GET', '/v1/invoices');
  const globex = invoices.find((i) => i.customer_id === 'globex');
  await page.click(`#invoice-table tr[data-invoice="${globex.number}"]`);
  await page.waitForSelector('#invoice-detail iframe');
  assert.equal(await dataAmount(page, 'invoice-total'), globex.invoice.total);
  assert.equal(await page.frameLocator('#invoice-detail iframe').locator('h1').textContent(), `Invoice ${globex.number}`);
  await page.waitForTimeout(500);
  await page.screenshot({ path: path.join(SHOTS, 'console-invoices.png'), fullPage: true });

  // Plans: edit a version, save it as the next one through the plan API.
  await page.click('nav.top a[href="console.html#plans"]');
  await page.waitForSelector('button[data-plan="api-pro-2026"]');
  await page.click('button[data-plan="api-pro-2026"][data-version="1"]');
  await page.waitForSelector('#status.status-ok');
  const text = await page.inputValue('#plan-text');
  await page.fill('#plan-text', text.replace('"name": "API Pro"', '"name": "API Pro (2027)"'));
  await page.waitForFunction(() => !document.getElementById('save-version').disabled);
  // An invalid edit shows its error at its path and cannot be saved.
  await page.fill('#plan-text', text.replace('"currency": "USD"', '"currency": "XYZ"'));
  await page.waitForSelector('#status.error-count');
  assert.ok(await page.locator('li.error[data-path="$.currency"]').count() >= 1);
  assert.equal(await page.isDisabled('#save-version'), true);
  await page.fill('#plan-text', text.replace('"name": "API Pro"', '"name": "API Pro (2027)"'));
  await page.waitForSelector('#status.status-ok');
  await page.click('#save-version');
  await page.waitForSelector('[data-saved="api-pro-2026@2"]');
  const { plans } = await call('GET', '/v1/plans');
  assert.equal(plans.find((p) => p.id === 'api-pro-2026' && p.version === 2)?.plan.name, 'API Pro (2027)');
  await page.screenshot({ path: path.join(SHOTS, 'console-plans.png'), fullPage: true });

  // Plugins: the demo's two, active.
  await page.click('nav.top a[href="console.html#plugins"]');
  await page.waitForSelector('#plugin-list table');
  const active = await page.$$eval('#plugin-list tr[data-active="true"]', (rows) => rows.map((r) => r.dataset.reference));
  assert.deepEqual(active, ['p95-bandwidth@1.0.0', 'tou-electricity@1.0.0']);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

/// A sample plugin component the test-plugins build script made next to the binary, if any.
function sampleComponent(name) {
  const builds = [path.join(path.dirname(BIN), 'build')];
  if (process.env.CARGO_TARGET_DIR) builds.push(path.join(process.env.CARGO_TARGET_DIR, 'debug', 'build'));
  for (const build of builds.filter((b) => existsSync(b))) {
    for (const dir of readdirSync(build).filter((d) => d.startsWith('ratecard-test-plugins-'))) {
      const file = path.join(build, dir, 'out', `${name}.wasm`);
      if (existsSync(file)) return file;
    }
  }
  return null;
}

test('the console uploads a plugin, shows its check report and activates it', async (t) => {
  const component = sampleComponent('fleet-km');
  // gpu-seconds needs a config its dry run does not give: the upload is refused, with why.
  const refused = sampleComponent('gpu-seconds');
  if (!component || !refused) {
    t.skip('no sample component built (cargo build -p ratecard-test-plugins makes them)');
    return;
  }
  const page = await open('/console.html#plugins', { expected: [422] });
  await signIn(page);
  await page.waitForSelector('#plugin-list p, #plugin-list table');
  await page.setInputFiles('#plugin-file', refused);
  await page.click('button:has-text("Upload and check")');
  await page.waitForSelector('#plugin-report .error');
  assert.match(await page.textContent('#plugin-report .error'), /refused: dry run.*\?config=/);
  // A config that is not JSON is caught before the upload; the plan's config passes.
  await page.fill('#plugin-config', '{multipliers');
  await page.click('button:has-text("Upload and check")');
  await page.waitForFunction(() => /not JSON/.test(document.querySelector('#plugin-report .error')?.textContent || ''));
  await page.fill('#plugin-config', '{"multipliers": {"a100": "2.5"}}');
  await page.click('button:has-text("Upload and check")');
  await page.waitForSelector('#plugin-report .check-report');
  assert.match(await page.textContent('#plugin-report'), /gpu-seconds@[\d.]+ passed its checks/);
  await page.fill('#plugin-config', '');
  await page.setInputFiles('#plugin-file', component);
  await page.click('button:has-text("Upload and check")');
  await page.waitForFunction(() => /fleet-km@[\d.]+ passed its checks/.test(document.querySelector('#plugin-report')?.textContent || ''));
  await page.click('#plugin-list tr[data-reference^="fleet-km@"] button:has-text("Activate")');
  await page.waitForSelector('#plugin-list tr[data-reference^="fleet-km@"][data-active="true"]');
  await page.screenshot({ path: path.join(SHOTS, 'console-plugins.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

/// `a − b` of decimal strings, exact (BigInt), at the larger scale.
function minus(a, b) {
  const scale = Math.max(...[a, b].map((t) => (t.split('.')[1] || '').length));
  const int = (t) => { const [i, f = ''] = t.split('.'); return BigInt(i + f.padEnd(scale, '0')); };
  const d = int(a) - int(b);
  const digits = (d < 0n ? -d : d).toString().padStart(scale + 1, '0');
  return (d < 0n ? '-' : '') + (scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits);
}

test('paying an invoice in the console updates both the operator view and the portal', async () => {
  const { invoices } = await call('GET', '/v1/invoices?customer=umbrella');
  assert.equal(invoices.length, 1);
  const { number, invoice, collection } = invoices[0];
  assert.equal(collection.state, 'open');
  assert.equal(collection.balance, collection.total);
  const link = await portalLink('umbrella');

  // The portal before: open, the whole total owed, no payment.
  const portalPage = await open(link.url);
  assert.equal(await portalPage.getAttribute(`#portal-invoices tr[data-invoice="${number}"] .state`, 'data-state'), 'open');
  assert.equal(await dataAmount(portalPage, `invoice-balance-${number}`), collection.balance);
  assert.match(await portalPage.textContent('#payments-title + p'), /No payments yet/);

  // The console: the state filter, then a part payment and the rest through the form.
  const page = await open('/console.html#invoices');
  await signIn(page);
  await page.waitForSelector('#invoice-table tbody tr');
  const open_ = (await call('GET', '/v1/invoices?state=open')).invoices.length;
  await page.selectOption('#invoice-state', 'open');
  assert.equal(await page.locator('#invoice-table tbody tr').count(), open_);
  await page.click(`#invoice-table tr[data-invoice="${number}"]`);
  await page.waitForSelector('#payment-form');
  assert.equal(await page.inputValue('#payment-amount'), collection.balance, 'the form offers the balance');
  await page.fill('#payment-amount', '1.00');
  await page.selectOption('#payment-method', 'bank_transfer');
  await page.fill('#payment-reference', 'wire-0001');
  await page.click('#payment-form button[type="submit"]');
  const rest = minus(collection.balance, '1.00');
  await page.waitForSelector(`[data-testid="invoice-balance"][data-amount="${rest}"]`);
  assert.equal(await page.locator('#invoice-payments tbody tr').count(), 1);
  assert.equal(await dataAmount(page, `balance-${number}`), rest, 'the list row follows');
  // The rest, with the amount the form now offers and a reference it makes itself.
  assert.equal(await page.inputValue('#payment-amount'), rest);
  await page.click('#payment-form button[type="submit"]');
  await page.waitForSelector('#invoice-detail .collection[data-state="paid"]');
  assert.equal(await page.locator('#payment-form').count(), 0, 'no form on a paid invoice');
  assert.equal(await page.locator(`#invoice-table tr[data-invoice="${number}"]`).count(), 0, 'the open filter no longer lists it');
  await page.selectOption('#invoice-state', 'paid');
  assert.equal(await page.getAttribute(`#invoice-table tr[data-invoice="${number}"]`, 'data-state'), 'paid');
  await page.screenshot({ path: path.join(SHOTS, 'console-payment.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.context().close();

  // The operator API agrees: paid, nothing owed, two payments summing to the total.
  const after = await call('GET', `/v1/invoices/${number}/collection`);
  assert.equal(after.state, 'paid');
  assert.match(after.balance, /^0(\.0+)?$/);
  assert.equal(sum(after.payments.map((p) => p.amount)), sum([after.total]));
  assert.deepEqual(after.payments.map((p) => p.method), ['bank_transfer', 'card']);
  assert.equal(after.payments[0].reference, 'wire-0001');

  // The portal after a reload: paid, balance zero, both payments listed (newest first).
  await portalPage.reload();
  await portalPage.waitForSelector('body[data-ready="true"]');
  assert.equal(await portalPage.getAttribute(`#portal-invoices tr[data-invoice="${number}"] .state`, 'data-state'), 'paid');
  assert.equal(await dataAmount(portalPage, `invoice-balance-${number}`), after.balance);
  const listed = await portalPage.$$eval('#portal-payments tbody tr [data-amount]', (cells) => cells.map((c) => c.dataset.amount));
  assert.deepEqual(listed.sort(), after.payments.map((p) => p.amount).sort());
  assert.equal(invoice.currency, after.currency);
  await portalPage.screenshot({ path: path.join(SHOTS, 'portal-paid.png'), fullPage: true });
  assert.deepEqual(portalPage.problems, []);
  await portalPage.context().close();
});

/// The exact sum of decimal strings (BigInt).
function sum(texts) {
  const scale = Math.max(0, ...texts.map((t) => (t.split('.')[1] || '').length));
  const total = texts.reduce((a, t) => { const [i, f = ''] = t.split('.'); return a + BigInt(i + f.padEnd(scale, '0')); }, 0n);
  const digits = total.toString().padStart(scale + 1, '0');
  return scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
}

test('the reports page draws revenue, top customers and usage, and its CSV downloads', async () => {
  const page = await open('/reports.html');
  await signIn(page);
  await page.waitForSelector('#revenue svg.chart.bars');
  const { invoices } = await call('GET', '/v1/invoices');
  for (const currency of [...new Set(invoices.map((i) => i.invoice.currency))]) {
    const expected = sum(invoices.filter((i) => i.invoice.currency === currency).map((i) => i.invoice.total));
    assert.equal(await dataAmount(page, `revenue-total-${currency}`), expected, currency);
  }
  assert.ok((await page.locator('#revenue g.bar').count()) >= 6, 'a bar per month and per plan');
  assert.equal(await page.locator('#top-customers g.bar').count(), 7);
  assert.ok((await page.locator('#usage .usage-plot svg polyline').count()) >= 3);
  // Receivables: each currency's total is what its open invoices still owe.
  const { invoices: owed } = await call('GET', '/v1/invoices?state=open');
  const owedCurrencies = [...new Set(owed.map((i) => i.collection.currency))];
  assert.ok(owedCurrencies.length >= 1, 'open invoices to age');
  for (const currency of owedCurrencies) {
    assert.equal(await dataAmount(page, `aging-total-${currency}`), sum(owed.filter((i) => i.collection.currency === currency).map((i) => i.collection.balance)), `aging ${currency}`);
  }
  assert.equal(await page.locator('#aging g.bar').count(), 5 * owedCurrencies.length, 'a bar per bucket');
  for (const name of ['revenue', 'top-customers', 'aging', 'usage']) {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(`button[data-csv="${name}"]`)]);
    assert.equal(download.suggestedFilename(), `${name}.csv`);
    const text = readFileSync(await download.path(), 'utf8');
    const query = name === 'top-customers' ? '?limit=100' : name === 'usage' ? `?from=${await page.inputValue('#usage-from')}&to=${await page.inputValue('#usage-to')}` : '';
    assert.equal(text, await call('GET', `/v1/reports/${name}.csv${query}`), name);
    assert.ok(text.includes('\r\n'), 'CRLF lines');
  }
  // Another range: last month's usage.
  await page.fill('#usage-from', utcDate(lastMonthDay(1)));
  await page.fill('#usage-to', utcDate(lastMonthDay(28)));
  await page.click('#usage button:has-text("Show")');
  await page.waitForSelector(`#usage-from[value="${utcDate(lastMonthDay(1))}"]`);
  await page.screenshot({ path: path.join(SHOTS, 'reports-desktop.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.context().close();
  const phone = await open('/reports.html', { viewport: { width: 390, height: 844 } });
  await signIn(phone);
  await phone.waitForSelector('#revenue svg.chart.bars');
  await phone.screenshot({ path: path.join(SHOTS, 'reports-phone.png'), fullPage: true });
  await phone.context().close();
});

test('cancelling now in the console ends the period now, billed as the engine bills a subscription end', async () => {
  const { plans } = await call('GET', '/v1/plans');
  const pro = plans.filter((p) => p.id === 'api-pro-2026').at(-1);
  const start = utcDate(lastMonthDay(1));
  await call('PUT', '/v1/customers/cancel-now', { body: JSON.stringify({ timezone: 'UTC', subscription: { start }, plan: { id: pro.id, version: pro.version } }) });
  const page = await open('/console.html#customers');
  await signIn(page);
  await page.fill('#customer-search', 'cancel-now');
  await page.click('#customer-list tr[data-customer="cancel-now"]');
  await page.waitForSelector('#cancel-form');
  await page.screenshot({ path: path.join(SHOTS, 'console-cancel-form.png'), fullPage: true });
  assert.equal(await page.locator('.portal-links').textContent().then((t) => t.includes('null')), false, 'no stray "null" text');
  await page.selectOption('#cancel-at', 'now');
  await page.click('#cancel-form button[type="submit"]');
  await page.waitForSelector('#cancelled-from');
  assert.equal(await page.locator('#cancel-form').count(), 0, 'no second cancellation offered');
  const subscription = await call('GET', '/v1/customers/cancel-now/subscription');
  assert.equal(await page.textContent('#cancelled-from'), subscription.cancelled_from);
  assert.match(await page.textContent('#live-usage'), /The subscription ended at/);
  await page.screenshot({ path: path.join(SHOTS, 'console-cancelled.png'), fullPage: true });
  assert.deepEqual(page.problems, []);
  await page.context().close();

  // The period holding today ends at the cancellation and is billed as the engine (the same
  // wasm package, here in Node) bills a usage document whose subscription ends then.
  const today = utcDate(new Date());
  const preview = await call('GET', `/v1/customers/cancel-now/invoice?date=${today}`);
  assert.equal(preview.period.end, subscription.cancelled_from);
  assert.ok(preview.notes.some((n) => n.startsWith(`the subscription ends at ${subscription.cancelled_from}`)), JSON.stringify(preview.notes));
  const usage = { customer: { id: 'cancel-now', timezone: 'UTC' }, subscription: { start, end: subscription.cancelled_from }, period: { containing: today } };
  const quoted = wasm.quote(JSON.stringify(pro.plan), JSON.stringify(usage));
  assert.equal(preview.total, quoted.total);
  const fee = preview.lines.find((l) => l.charge_id === 'platform');
  assert.deepEqual(fee, quoted.lines.find((l) => l.charge_id === 'platform'));
  assert.ok(Number(fee.quantity) < 1, `the platform fee is prorated: ${fee.quantity}`);
  // Nothing from the end on: an event now is refused, next month bills nothing.
  const refused = await call('POST', '/v1/events', { body: JSON.stringify([{ id: 'after-cancel', customer: 'cancel-now', timestamp: Math.floor(Date.now() / 1000) + 5, code: 'api.request' }]) });
  assert.equal(refused.rejected, 1);
  assert.match(refused.results[0].error, /cancelled/);
});
