// Time from navigation to the pricing page's first estimate in headless Chromium (Debian's,
// through playwright-core), against `ratecard serve`; and the binding's quote/total latency
// measured inside the page against the same decimal.js implementation as web/bench/quote.mjs
// (decimal.js is added to the page by the bench; the server does not serve node_modules),
// interleaved sample by sample, same page.
//
//   node web/bench/page.mjs [RATECARD_BIN]      (cargo xtask bench-web runs it)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { repoDir, webDir } from '../tools/load.mjs';
import { DECIMAL_CONFIG, benchPlan, benchQuantities, benchUsage, decimalJsQuote, decimalJsTotal, graduated } from './quote.mjs';

// The decimal.js implementation, as source for the page (the UMD build defines `Decimal`).
const decimalJsSource = `Decimal.set(${JSON.stringify(DECIMAL_CONFIG)});\n${graduated}\n${decimalJsQuote}\n${decimalJsTotal}\nwindow.decimalJs = { quote: decimalJsQuote, total: decimalJsTotal };`;

const bin = process.argv[2] || process.env.RATECARD_BIN || path.join(repoDir, 'target/release/ratecard');
const server = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--web', webDir, '--examples', path.join(repoDir, 'examples')], { stdio: ['ignore', 'pipe', 'inherit'] });
const base = await new Promise((resolve) => {
  let out = '';
  server.stdout.on('data', (chunk) => {
    out += chunk;
    const match = /http:\/\/[\d.]+:\d+\//.exec(out);
    if (match) resolve(match[0]);
  });
});
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
try {
  const loads = [];
  for (let i = 0; i < 7; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const start = Date.now();
    await page.goto(`${base}?plan=api-pro-2026`);
    await page.waitForSelector('body[data-ready="true"]');
    loads.push({ wall: Date.now() - start, script: Number(await page.evaluate(() => document.body.dataset.firstEstimateMs)), nav: await page.evaluate(() => Math.round(performance.now())) });
    await context.close();
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(`Chromium ${browser.version()}: pricing page, navigation to first estimate ${median(loads.map((l) => l.nav))} ms (median of 7; wasm + plans loaded and first quote: ${median(loads.map((l) => l.script))} ms of it)`);
  const page = await browser.newPage();
  await page.goto(`${base}?plan=api-pro-2026`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.addScriptTag({ content: readFileSync(path.join(webDir, 'node_modules/decimal.js/decimal.js'), 'utf8') });
  await page.addScriptTag({ content: decimalJsSource });
  const inPage = await page.evaluate(async ({ plan, usage, quantities }) => {
    const wasm = await import('./pkg/ratecard_wasm.js');
    await wasm.default();
    const prepared = new wasm.PreparedPlan(JSON.stringify(plan));
    if (prepared.quote(usage).total !== window.decimalJs.quote(plan, usage).total || prepared.total(quantities) !== window.decimalJs.total(plan, quantities)) {
      throw new Error('the implementations disagree in the page');
    }
    // Median µs per call; each sample runs long enough (≥ 5 ms) for the page's coarse timer,
    // and the cases alternate sample by sample.
    const timeAll = (cases) => {
      // Warm up each case for ~300 ms first, so the page's wasm and JS are tiered up.
      for (const run of Object.values(cases)) {
        const until = performance.now() + 300;
        while (performance.now() < until) run();
      }
      const calls = Object.fromEntries(Object.entries(cases).map(([name, run]) => {
        let n = 1;
        for (;;) {
          const start = performance.now();
          for (let i = 0; i < n; i++) run();
          if (performance.now() - start >= 5) return [name, n];
          n *= 2;
        }
      }));
      const samples = Object.fromEntries(Object.keys(cases).map((name) => [name, []]));
      for (let s = 0; s < 15; s++) {
        for (const [name, run] of Object.entries(cases)) {
          const start = performance.now();
          for (let i = 0; i < calls[name]; i++) run();
          samples[name].push(((performance.now() - start) * 1000) / calls[name]);
        }
      }
      return Object.fromEntries(Object.entries(samples).map(([name, v]) => [name, v.sort((a, b) => a - b)[7]]));
    };
    const curve = () => {
      const start = performance.now();
      prepared.costCurve('m0', '0', '50000000', 200, {});
      return performance.now() - start;
    };
    const first = curve();
    const usageText = JSON.stringify(usage);
    const result = timeAll({
      quote: () => prepared.quote(usage),
      quoteJson: () => prepared.quoteJson(usageText),
      total: () => prepared.total(quantities),
      jsQuote: () => window.decimalJs.quote(plan, usage),
      jsTotal: () => window.decimalJs.total(plan, quantities),
    });
    return { ...result, first, curve: [curve(), curve(), curve()].sort((a, b) => a - b)[1] };
  }, { plan: benchPlan(), usage: benchUsage(), quantities: benchQuantities() });
  const us = (v) => `${v.toFixed(1)} µs`;
  console.log(`  in the page: PreparedPlan.quote ${us(inPage.quote)} (quoteJson ${us(inPage.quoteJson)}), total ${us(inPage.total)}; decimal.js quote ${us(inPage.jsQuote)}, total ${us(inPage.jsTotal)}`);
  console.log(`  ratio decimal.js/wasm in Chromium: quote ${(inPage.jsQuote / inPage.quote).toFixed(2)}× (target ≥ 5×), total ${(inPage.jsTotal / inPage.total).toFixed(2)}× (target ≥ 20×)`);
  console.log(`  a 200-sample cost curve ${inPage.curve.toFixed(1)} ms warm, ${inPage.first.toFixed(1)} ms as the page's first call`);
} finally {
  await browser.close();
  server.kill();
}
