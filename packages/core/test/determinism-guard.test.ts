/**
 * Rule 1 of DESIGN.md: code in core and sim never touches ambient time or chance. Only files under
 * a directory named `env/` may bind the Env to Node's clock, timers and random sources.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { describe, it } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const SCANNED = ["packages/core/src", "packages/sim/src"];
const EXEMPT_DIR = "env";

interface Banned {
  readonly label: string;
  readonly pattern: RegExp;
}

// Timer calls are banned only as free calls: `env.timers.setTimeout(` goes through the Env.
const FREE = String.raw`(?<![\w$]|\.\s*)`;
const BANNED: readonly Banned[] = [
  { label: "Date.now(", pattern: /(?<![\w$])Date\s*\.\s*now\s*\(/g },
  { label: "new Date(", pattern: /\bnew\s+Date\b/g },
  { label: "Date()", pattern: /(?<![\w$.]|\bnew\s+)Date\s*\(/g },
  { label: "performance.now(", pattern: /(?<![\w$])performance\s*\.\s*now\s*\(/g },
  { label: "setTimeout(", pattern: new RegExp(`${FREE}setTimeout\\s*\\(`, "g") },
  { label: "setInterval(", pattern: new RegExp(`${FREE}setInterval\\s*\\(`, "g") },
  { label: "setImmediate(", pattern: new RegExp(`${FREE}setImmediate\\s*\\(`, "g") },
  {
    label: "globalThis timer",
    pattern:
      /\b(?:globalThis|global|window|self)\s*\.\s*(?:setTimeout|setInterval|setImmediate)\s*\(/g,
  },
  { label: "Math.random(", pattern: /(?<![\w$])Math\s*\.\s*random\s*\(/g },
  { label: "randomUUID(", pattern: /(?<![\w$])randomUUID\s*\(/g },
  { label: "getRandomValues(", pattern: /(?<![\w$])getRandomValues\s*\(/g },
  { label: "process.hrtime", pattern: /(?<![\w$])process\s*\.\s*hrtime\b/g },
];

/**
 * Blanks comments and the contents of string, template and regex literals (keeping newlines, so
 * line numbers stay right). Code inside `${...}` of a template literal is kept.
 */
function stripNonCode(source: string): string {
  const out = source.split("");
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = " ";
  };
  // Stack of open braces: "code" for a plain `{`, "template" for a `${` inside a template literal.
  const braces: Array<"code" | "template"> = [];
  let lastSignificant = "";
  let i = 0;
  const n = source.length;

  const scanTemplate = (): void => {
    // Called with i just after a backtick or a `}` that closes a `${`.
    const start = i;
    while (i < n) {
      const c = source[i];
      if (c === "\\") {
        i += 2;
        continue;
      }
      if (c === "`") {
        blank(start, i);
        i++;
        lastSignificant = "`";
        return;
      }
      if (c === "$" && source[i + 1] === "{") {
        blank(start, i);
        braces.push("template");
        i += 2;
        lastSignificant = "{";
        return;
      }
      i++;
    }
    blank(start, n);
  };

  while (i < n) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === "/" && next === "/") {
      const end = source.indexOf("\n", i);
      const stop = end === -1 ? n : end;
      blank(i, stop);
      i = stop;
      continue;
    }
    if (c === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? n : end + 2;
      blank(i, stop);
      i = stop;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < n && source[j] !== c && source[j] !== "\n") j += source[j] === "\\" ? 2 : 1;
      blank(i + 1, Math.min(j, n));
      i = j + 1;
      lastSignificant = c;
      continue;
    }
    if (c === "`") {
      i++;
      scanTemplate();
      continue;
    }
    if (c === "/" && (lastSignificant === "" || "(,=:[!&|?{};+-*%<>~^".includes(lastSignificant))) {
      // A regex literal, not a division.
      let j = i + 1;
      let inClass = false;
      while (j < n && source[j] !== "\n") {
        const d = source[j];
        if (d === "\\") {
          j += 2;
          continue;
        }
        if (d === "[") inClass = true;
        else if (d === "]") inClass = false;
        else if (d === "/" && !inClass) break;
        j++;
      }
      blank(i + 1, Math.min(j, n));
      i = j + 1;
      lastSignificant = "/";
      continue;
    }
    if (c === "{") braces.push("code");
    if (c === "}") {
      if (braces.pop() === "template") {
        i++;
        scanTemplate();
        continue;
      }
    }
    if (!/\s/.test(c)) lastSignificant = /[\w$]/.test(c) ? "a" : c;
    i++;
  }
  return out.join("");
}

interface Offence {
  readonly line: number;
  readonly label: string;
  readonly text: string;
}

/** Every banned call in `source`, with its 1-based line. */
function findBanned(source: string): Offence[] {
  const code = stripNonCode(source);
  const lines = source.split("\n");
  const lineStarts: number[] = [0];
  for (let k = 0; k < code.length; k++) if (code[k] === "\n") lineStarts.push(k + 1);
  const lineOf = (index: number): number => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const found: Offence[] = [];
  for (const { label, pattern } of BANNED) {
    for (const m of code.matchAll(pattern)) {
      const line = lineOf(m.index);
      found.push({ line, label, text: lines[line - 1]!.trim() });
    }
  }
  return found.sort((a, b) => a.line - b.line);
}

