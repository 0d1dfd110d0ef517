/**
 * `keel start` beyond the happy path: a second signal during a drain, and clusters that share one
 * NATS server without seeing each other. Every child is bounded in time and killed in `after`.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  freePort,
  killAll,
  type NatsServer,
  runCli,
  spawnCli,
  startNatsServer,
  until,
} from "./support.ts";

const GREETER = fileURLToPath(new URL("./fixtures/greeter.ts", import.meta.url));

/** Whether the node's /metrics shows a request in flight on its server side. */
async function inFlight(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
      signal: AbortSignal.timeout(1000),
    });
    const text = await res.text();
    return /^keel_server_requests_in_flight\{[^}]*\} [1-9]/m.test(text);
  } catch {
    return false;
  }
}

describe("keel start", { timeout: 60_000 }, () => {
  let nats: NatsServer;

  before(async () => {
    nats = await startNatsServer({ jetstream: false });
  });
  after(async () => {
    killAll();
    await nats?.[Symbol.asyncDispose]();
  });

  it("a second signal during the drain exits at once, non-zero, and says so", async () => {
    const adminPort = await freePort();
    const node = spawnCli(
      [
        "start",
        GREETER,
        "--nats",
        nats.url,
        "--id",
        "drainer",
        "--cluster",
        "drain",
        "--grace-ms",
        "20000",
        "--admin-port",
        String(adminPort),
      ],
      25_000,
    );
    await until(
      () => /ready/.test(node.output().stderr),
      10_000,
      () => node.output().stderr,
    );
    // A call that keeps the drain waiting far longer than the test allows.
    const slow = spawnCli(
      [
        "call",
        "greeter.slow",
        '{"ms":15000}',
        "--nats",
        nats.url,
        "--cluster",
        "drain",
        "--timeout",
        "18000",
      ],
      25_000,
    );
    // The first signal only once the node is working on the call (its in-flight gauge says so).
    await until(
      () => inFlight(adminPort),
      10_000,
      () => "the slow call to reach the node",
    );
    node.child.kill("SIGTERM");
    await until(
      () => /draining/.test(node.output().stderr),
      5000,
      () => node.output().stderr,
    );
    const t0 = performance.now();
    node.child.kill("SIGINT");
    const exit = await node.done;
    const tookMs = performance.now() - t0;
    assert.equal(exit.code, 130, exit.stderr); // 128 + SIGINT
    assert.match(exit.stderr, /second signal: exiting without draining/);
    // The drain alone would have waited ~14 s more for the call.
    assert.ok(tookMs < 5000, `exited ${tookMs.toFixed(0)} ms after the second signal`);
    // The abandoned call fails with a code rather than hanging to its timeout.
    const call = await slow.done;
    assert.equal(call.code, 1, call.stdout + call.stderr);
  });

  it("serves the admin endpoints by default, on the port it logs, and none with --no-admin", async () => {
    const served = spawnCli(["start", GREETER, "--nats", nats.url, "--id", "n-admin"], 30_000);
    const quiet = spawnCli(
      ["start", GREETER, "--nats", nats.url, "--id", "n-quiet", "--no-admin"],
      30_000,
    );
    for (const p of [served, quiet]) {
      await until(
        () => /ready/.test(p.output().stderr),
        10_000,
        () => p.output().stderr,
      );
    }
    // The test support sets KEEL_ADMIN_PORT=0 (any free port) in place of the default 9464.
    const port = Number(/adminPort[=:"\s]+(\d+)/.exec(served.output().stderr)?.[1]);
    assert.ok(port > 0, served.output().stderr);
    const live = await fetch(`http://127.0.0.1:${port}/health/live`);
    assert.equal(live.status, 200);
    assert.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /^keel_/m);
    assert.doesNotMatch(quiet.output().stderr, /adminPort/);
    served.child.kill("SIGTERM");
    quiet.child.kill("SIGTERM");
    assert.equal((await served.done).code, 0);
    assert.equal((await quiet.done).code, 0);
  });

  it("--cluster keeps clusters on one NATS server apart", async () => {
    const alpha = spawnCli(
      ["start", GREETER, "--nats", nats.url, "--id", "n-alpha", "--cluster", "alpha"],
      30_000,
    );
    const beta = spawnCli(
      ["start", GREETER, "--nats", nats.url, "--id", "n-beta", "--cluster", "beta"],
      30_000,
    );
    for (const p of [alpha, beta]) {
      await until(
        () => /ready/.test(p.output().stderr),
        10_000,
        () => p.output().stderr,
      );
    }
    const hello = (cluster: string, timeout = "5000") =>
      runCli(
        [
          "call",
          "greeter.hello",
          '{"name":"x"}',
          "--nats",
          nats.url,
          "--cluster",
          cluster,
          "--timeout",
          timeout,
          "--json",
        ],
        10_000,
      );
    for (const [cluster, expected] of [
      ["alpha", "n-alpha"],
      ["beta", "n-beta"],
      ["alpha", "n-alpha"],
      ["beta", "n-beta"],
    ] as const) {
      const r = await hello(cluster);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        (JSON.parse(r.stdout) as { node: string }).node,
        expected,
        `a call in ${cluster}`,
      );
    }
    // A cluster nobody started has no endpoint, although both nodes share its server.
    const none = await hello("gamma", "700");
    assert.equal(none.code, 1, none.stdout);
    assert.equal(
      (JSON.parse(none.stdout) as { error: { code: string } }).error.code,
      "UNAVAILABLE",
    );
    for (const p of [alpha, beta]) p.child.kill("SIGTERM");
    for (const p of [alpha, beta]) assert.equal((await p.done).code, 0);
  });
});
