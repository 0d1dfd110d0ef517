/**
 * One process of the `nats` benchmark, driven by `nats.ts` over IPC: an echo server, a load
 * client, or an idle node whose memory is sampled. Usage (by `fork` only):
 *   nats-worker.ts <server|client|idle> <raw|request|keel|moleculer> <nats url>
 * Only Node built-ins are imported up front; each system loads its own libraries, so that an idle
 * process holds nothing of the other systems.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

type Role = "server" | "client" | "idle";
type System = "raw" | "request" | "keel" | "moleculer";

/** Messages from the driver. */
export type WorkerCommand =
  | { readonly type: "check" }
  | {
      readonly type: "measure";
      readonly concurrency: number;
      readonly seconds: number;
      readonly maxOps: number;
    }
  | { readonly type: "mark" }
  | { readonly type: "since" }
  | { readonly type: "rss"; readonly samples: number; readonly intervalMs: number }
  | { readonly type: "stop" };

/** Messages to the driver. */
export type WorkerReply =
  | { readonly type: "ready"; readonly info?: Readonly<Record<string, number>> }
  | { readonly type: "checked"; readonly value: unknown }
  | {
      readonly type: "measured";
      readonly ops: number;
      readonly elapsedMs: number;
      readonly p50Us: number;
      readonly p99Us: number;
      readonly cpuUs: number;
      /** write(2)-family system calls during the measurement (Linux), -1 elsewhere. */
      readonly writes: number;
    }
  | { readonly type: "marked" }
  | { readonly type: "cpu"; readonly us: number; readonly writes: number }
  | { readonly type: "rss"; readonly bytes: readonly number[] }
  | { readonly type: "error"; readonly message: string };

/** The echo input and output of every case. */
export const INPUT = 42;
/** Subject of the raw echo server. */
const RAW_SUBJECT = "bench.raw.echo";
/** Size of a raw request and reply: about a keel request frame (see the notes of the suite). */
const RAW_SIZE = 64;
/** Latency samples kept per measurement; beyond that, later calls are counted but not timed. */
const MAX_SAMPLES = 4_000_000;

interface Side {
  /** One call, resolving to the echoed value. */
  call?: () => Promise<unknown>;
  info?: Record<string, number>;
  stop(): Promise<void>;
}

function send(reply: WorkerReply): void {
  process.send?.(reply);
}

// ---- raw NATS ----------------------------------------------------------------------------------

async function rawConnect(url: string, name: string) {
  const { connect } = await import("@nats-io/transport-node");
  return connect({ servers: url, name, noAsyncTraces: true });
}

async function rawServer(url: string): Promise<Side> {
  const nc = await rawConnect(url, "bench-raw-server");
  nc.subscribe(RAW_SUBJECT, {
    callback: (err, msg) => {
      if (err === null && msg.reply !== undefined) nc.publish(msg.reply, msg.data);
    },
  });
  await nc.flush();
  return { stop: () => nc.drain() };
}

/**
 * The transport limit: one subscription on a reply subject, correlation by a 4-byte id at the
 * start of the payload, one promise per call and no timer.
 */
async function rawClient(url: string): Promise<Side> {
  const nc = await rawConnect(url, "bench-raw-client");
  const inbox = `bench.raw.reply.${process.pid}`;
  const pending = new Map<number, (value: number) => void>();
  nc.subscribe(inbox, {
    callback: (err, msg) => {
      if (err !== null) return;
      const d = msg.data;
      const id = (d[0]! | (d[1]! << 8) | (d[2]! << 16) | (d[3]! << 24)) >>> 0;
      const resolve = pending.get(id);
      if (resolve === undefined) return;
      pending.delete(id);
      resolve(d[4]!);
    },
  });
  await nc.flush();
  const options = { reply: inbox };
  let next = 0;
  const call = () =>
    new Promise<number>((resolve) => {
      const id = next++ >>> 0;
      const data = new Uint8Array(RAW_SIZE);
      data[0] = id & 0xff;
      data[1] = (id >>> 8) & 0xff;
      data[2] = (id >>> 16) & 0xff;
      data[3] = id >>> 24;
      data[4] = INPUT;
      pending.set(id, resolve);
      nc.publish(RAW_SUBJECT, data, options);
    });
  return { call, stop: () => nc.drain() };
}

/** The NATS client's own request(): a muxed inbox, plus a timer and a promise per request. */
async function requestClient(url: string): Promise<Side> {
  const nc = await rawConnect(url, "bench-request-client");
  const call = async () => {
    const data = new Uint8Array(RAW_SIZE);
    data[4] = INPUT;
    const msg = await nc.request(RAW_SUBJECT, data, { timeout: 10_000 });
    return msg.data[4];
  };
  return { call, stop: () => nc.drain() };
}

// ---- keel --------------------------------------------------------------------------------------

