// Time from navigation to the pricing page's first estimate in headless Chromium (Debian's,
// through playwright-core), against `ratecard serve`; and the binding's quote/total latency
// measured inside the page (the same plan as web/bench/quote.mjs, no decimal.js there: the
// server does not serve node_modules).
//
//   node web/bench/page.mjs [RATECARD_BIN]      (cargo xtask bench-web runs it)
import { spawn } from 'node:child_process';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { repoDir, webDir } from '../tools/load.mjs';
import { benchPlan, benchQuantities, benchUsage } from './quote.mjs';

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
  const inPage = await page.evaluate(async ({ plan, usage, quantities }) => {
    const wasm = await import('./pkg/ratecard_wasm.js');
    await wasm.default();
    const prepared = new wasm.PreparedPlan(JSON.stringify(plan));
    const time = (run) => {
      const samples = [];
      for (let i = 0; i < 20; i++) run();
      for (let s = 0; s < 21; s++) {
        const start = performance.now();
        for (let i = 0; i < 20; i++) run();
        samples.push(((performance.now() - start) * 1000) / 20);
      }
      return samples.sort((a, b) => a - b)[10];
    };
    const curve = () => {
      const start = performance.now();
      prepared.costCurve('m0', '0', '50000000', 200, {});
      return performance.now() - start;
    };
    const first = curve();
    const result = { quote: time(() => prepared.quote(usage)), total: time(() => prepared.total(quantities)) };
    return { ...result, first, curve: [curve(), curve(), curve()].sort((a, b) => a - b)[1] };
  }, { plan: benchPlan(), usage: benchUsage(), quantities: benchQuantities() });
  console.log(`  in the page: PreparedPlan.quote ${inPage.quote.toFixed(1)} µs, total ${inPage.total.toFixed(1)} µs, a 200-sample cost curve ${inPage.curve.toFixed(1)} ms warm, ${inPage.first.toFixed(1)} ms as the page's first call (timer resolution in the page is coarse)`);
} finally {
  await browser.close();
  server.kill();
}
