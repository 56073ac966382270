// Every golden vector of tests/vectors, quoted inside wasm in Node: the invoice JSON must be the
// native engine's byte for byte, and an error must carry the native message. Then every vector
// with a customer timezone again in each zone the browser build keeps (its timezone data is
// filtered at build time): each must still give the native (full database) result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadWasm, nativeVectors, repoDir } from '../tools/load.mjs';

const wasm = await loadWasm();
const native = nativeVectors();

function check(vector) {
  let output;
  try {
    output = wasm.quoteJson(vector.plan, vector.usage);
  } catch (error) {
    assert.ok(error instanceof Error, 'engine errors are Error objects');
    assert.ok(vector.error, `wasm failed (${error.message}) where native gave ${vector.output}`);
    // The engine's report, byte for byte, and its parts on the Error.
    assert.equal(JSON.stringify(error.report), vector.error);
    const report = JSON.parse(vector.error);
    assert.equal(error.message, report.message);
    assert.equal(error.code, report.code);
    assert.equal(error.path, report.path ?? null);
    return;
  }
  assert.equal(vector.error, undefined, 'native failed where wasm quoted');
  assert.equal(output, vector.output);
  // The prepared plan quotes the same bytes.
  const plan = new wasm.PreparedPlan(vector.plan);
  try {
    assert.equal(plan.quoteJson(vector.usage), vector.output);
  } finally {
    plan.free();
  }
}

test('there are golden vectors and timezone cases', () => {
  assert.ok(native.vectors.length >= 30, `only ${native.vectors.length} vectors`);
  assert.ok(native.timezone_vectors.length >= 3, 'vectors with a customer timezone');
});

for (const vector of native.vectors) {
  test(`vector ${vector.name}: byte-identical to native`, () => check(vector));
}

const listed = readFileSync(path.join(repoDir, 'crates/wasm/timezones.txt'), 'utf8')
  .split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

test('the browser build keeps every listed timezone (and links to them), no more', () => {
  const kept = new Set(wasm.timezones());
  for (const zone of listed) assert.ok(kept.has(zone), `${zone} is listed but not kept`);
  assert.ok(kept.size < Object.keys(native.timezone_outputs).length, 'the build filters timezones');
});

test('every timezone the build keeps quotes like the native engine', () => {
  for (const zone of wasm.timezones()) {
    const outputs = native.timezone_outputs[zone];
    assert.ok(outputs, `${zone} is not a native zone`);
    for (const vector of native.timezone_vectors) {
      const usage = JSON.parse(vector.usage);
      usage.customer.timezone = zone;
      check({ name: `${vector.name} in ${zone}`, plan: vector.plan, usage: JSON.stringify(usage), ...outputs[vector.name] });
    }
  }
});

test('a zone the build left out is an error at its path, never a wrong period', () => {
  const left = Object.keys(native.timezone_outputs).find((zone) => !wasm.timezones().includes(zone));
  const vector = native.timezone_vectors[0];
  const usage = JSON.parse(vector.usage);
  usage.customer.timezone = left;
  assert.throws(() => wasm.quoteJson(vector.plan, JSON.stringify(usage)), (error) => {
    assert.equal(error.path, '$.customer.timezone');
    assert.match(error.message, /unknown timezone/);
    return true;
  });
});
