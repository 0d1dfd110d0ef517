import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";
import { startNatsServer } from "./nats-server.ts";

const root = resolve(import.meta.dirname, "..", "..", "..");

/** The first ```ts block after the "## Quick start" heading of docs/nats.md. */
function quickStart(): string {
  const doc = readFileSync(join(root, "docs", "nats.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Quick start"));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(match?.[1] !== undefined, "docs/nats.md has a quick start program");
  return match[1];
}

describe("docs/nats.md", { timeout: 60_000 }, () => {
  it("the quick start runs against a private server and prints its greeting", async () => {
    await using server = await startNatsServer({ jetstream: false });
    // Under the repository, so that @keel/* and zod resolve as they would for a user.
    const dir = join(root, ".tmp");
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `nats-quick-start-${process.pid}.ts`);
    writeFileSync(file, quickStart());
    try {
      const { code, stdout, stderr } = await new Promise<{
        code: number | null;
        stdout: string;
        stderr: string;
      }>((done) => {
        execFile(
          process.execPath,
          [file],
          { cwd: root, timeout: 30_000, env: { ...process.env, NATS_URL: server.url } },
          (error, out, err) =>
            done({
              code: error === null ? 0 : typeof error.code === "number" ? error.code : null,
              stdout: out,
              stderr: err,
            }),
        );
      });
      assert.equal(code, 0, `the quick start failed:\n${stdout}\n${stderr}`);
      assert.match(stdout, /Hello, Ada, from greeter-1!/);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
