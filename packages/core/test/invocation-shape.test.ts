import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";

// A child process with V8's natives syntax: it makes a few calls (V8 still sizing the context
// class), collects garbage with no call in flight, then inspects the next call's context.
const index = new URL("../src/index.ts", import.meta.url).href;
const script = (calls: number) => `
const { createInProcessNetwork, createNode, createRealEnv, defineService, silentLogger } = await import(${JSON.stringify(index)});
const pass = { "~standard": { version: 1, vendor: "test", validate: (v) => ({ value: v }) } };
let last;
const svc = defineService("svc").action("echo", {
  input: pass,
  output: pass,
  handler: (x, ctx) => { last = ctx; return x; },
});
const env = createRealEnv();
const node = createNode({ id: "a", env, transport: createInProcessNetwork({ env }).transport("a"), services: [svc], logger: silentLogger });
await node.start();
for (let i = 0; i < ${calls}; i++) await node.call(svc, "echo", i);
last = undefined;
globalThis.gc();
await node.call(svc, "echo", 1);
const fast = %HasFastProperties(last);
%DebugPrint(last);
console.log(JSON.stringify({ fast }));
await node.stop();
`;

function run(calls: number): Promise<string> {
  return new Promise((done, fail) => {
    execFile(
      process.execPath,
      ["--expose-gc", "--allow-natives-syntax", "--input-type=module", "--eval", script(calls)],
      { timeout: 30_000, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => (error === null ? done(stdout) : fail(new Error(stderr))),
    );
  });
}

describe("handler context shape", () => {
  it("keeps its fields in-object after a full GC early in a node's life", async () => {
    // V8 sizes a class over its first few constructions: a GC after 6 of them caught it (with 0
    // in-object fields for ever after, and dictionary mode, ~15x slower calls); try around that.
    const calls = [2, 4, 5, 6, 7, 8];
    const outs = await Promise.all(calls.map(run));
    for (const [i, out] of outs.entries()) {
      const result = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { fast?: boolean };
      assert.equal(result.fast, true, `dictionary mode after ${calls[i]} calls`);
      const inObject = /inobject properties: (\d+)/.exec(out);
      assert.ok(inObject !== null, `no map in:\n${out}`);
      assert.ok(
        Number(inObject[1]) >= 30,
        `${inObject[1]} in-object fields after ${calls[i]} calls`,
      );
    }
  });
});
