import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { startNatsServer } from "./nats-server.ts";

const FIXTURE = join(import.meta.dirname, "fixtures", "echo-node.ts");

type Line = { readonly event: string } & Record<string, unknown>;

/** A Keel node in a child process, read as JSON lines. */
interface NodeProcess {
  readonly id: string;
  readonly child: ChildProcess;
  readonly lines: Line[];
  next(match: (line: Line) => boolean, timeoutMs: number, what: string): Promise<Line>;
  stderr(): string;
}

function spawnNode(role: "replica" | "caller", id: string, url: string): NodeProcess {
  const child = spawn(process.execPath, [FIXTURE, role, id, url], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines: Line[] = [];
  const waiters = new Set<() => void>();
  let err = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    err += chunk;
  });
  createInterface({ input: child.stdout! }).on("line", (text) => {
    try {
      lines.push(JSON.parse(text) as Line);
    } catch {
      err += `(stdout) ${text}\n`;
    }
    for (const wake of [...waiters]) wake();
  });
  child.on("exit", () => {
    for (const wake of [...waiters]) wake();
  });
  return {
    id,
    child,
    lines,
    stderr: () => err,
    next(match, timeoutMs, what) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = lines.find(match);
          if (found !== undefined) {
            done();
            resolve(found);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(
              new Error(
                `${id} exited (${child.exitCode ?? child.signalCode}) before ${what}:\n${err}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${id}: no ${what} within ${timeoutMs} ms:\n${err}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

interface WireCall {
  readonly start: number;
  readonly end: number;
  readonly node?: string;
  readonly code?: string;
}

describe("Keel nodes in separate processes over NATS", { timeout: 90_000 }, () => {
  it("a replica killed with SIGKILL under load: no idempotent call fails, failover within 1 s", async () => {
    await using server = await startNatsServer({ jetstream: false });
    const procs: NodeProcess[] = [];
    try {
      const r1 = spawnNode("replica", "r1", server.url);
      const r2 = spawnNode("replica", "r2", server.url);
      procs.push(r1, r2);
      await Promise.all([r1, r2].map((p) => p.next((l) => l.event === "ready", 20_000, "ready")));
      const caller = spawnNode("caller", "caller", server.url);
      procs.push(caller);
      await caller.next((l) => l.event === "ready", 20_000, "ready");

      caller.child.stdin?.write(
        `${JSON.stringify({ cmd: "load", calls: 300, concurrency: 10, delayMs: 20, maxMs: 30_000 })}\n`,
      );
      await caller.next(
        (l) => l.event === "progress" && (l["done"] as number) >= 100,
        20_000,
        "100 calls",
      );
      const killedAt = Date.now();
      r1.child.kill("SIGKILL");
      const result = await caller.next((l) => l.event === "result", 30_000, "the load's result");
      const down = await caller.next(
        (l) => l.event === "down" && l["node"] === "r1",
        5000,
        "r1 declared down",
      );

      const calls = result["calls"] as WireCall[];
      const failed = calls.filter((c) => c.code !== undefined);
      const caught = calls.filter((c) => c.start <= killedAt && c.end > killedAt);
      const failoverMs = Math.max(0, ...caught.map((c) => c.end - killedAt));
      const detectionMs = (down["at"] as number) - killedAt;
      const afterDetection = calls.filter((c) => c.start > (down["at"] as number));
      console.log(
        `multi-process failover: ${calls.length} calls at concurrency 10, ${failed.length} failed, ${result["failovers"]} failovers; r1 declared ${down["reason"]} ${detectionMs} ms after SIGKILL; the calls caught by the kill (${caught.length}) all finished within ${failoverMs.toFixed(0)} ms of it`,
      );
      assert.equal(calls.length, 300);
      assert.deepEqual(failed, [], "no idempotent call failed");
      assert.equal(down["reason"], "failed");
      assert.ok(detectionMs < 1000, `r1 declared down ${detectionMs} ms after the kill`);
      assert.ok(failoverMs < 1000, `failover took ${failoverMs} ms`);
      assert.ok((result["failovers"] as number) >= 1, "the calls caught at r1 failed over");
      assert.ok(afterDetection.every((c) => c.node === "r2"));
    } finally {
      for (const p of procs) p.child.stdin?.end(); // callers and replicas stop when stdin closes
      for (const p of procs) {
        if (!(await exited(p.child, 5000))) p.child.kill("SIGKILL");
      }
    }
  });
});
