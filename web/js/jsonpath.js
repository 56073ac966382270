// Where a JSON path ($.charges[1].model.tiers[0].up_to) is in a JSON text: the start and end
// offsets of its value, so the editor can select what an error is about. A small scanner of the
// JSON grammar; on text it cannot read it returns the deepest place it reached.
export function locate(text, path) {
  const want = [];
  for (const match of path.replace(/^\$/, '').matchAll(/\.([^.[\]]+)|\[(\d+)\]/g)) {
    want.push(match[1] !== undefined ? match[1] : Number(match[2]));
  }
  let at = 0;
  const space = () => {
    while (at < text.length && /\s/.test(text[at])) at++;
  };
  const string = () => {
    const start = at++;
    while (at < text.length && text[at] !== '"') at += text[at] === '\\' ? 2 : 1;
    at++;
    try {
      return JSON.parse(text.slice(start, at));
    } catch {
      return null;
    }
  };
  // Skips one value; returns false on text it cannot read.
  const skip = () => {
    space();
    const c = text[at];
    if (c === '"') return string() !== null || true;
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      at++;
      space();
      if (text[at] === close) return ++at;
      for (;;) {
        space();
        if (c === '{') {
          string();
          space();
          at++; // :
        }
        if (!skip()) return false;
        space();
        if (text[at] === ',') at++;
        else if (text[at] === close) return ++at;
        else return false;
      }
    }
    const match = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null)/.exec(text.slice(at));
    if (!match) return false;
    at += match[0].length;
    return true;
  };
  let found = { start: 0, end: text.length };
  for (const step of want) {
    space();
    const c = text[at];
    let ok = false;
    if (c === '{' && typeof step === 'string') {
      at++;
      for (;;) {
        space();
        if (text[at] !== '"') break;
        const key = string();
        space();
        at++;
        space();
        if (key === step) {
          ok = true;
          break;
        }
        if (!skip()) break;
        space();
        if (text[at] === ',') at++;
        else break;
      }
    } else if (c === '[' && typeof step === 'number') {
      at++;
      for (let index = 0; ; index++) {
        space();
        if (index === step) {
          ok = text[at] !== ']';
          break;
        }
        if (!skip()) break;
        space();
        if (text[at] === ',') at++;
        else break;
      }
    }
    if (!ok) return found;
    const start = at;
    skip();
    found = { start, end: at };
    at = start;
  }
  return found;
}
