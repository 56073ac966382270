// The TypeScript declarations work: a typical use type-checks under --strict, and using an amount
// as a number does not (the declarations are typed, not `any`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { webDir } from '../tools/load.mjs';

const tsc = (file) =>
  spawnSync(path.join(webDir, 'node_modules/.bin/tsc'), ['--strict', '--noEmit', '--target', 'es2022', '--lib', 'esnext,dom', '--module', 'es2022', '--moduleResolution', 'bundler', '--skipLibCheck', 'false', path.join(webDir, 'test', file)], { encoding: 'utf8' });

test('the declarations type-check a typical use', () => {
  const result = tsc('typecheck.ts');
  assert.equal(result.status, 0, result.stdout + result.stderr);
});

test('an amount used as a number is a type error', () => {
  const result = tsc('typecheck-wrong.ts');
  assert.notEqual(result.status, 0);
  assert.match(result.stdout, /Type 'string' is not assignable to type 'number'/);
});
