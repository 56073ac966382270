// Browser end-to-end: Debian's Chromium (headless, through playwright-core) against the
// `ratecard serve` binary. The pricing page's totals equal native `ratecard quote` for the same
// plan and usage, for every example plan; a quote's preview lines and total equal `ratecard
// quote` of the exported plan and usage; an invalid plan shows its errors at their paths; a
// shared URL restores the estimate; no page logs an error or fails a request. Screenshots of
// every page at desktop and phone width go to target/web-screenshots/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { nativeVectors, repoDir, webDir } from '../tools/load.mjs';

const BIN = process.env.RATECARD_BIN || path.join(repoDir, 'target/debug/ratecard');
const SHOTS = process.env.RATECARD_SCREENSHOTS || path.join(repoDir, 'target/web-screenshots');
const CHROMIUM = '/usr/bin/chromium';
const work = mkdtempSync(path.join(os.tmpdir(), 'ratecard-e2e-'));

let server;
let base;
let browser;
const problems = [];

before(async () => {
  assert.ok(existsSync(BIN), `${BIN} is missing: cargo build -p ratecard-host`);
  server = spawn(BIN, ['serve', '--addr', '127.0.0.1:0', '--web', webDir, '--examples', path.join(repoDir, 'examples'), '--data-dir', path.join(work, 'data')], { stdio: ['ignore', 'pipe', 'inherit'] });
  base = await new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /http:\/\/[\d.]+:\d+\//.exec(out);
      if (match) resolve(match[0]);
    });
    server.on('exit', (code) => reject(new Error(`ratecard serve exited with ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`no URL from ratecard serve: ${out}`)), 20000);
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

/// A page that records console errors, page errors and failed requests.
async function open(url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`${url}: console ${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`${url}: ${error.message}`));
  page.on('requestfailed', (request) => problems.push(`${url}: request failed ${request.url()}`));
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`${url}: ${response.status()} ${response.url()}`);
  });
  await page.goto(new URL(url, base).href);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 20000 });
  return page;
}

