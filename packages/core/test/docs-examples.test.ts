import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

// Every program in docs/examples must run and exit 0: it throws when what it shows does not hold.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const dir = join(root, "docs", "examples");
const examples = readdirSync(dir)
  .filter((name) => name.endsWith(".ts"))
  .sort();

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(file: string): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [file],
      { cwd: root, timeout: 30_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null;
        done({ code, signal: error?.signal ?? null, stdout, stderr });
      },
    );
  });
}

describe("docs/examples", () => {
  it("has examples", () => {
    assert.ok(examples.length > 0, `no .ts files in ${dir}`);
  });
  for (const name of examples) {
    it(`${name} runs and exits 0`, async () => {
      const result = await run(join(dir, name));
      assert.equal(
        result.code,
        0,
        `npx node docs/examples/${name} exited with ${result.code ?? result.signal}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`,
      );
    });
  }
});
