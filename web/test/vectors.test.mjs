// Every golden vector of tests/vectors, quoted inside wasm in Node: the invoice JSON must be the
// native engine's byte for byte, and an error must carry the native message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadWasm, nativeVectors } from './load.mjs';

const wasm = await loadWasm();
const vectors = nativeVectors();

test('there are golden vectors', () => {
  assert.ok(vectors.length >= 30, `only ${vectors.length} vectors`);
});

for (const vector of vectors) {
  test(`vector ${vector.name}: byte-identical to native`, () => {
    let output;
    let prepared;
    try {
      output = wasm.quoteJson(vector.plan, vector.usage);
    } catch (error) {
      assert.ok(error instanceof Error, 'engine errors are Error objects');
      assert.equal(vector.error, error.message, `wasm failed where native gave ${vector.output}`);
      assert.ok('path' in error, 'errors carry a path property');
      return;
    }
    assert.equal(vector.error, undefined, 'native failed where wasm quoted');
    assert.equal(output, vector.output);
    // The prepared plan quotes the same bytes.
    const plan = new wasm.PreparedPlan(vector.plan);
    try {
      prepared = plan.quoteJson(vector.usage);
    } finally {
      plan.free();
    }
    assert.equal(prepared, vector.output);
  });
}