async function keelSide(url: string, role: Role): Promise<Side> {
  const { createNode, defineService, silentLogger } = await import("@keel/core");
  const { msgpackCodec } = await import("@keel/core/msgpack");
  const { createNatsTransport, serveDiscovery } = await import("@keel/nats");
  /** A Standard Schema that returns its input: keel's path without a validator's cost. */
  const passthrough = {
    "~standard": {
      version: 1 as const,
      vendor: "bench",
      validate: (v: unknown) => ({ value: v as number }),
    },
  };
  const echo = defineService("echo").action("echo", {
    input: passthrough,
    output: passthrough,
    handler: (x: number) => x,
  });
  const id = `bench-keel-${role}`;
  const transport = createNatsTransport({
    nodeId: id,
    servers: url,
    cluster: "bench",
    logger: silentLogger,
  });
  const node = createNode({
    id,
    transport,
    codec: msgpackCodec,
    services: role === "client" ? [] : [echo],
    logger: silentLogger,
  });
  await node.start();
  if (role === "idle") {
    // What `keel start` runs: the node and the NATS service discovery responder.
    serveDiscovery(transport.connection(), { node, services: [echo], logger: silentLogger });
  }
  const stop = () => node.stop({ graceMs: 1000 });
  if (role !== "client") return { stop };
  await node.waitForEndpoints(echo, 1, 10_000);
  const req = msgpackCodec.encode({
    v: 1,
    k: "req",
    id: "1z",
    from: id,
    svc: "echo",
    ver: 1,
    act: "echo",
    dl: 10_000,
    p: INPUT,
  }).byteLength;
  const res = msgpackCodec.encode({
    v: 1,
    k: "res",
    id: "1z",
    from: "bench-keel-server",
    ok: true,
    p: INPUT,
  }).byteLength;
  return {
    call: () => node.call(echo, "echo", INPUT),
    info: { requestBytes: req, replyBytes: res },
    stop,
  };
}

// ---- Moleculer ---------------------------------------------------------------------------------

async function moleculerSide(url: string, role: Role): Promise<Side> {
  const { ServiceBroker } = await import("moleculer");
  const broker = new ServiceBroker({
    nodeID: `bench-moleculer-${role}`,
    namespace: "bench",
    transporter: url,
    logger: false,
    metrics: false,
    tracing: false,
  });
  if (role !== "client") {
    broker.createService({
      name: "echo",
      actions: {
        echo(ctx: { params: unknown }) {
          return ctx.params;
        },
      },
    });
  }
  await broker.start();
  const stop = () => broker.stop();
  if (role !== "client") return { stop };
  await broker.waitForServices("echo", 10_000);
  return { call: () => broker.call("echo.echo", INPUT), stop };
}

/** This process's write system calls so far (Linux /proc/self/io `syscw`), or -1. */
function writeCalls(): number {
  try {
    const match = /^syscw: (\d+)$/m.exec(readFileSync("/proc/self/io", "utf8"));
    return match === null ? -1 : Number(match[1]);
  } catch {
    return -1;
  }
}

// ---- measuring ---------------------------------------------------------------------------------

/** Runs `concurrency` sequential callers until `seconds` or `maxOps`; each call is timed. */
async function measure(
  call: () => Promise<unknown>,
  concurrency: number,
  seconds: number,
  maxOps: number,
  latencies: Float64Array,
) {
  globalThis.gc?.();
  await sleep(0);
  const cpu0 = process.cpuUsage();
  const writes0 = writeCalls();
  const start = performance.now();
  const end = start + seconds * 1000;
  let ops = 0;
  let done = false;
  const caller = async () => {
    while (!done) {
      const t0 = performance.now();
      await call();
      const t1 = performance.now();
      const n = ops++;
      if (n < latencies.length) latencies[n] = t1 - t0;
      if (ops >= maxOps || t1 >= end) done = true;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  const elapsedMs = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  const writes = writeCalls() - writes0;
  const timed = latencies.subarray(0, Math.min(ops, latencies.length)).sort();
  const at = (q: number) =>
    (timed[Math.min(timed.length - 1, Math.floor(q * timed.length))] ?? 0) * 1000;
  return {
    ops,
    elapsedMs,
    p50Us: at(0.5),
    p99Us: at(0.99),
    cpuUs: cpu.user + cpu.system,
    writes: writes0 < 0 ? -1 : writes,
  };
}

async function main(): Promise<void> {
  const [role, system, url] = process.argv.slice(2) as [Role, System, string];
  if (url === undefined) throw new Error("usage: nats-worker.ts <role> <system> <nats url>");
  let side: Side;
  if (system === "keel") side = await keelSide(url, role);
  else if (system === "moleculer") side = await moleculerSide(url, role);
  else if (role === "client") side = await (system === "raw" ? rawClient(url) : requestClient(url));
  else side = await rawServer(url);

  let cpuMark = process.cpuUsage();
  let writesMark = writeCalls();
  let latencies: Float64Array | undefined;
  process.on("message", (command: WorkerCommand) => {
    const run = async (): Promise<WorkerReply | undefined> => {
      switch (command.type) {
        case "check":
          return { type: "checked", value: await side.call?.() };
        case "measure": {
          if (side.call === undefined) throw new Error(`${role} ${system} cannot measure`);
          latencies ??= new Float64Array(MAX_SAMPLES);
          const { concurrency, seconds, maxOps } = command;
          return {
            type: "measured",
            ...(await measure(side.call, concurrency, seconds, maxOps, latencies)),
          };
        }
        case "mark":
          globalThis.gc?.();
          cpuMark = process.cpuUsage();
          writesMark = writeCalls();
          return { type: "marked" };
        case "since": {
          const cpu = process.cpuUsage(cpuMark);
          const writes = writesMark < 0 ? -1 : writeCalls() - writesMark;
          return { type: "cpu", us: cpu.user + cpu.system, writes };
        }
        case "rss": {
          const bytes: number[] = [];
          for (let i = 0; i < command.samples; i++) {
            if (i > 0) await sleep(command.intervalMs);
            bytes.push(process.memoryUsage.rss());
          }
          return { type: "rss", bytes };
        }
        case "stop":
          await side.stop();
          process.disconnect();
          return undefined;
      }
    };
    run().then(
      (reply) => {
        if (reply !== undefined) send(reply);
      },
      (err: unknown) =>
        send({
          type: "error",
          message: err instanceof Error ? (err.stack ?? err.message) : String(err),
        }),
    );
  });
  send({ type: "ready", ...(side.info === undefined ? {} : { info: side.info }) });
}

main().catch((err: unknown) => {
  send({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
  process.disconnect?.();
});
