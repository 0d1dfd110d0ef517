/**
 * The `keel` command end to end: a node started with `keel start` on a private nats-server, called
 * with `keel call`, drained with SIGTERM. Every child process is bounded in time and killed in `after`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
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
const EMPTY = fileURLToPath(new URL("./fixtures/empty.ts", import.meta.url));

/** GET a health path: the status, or 0 when nothing answers. */
async function health(port: number, path: string): Promise<number> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      signal: AbortSignal.timeout(1000),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

describe("keel", { timeout: 60_000 }, () => {
  let nats: NatsServer;
  let adminPort: number;
  let node: ReturnType<typeof spawnCli>;

  before(async () => {
    nats = await startNatsServer({ jetstream: false });
    adminPort = await freePort();
    node = spawnCli(
      ["start", GREETER, "--nats", nats.url, "--id", "n1", "--admin-port", String(adminPort)],
      45_000,
    );
    await until(
      async () => (await health(adminPort, "/health/ready")) === 200,
      15_000,
      () => `node ready\n${node.output().stderr}`,
    );
  });

  after(async () => {
    killAll();
    await nats?.[Symbol.asyncDispose]();
  });

  it("prints help, command help and the version, exit 0", async () => {
    const help = await runCli(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /start \[options\] <module>/);
    assert.match(help.stdout, /call \[options\] <target> \[input\]/);
    const startHelp = await runCli(["start", "--help"]);
    assert.equal(startHelp.code, 0);
    assert.match(startHelp.stdout, /--admin-port <port>.*\n?.*KEEL_ADMIN_PORT/s);
    const version = await runCli(["--version"]);
    assert.equal(version.code, 0);
    assert.equal(version.stdout.trim(), "0.1.0");
  });

  it("serves /health/live", async () => {
    assert.equal(await health(adminPort, "/health/live"), 200);
  });

  it("calls an action and prints one JSON line with --json", async () => {
    const r = await runCli([
      "call",
      "greeter.hello",
      '{"name":"Ada"}',
      "--nats",
      nats.url,
      "--json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { greeting: "hello, Ada", node: "n1" });
    assert.equal(r.stdout.trim().split("\n").length, 1);
  });

  it("prints pretty JSON without --json", async () => {
    const r = await runCli(["call", "greeter.hello", '{"name":"Bo"}', "--nats", nats.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${JSON.stringify({ greeting: "hello, Bo", node: "n1" }, null, 2)}\n`);
  });

  it("a schema violation exits 1 with INVALID_ARGUMENT", async () => {
    const json = await runCli([
      "call",
      "greeter.hello",
      '{"name":""}',
      "--nats",
      nats.url,
      "--json",
    ]);
    assert.equal(json.code, 1, json.stderr);
    const { error } = JSON.parse(json.stdout) as { error: { code: string; message: string } };
    assert.equal(error.code, "INVALID_ARGUMENT");
    assert.equal(typeof error.message, "string");
    const text = await runCli(["call", "greeter.hello", "{}", "--nats", nats.url]);
    assert.equal(text.code, 1);
    assert.match(text.stderr, /^INVALID_ARGUMENT: /);
  });

  it("exits 1 when no endpoint appears within the timeout", async () => {
    const r = await runCli(
      ["call", "nobody.home", "{}", "--nats", nats.url, "--timeout", "300", "--json"],
      10_000,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.equal(typeof (JSON.parse(r.stdout) as { error: { code: string } }).error.code, "string");
  });

  it("serves /metrics: the requests it handled, in a format promtool accepts", async () => {
    const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const text = await res.text();
    const served = (outcome: string) =>
      text
        .split("\n")
        .find((l) =>
          l.startsWith(
            `keel_server_requests_total{node="n1",service="greeter@1",action="hello",outcome="${outcome}"} `,
          ),
        );
    // The tests above made two good calls and two that failed the input schema.
    assert.match(served("ok") ?? "", / 2$/);
    assert.match(served("INVALID_ARGUMENT") ?? "", / 2$/);
    assert.match(text, /^keel_node_state\{node="n1",state="ready"\} 1$/m);
    assert.match(text, /^nodejs_eventloop_lag_p99_seconds /m); // prom-client default metrics
    const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.equal(`${check.stdout}${check.stderr}`, "");
    assert.equal(check.status, 0);
  });

  it("bad usage exits 2 with a message", async () => {
    const cases: (readonly string[])[] = [
      ["call", "greeter", "{}"],
      ["call", "greeter.hello", "{not json"],
      ["call", "greeter.hello", "{}", "--timeout", "soon"],
      ["call", "greeter.hello", "{}", "--codec", "xml"],
      ["call"],
      ["start"],
      ["start", GREETER, "--admin-port", "99999"],
      ["start", EMPTY, "--nats", nats.url],
      ["start", "does-not-exist.ts"],
      ["frobnicate"],
      [],
    ];
    for (const args of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `keel ${args.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.notEqual(r.stderr.trim(), "", `keel ${args.join(" ")} says why`);
    }
  });

  it("SIGTERM drains: ready turns 503, the in-flight call completes, exit 0", async () => {
    const slow = spawnCli(["call", "greeter.slow", '{"ms":1500}', "--nats", nats.url, "--json"]);
    // Signal once the call is in flight on the node (its in-flight gauge), however slow the
    // `keel call` process is to start: a fixed head start failed on a loaded machine.
    const inFlight = `keel_server_requests_in_flight{node="n1",service="greeter@1",action="slow"} 1`;
    await until(
      async () =>
        (await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text())).includes(
          inFlight,
        ),
      10_000,
      () => "the slow call to be in flight on the node",
    );
    node.child.kill("SIGTERM");
    await until(
      async () => (await health(adminPort, "/health/ready")) === 503,
      1000,
      () => "ready to turn 503 while draining",
    );
    assert.equal(await health(adminPort, "/health/live"), 200);
    const call = await slow.done;
    assert.equal(call.code, 0, call.stdout + call.stderr);
    assert.deepEqual(JSON.parse(call.stdout), { waited: 1500 });
    const exit = await node.done;
    assert.equal(exit.code, 0, exit.stderr);
    assert.match(exit.stderr, /draining/);
  });
});
