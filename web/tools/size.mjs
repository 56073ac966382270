// The size of the browser package's .wasm and what takes it.
//
//   node web/tools/size.mjs OPTIMIZED.wasm [NAMED.wasm]
//
// Prints the optimized file's raw and gzipped size per section and, from NAMED (cargo's output,
// which still has its name section), the code bytes per crate (the top 12). Used by
// `cargo xtask web-build` and by web/test/size.test.mjs.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import path from 'node:path';

export const BUDGET_GZ = 150 * 1024;

function leb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, at];
  }
}

const SECTIONS = ['custom', 'type', 'import', 'function', 'table', 'memory', 'global', 'export', 'start', 'element', 'code', 'data', 'datacount'];

export function sections(bytes) {
  const out = [];
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at++];
    let size;
    [size, at] = leb(bytes, at);
    let name = SECTIONS[id] ?? `section ${id}`;
    if (id === 0) {
      const [length, start] = leb(bytes, at);
      name = `custom:${new TextDecoder().decode(bytes.subarray(start, start + length))}`;
    }
    out.push({ id, name, start: at, size, gz: gzipSync(bytes.subarray(at, at + size), { level: 9 }).length });
    at += size;
  }
  return out;
}

/// Code bytes per crate, from the name section (v0 and legacy mangled names, roughly).
export function codeByCrate(bytes) {
  const all = sections(bytes);
  let imports = 0;
  const importSection = all.find((s) => s.id === 2);
  if (importSection) {
    let at = importSection.start;
    let count;
    [count, at] = leb(bytes, at);
    for (let i = 0; i < count; i++) {
      for (let k = 0; k < 2; k++) {
        let length;
        [length, at] = leb(bytes, at);
        at += length;
      }
      const kind = bytes[at++];
      if (kind === 0) {
        [, at] = leb(bytes, at);
        imports++;
      } else if (kind === 1) {
        at++;
        let flags;
        [flags, at] = leb(bytes, at);
        [, at] = leb(bytes, at);
        if (flags & 1) [, at] = leb(bytes, at);
      } else if (kind === 2) {
        let flags;
        [flags, at] = leb(bytes, at);
        [, at] = leb(bytes, at);
        if (flags & 1) [, at] = leb(bytes, at);
      } else if (kind === 3) {
        at += 2;
      }
    }
  }
  const sizes = [];
  const code = all.find((s) => s.id === 10);
  if (code) {
    let at = code.start;
    let count;
    [count, at] = leb(bytes, at);
    for (let i = 0; i < count; i++) {
      let size;
      [size, at] = leb(bytes, at);
      sizes.push(size);
      at += size;
    }
  }
  const names = new Map();
  const nameSection = all.find((s) => s.name === 'custom:name');
  if (nameSection) {
    let at = nameSection.start;
    let length;
    [length, at] = leb(bytes, at);
    at += length;
    const end = nameSection.start + nameSection.size;
    while (at < end) {
      const sub = bytes[at++];
      let size;
      [size, at] = leb(bytes, at);
      if (sub === 1) {
        let p = at;
        let count;
        [count, p] = leb(bytes, p);
        for (let i = 0; i < count; i++) {
          let index;
          let nameLength;
          [index, p] = leb(bytes, p);
          [nameLength, p] = leb(bytes, p);
          names.set(index, new TextDecoder().decode(bytes.subarray(p, p + nameLength)));
          p += nameLength;
        }
      }
      at += size;
    }
  }
  const byCrate = new Map();
  sizes.forEach((size, i) => {
    const name = names.get(i + imports) ?? '?';
    byCrate.set(crateOf(name), (byCrate.get(crateOf(name)) ?? 0) + size);
  });
  return [...byCrate].sort((a, b) => b[1] - a[1]);
}

/// The crate a (mangled) function name belongs to: its first path segment, or the Self type's
/// for `<T as Trait>::f`.
export function crateOf(name) {
  let text = name;
  const legacy = /^_ZN(\d+)/.exec(text);
  if (legacy) {
    const start = legacy[0].length;
    text = text.slice(start, start + Number(legacy[1]));
    text = text.replace(/^_/, '').replace(/\$LT\$/g, '<').replace(/\$RF\$/g, '&').replace(/\$u20\$/g, ' ')
      .replace(/\$u5b\$/g, '[').replace(/\$BP\$/g, '*').replace(/\$C\$/g, ',').replace(/\.\./g, '::');
  }
  const plain = /^[<&*\s\[(]*(?:impl\s+)?(?:dyn\s+)?(?:mut\s+)?(?:const\s+)?([A-Za-z_][A-Za-z0-9_]*)/.exec(text);
  return (plain ? plain[1] : '?').replace(/\[.*$/, '');
}

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
  const [optimized, named] = process.argv.slice(2);
  const bytes = readFileSync(optimized);
  const gz = gzipSync(bytes, { level: 9 }).length;
  console.log(`ratecard_wasm_bg.wasm: ${kb(bytes.length)} raw, ${kb(gz)} gzipped (budget ${kb(BUDGET_GZ)} gzipped)`);
  for (const section of sections(bytes).filter((s) => s.size > 1024)) {
    console.log(`  ${section.name.padEnd(12)} ${kb(section.size).padStart(10)} raw ${kb(section.gz).padStart(10)} gz`);
  }
  if (named) {
    const crates = codeByCrate(readFileSync(named));
    const total = crates.reduce((sum, [, size]) => sum + size, 0);
    console.log(`code by crate before wasm-opt (${kb(total)}):`);
    for (const [crate, size] of crates.slice(0, 12)) {
      console.log(`  ${crate.padEnd(22)} ${kb(size).padStart(10)} ${((100 * size) / total).toFixed(1).padStart(5)} %`);
    }
  }
}
