// Loads the wasm package in Node (the `--target web` output, initialized from its bytes) and the
// native engine's vector outputs. The package is web/pkg unless RATECARD_WASM_PKG names another
// build (the xtask tests the fresh build in target/, then checks web/pkg is byte-identical to it).
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

export const webDir = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const repoDir = path.dirname(webDir);
export const pkgDir = process.env.RATECARD_WASM_PKG || path.join(webDir, 'pkg');

export async function loadWasm() {
  const binding = await import(pathToFileURL(path.join(pkgDir, 'ratecard_wasm.js')).href);
  binding.initSync({ module: readFileSync(path.join(pkgDir, 'ratecard_wasm_bg.wasm')) });
  return binding;
}

/// Every golden vector with the native engine's output (crates/wasm/examples/native_vectors.rs).
export function nativeVectors() {
  const file = process.env.RATECARD_NATIVE_VECTORS;
  const text = file
    ? readFileSync(file, 'utf8')
    : execFileSync('cargo', ['run', '-q', '-p', 'ratecard-wasm', '--example', 'native_vectors'], {
        cwd: repoDir, encoding: 'utf8', maxBuffer: 64 << 20,
      });
  return JSON.parse(text);
}