function listSources(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== EXEMPT_DIR) files.push(...listSources(path));
    } else if (/\.[mc]?tsx?$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      files.push(path);
    }
  }
  return files.sort();
}

function scannedFiles(): string[] {
  return SCANNED.map((d) => join(ROOT, d))
    .filter((d) => existsSync(d))
    .flatMap((d) => listSources(d));
}

describe("determinism guard", () => {
  it("finds no ambient time or chance in core and sim outside env/", () => {
    const offences: string[] = [];
    for (const file of scannedFiles()) {
      for (const o of findBanned(readFileSync(file, "utf8"))) {
        offences.push(`${relative(ROOT, file)}:${o.line}: ${o.label} in \`${o.text}\``);
      }
    }
    assert.deepEqual(
      offences,
      [],
      `ambient time or chance outside env/ (ask the Env instead):\n${offences.join("\n")}`,
    );
  });

  it("scans the runtime sources and skips env/", () => {
    const files = scannedFiles().map((f) => relative(ROOT, f).split(sep).join("/"));
    assert.ok(files.includes("packages/core/src/runtime/node.ts"), "node.ts is scanned");
    assert.ok(files.includes("packages/core/src/wire/codec.ts"), "codec.ts is scanned");
    assert.equal(
      files.filter((f) => f.includes("/env/")).length,
      0,
      "nothing under env/ is scanned",
    );
    // env/ really does use Node's clock: the exemption is what keeps the guard quiet there.
    const real = readFileSync(join(ROOT, "packages/core/src/env/real.ts"), "utf8");
    const labels = new Set(findBanned(real).map((o) => o.label));
    assert.ok(labels.has("performance.now("));
    assert.ok(labels.has("Date.now("));
    assert.ok(labels.has("setTimeout("));
  });

  it("catches each banned form", () => {
    const samples: Array<[string, string]> = [
      ["const t = Date.now();", "Date.now("],
      ["const t = Date . now ();", "Date.now("],
      ["const t = globalThis.Date.now();", "Date.now("],
      ["const d = new Date();", "new Date("],
      ["const d = new Date(0);", "new Date("],
      ["const s = Date();", "Date()"],
      ["const t = performance.now();", "performance.now("],
      ["const t = globalThis.performance.now();", "performance.now("],
      ["setTimeout(() => done(), 10);", "setTimeout("],
      ["const h = setInterval(tick, 5);", "setInterval("],
      ["  setImmediate(run);", "setImmediate("],
      ["await new Promise((r) => setTimeout(r, 1));", "setTimeout("],
      ["globalThis.setTimeout(run, 1);", "globalThis timer"],
      ["const x = Math.random();", "Math.random("],
      ["const id = crypto.randomUUID();", "randomUUID("],
      ["const id = randomUUID();", "randomUUID("],
      ["crypto.getRandomValues(buf);", "getRandomValues("],
      ["const t = process.hrtime.bigint();", "process.hrtime"],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text under test
      ["const msg = `at ${Date.now()} ms`;", "Date.now("],
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text under test
      ["const msg = `a ${`b ${Math.random()}`}`;", "Math.random("],
    ];
    for (const [source, label] of samples) {
      const found = findBanned(source);
      assert.ok(
        found.some((o) => o.label === label && o.line === 1),
        `expected ${label} in ${source}, found ${JSON.stringify(found)}`,
      );
    }
  });

  it("ignores calls through the Env, comments, strings and look-alikes", () => {
    const allowed = [
      "this.env.timers.setTimeout(() => this.fire(), ms);",
      "env.timers.setInterval(tick, 5);",
      "timers.setImmediate(run);",
      "this.#env.timers\n  .setTimeout(fn, 1);",
      "const at = env.clock.now();",
      "const wall = this.env.clock.wallNow();",
      "const r = env.random.next();",
      "const id = env.random.id();",
      "const start = Date.UTC(2026, 0, 1);",
      "const ok = value instanceof Date;",
      "function mySetTimeout() {}",
      "const x = updateDate.now();",
      "const y = myMath.random();",
      "// never call Date.now() here",
      "/* setTimeout(fn, 1) and Math.random() */",
      "/**\n * Unlike Date.now(), this is monotonic.\n */",
      'const msg = "do not call Date.now() or Math.random()";',
      "const msg = 'setTimeout(fn) is banned';",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: source text under test
      "const msg = `setImmediate(x) ${env.clock.now()} new Date()`;",
      "const re = /Date\\.now\\(/g;",
      'const url = "http://example.com"; const t = env.clock.now();',
    ];
    for (const source of allowed) {
      assert.deepEqual(findBanned(source), [], `false positive in ${source}`);
    }
  });

  it("reports the right line after comments and strings spanning lines", () => {
    const source = [
      "/*",
      " * Date.now() in a comment",
      " */",
      "const s = `line",
      "Math.random() in a template",
      "`;",
      "const t = performance.now();",
      "const a = 1 / 2; const b = Math.random();",
    ].join("\n");
    assert.deepEqual(
      findBanned(source).map((o) => [o.line, o.label]),
      [
        [7, "performance.now("],
        [8, "Math.random("],
      ],
    );
  });
});