function nativeQuote(planFile, usage) {
  const usageFile = path.join(work, `usage-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(usageFile, typeof usage === 'string' ? usage : JSON.stringify(usage));
  return JSON.parse(execFileSync(BIN, ['quote', '--plan', planFile, '--usage', usageFile, '--format', 'json'], { encoding: 'utf8' }));
}

const estimate = (page) => page.getAttribute('[data-testid="estimate"]', 'data-amount');
/// Example plan file → plan id.
const examples = Object.fromEntries(
  readdirSync(path.join(repoDir, 'examples/plans'))
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => [file, JSON.parse(readFileSync(path.join(repoDir, 'examples/plans', file), 'utf8')).id]),
);

test('the pricing page totals equal `ratecard quote` for every example plan', async () => {
  for (const [file, id] of Object.entries(examples)) {
    const planFile = path.join(repoDir, 'examples/plans', file);
    const page = await open(`/?plan=${encodeURIComponent(id)}`);
    const usage = await page.textContent('#usage-json');
    assert.equal(await estimate(page), nativeQuote(planFile, usage).total, `${file} at its default usage`);
    // Set the first input to another usage: the page re-prices, and so does the native engine.
    const input = page.locator('#inputs input[type="text"]').first();
    await input.fill('123457');
    await page.waitForFunction((previous) => document.getElementById('usage-json').textContent !== previous, usage);
    const changed = await page.textContent('#usage-json');
    assert.equal(await estimate(page), nativeQuote(planFile, changed).total, `${file} at ${changed}`);
    await page.context().close();
  }
});

test('a shared URL restores the same estimate, and the keyboard moves a slider', async () => {
  const page = await open('/?plan=api-pro-2026');
  await page.fill('#usage-api_calls', '7654321');
  await page.fill('#usage-seats', '12');
  await page.waitForFunction(() => location.search.includes('7654321') && location.search.includes('seats=12'));
  const url = page.url();
  const total = await estimate(page);
  // Tier boundaries from 100 k (the allowance) to 10.1 M: the cost plot's quantity axis is
  // logarithmic, so the first boundary sits a fifth of the way in or more, not squeezed at the
  // left (at 0.5 % of the width on a linear axis up to 20 M), and the last before the end.
  const axis = await page.evaluate(() => {
    const svg = document.querySelector('svg.curve');
    const lines = [...svg.querySelectorAll('.breakpoint')].map((g) => ({ at: g.querySelector('title').textContent, x: Number(g.querySelector('line').getAttribute('x1')) }));
    return { scale: svg.dataset.scale, lines, decades: svg.querySelectorAll('text.decade').length };
  });
  assert.equal(axis.scale, 'log', JSON.stringify(axis));
  const first = axis.lines.find((l) => /100,?000$/.test(l.at.replace(/\s/g, '')));
  assert.ok(first, JSON.stringify(axis));
  assert.ok(first.x > 70 + 554 * 0.2 && axis.lines.at(-1).x < 70 + 554 * 0.97, JSON.stringify(axis));
  assert.ok(axis.decades >= 3, JSON.stringify(axis));
  const again = await open(url);
  assert.equal(await estimate(again), total);
  assert.equal(await again.inputValue('#usage-api_calls'), '7654321');
  assert.equal(await again.inputValue('#usage-seats'), '12');
  // Keyboard: focus the first slider and step it.
  await again.focus('#inputs input[type="range"]');
  await again.keyboard.press('ArrowRight');
  await again.waitForFunction((before) => document.querySelector('[data-testid="estimate"]').dataset.amount !== before, total);
  assert.notEqual(await again.inputValue('#usage-api_calls'), '7654321');
  await page.context().close();
  await again.context().close();
});

test('the quote preview lines and total equal `ratecard quote` of the exported plan and usage', async () => {
  const page = await open('/quote.html');
  const index = await page.$$eval('#plan option', (options) => options.findIndex((o) => o.textContent.startsWith('API Pro')));
  await page.selectOption('#plan', String(index));
  await page.fill('#customer', 'Globex');
  await page.selectOption('#timezone', 'America/New_York');
  await page.fill('#start', '2027-03-15');
  await page.fill('#discount', '12.5');
  await page.fill('#discount-months', '2');
  await page.fill('#usage-api_calls', '4200000');
  await page.waitForFunction(() => document.getElementById('json').textContent.includes('4200000') && document.getElementById('json').textContent.includes('12.5'));
  const save = async (button) => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
    const file = path.join(work, download.suggestedFilename());
    await download.saveAs(file);
    return file;
  };
  const [planFile, usageFile, quoteFile] = [await save('#export-plan'), await save('#export-usage'), await save('#export')];
  const native = nativeQuote(planFile, readFileSync(usageFile, 'utf8'));
  assert.equal(await page.getAttribute('[data-testid="total"]', 'data-amount'), native.total);
  const lines = await page.$$eval('[data-line]', (elements) => elements.map((e) => [e.dataset.line, e.dataset.amount]));
  assert.deepEqual(lines, native.lines.map((line) => [line.charge_id, line.amount]));
  assert.ok(native.discounts.some((d) => d.id === 'sales-discount'), 'the sales discount is in the exported plan');
  assert.equal(native.period.timezone, 'America/New_York');
  await page.screenshot({ path: path.join(SHOTS, 'quote-filled-desktop.png'), fullPage: true });
  await page.emulateMedia({ media: 'print' });
  await page.screenshot({ path: path.join(SHOTS, 'quote-print.png'), fullPage: true });
  await page.context().close();
  // The exported quote imports back to the same preview.
  const fresh = await open('/quote.html');
  await fresh.setInputFiles('#import', quoteFile);
  await fresh.waitForFunction((total) => document.querySelector('[data-testid="total"]')?.dataset.amount === total, native.total);
  assert.equal(await fresh.inputValue('#customer'), 'Globex');
  await fresh.context().close();
});

test('the plan editor shows an invalid plan\'s errors at their paths', async () => {
  const page = await open('/editor.html');
  const plan = JSON.parse(readFileSync(path.join(repoDir, 'examples/plans/saas-api.json'), 'utf8'));
  plan.currency = 'XYZ';
  plan.charges[1].model.tiers[1].up_to = '10';
  await page.fill('#plan-text', JSON.stringify(plan, null, 2));
  await page.waitForSelector('#errors li[data-path="$.currency"]');
  assert.ok(await page.$('#errors li[data-path="$.charges[1].model.tiers[1].up_to"]'), 'the tier bound error at its path');
  await page.click('#errors li[data-path="$.currency"] button');
  const selected = await page.$eval('#plan-text', (area) => area.value.slice(area.selectionStart, area.selectionEnd));
  assert.equal(selected, '"XYZ"');
  // A JSON error: every bad value at its path.
  await page.fill('#plan-text', '{"id": "p", "currency": 7, "interval": "month", "metrics": [], "charges": [{"id": 1}]}');
  await page.waitForSelector('#errors li[data-code="invalid_json"][data-path="$.currency"]');
  await page.screenshot({ path: path.join(SHOTS, 'editor-errors-desktop.png'), fullPage: true });
  // Fixed again: the preview comes back.
  await page.click('.examples button >> nth=0');
  await page.waitForSelector('[data-testid="preview-from"]');
  await page.context().close();
});

test('every golden vector quotes in Chromium byte-identically to the native engine', async () => {
  const { vectors } = nativeVectors();
  const page = await open('/editor.html');
  const mismatches = await page.evaluate(async (cases) => {
    const wasm = await import('./pkg/ratecard_wasm.js');
    await wasm.default();
    const wrong = [];
    for (const vector of cases) {
      let output;
      let error;
      try {
        output = wasm.quoteJson(vector.plan, vector.usage);
      } catch (problem) {
        error = JSON.stringify(problem.report);
      }
      if (output !== vector.output || error !== vector.error) wrong.push(vector.name);
    }
    return wrong;
  }, vectors);
  assert.ok(vectors.length >= 30);
  assert.deepEqual(mismatches, []);
  await page.context().close();
});

test('screenshots of every page at desktop and phone width, with no console errors or failed requests', async () => {
  for (const [name, url] of [['pricing', '/?plan=api-pro-2026'], ['quote', '/quote.html'], ['editor', '/editor.html']]) {
    for (const [kind, viewport] of [['desktop', { width: 1280, height: 900 }], ['phone', { width: 390, height: 844 }]]) {
      const page = await open(url, viewport);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 1, `${name} at ${kind} width scrolls sideways by ${overflow}px`);
      await page.screenshot({ path: path.join(SHOTS, `${name}-${kind}.png`), fullPage: true });
      await page.context().close();
    }
  }
  assert.deepEqual(problems, []);
});
