import { type ChildProcess, fork, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Comparison, HarnessOptions, MeasuredCase, PreparedSuite, Stat } from "./harness.ts";
import { ratio, stat } from "./harness.ts";
import { type BenchNatsServer, startBenchNatsServer } from "./nats-server.ts";
import { INPUT, type WorkerCommand, type WorkerReply } from "./nats-worker.ts";

type System = "raw" | "request" | "keel" | "moleculer";

const WORKER = fileURLToPath(new URL("./nats-worker.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The worker and the resolve hooks as `tsc -b` compiles them, for idle processes. */
const COMPILED_WORKER = `${ROOT}bench/dist/src/nats-worker.js`;
const COMPILED_HOOKS = `${ROOT}bench/dist/src/compiled-hooks.js`;
const CONCURRENCY = [1, 100] as const;
/** Idle memory: process pairs, how long each settles, and the samples taken after. */
const RSS = { pairs: 3, settleMs: 3000, samples: 5, intervalMs: 500 } as const;

/** A worker process and a one-at-a-time request/reply channel to it over IPC. */
class Worker {
  readonly name: string;
  readonly #child: ChildProcess;
  #waiting: ((reply: WorkerReply) => void) | undefined;
  #exited = false;
  readonly #exit: Promise<void>;

  private constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.#child = child;
    this.#exit = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.#exited = true;
        this.#waiting?.({
          type: "error",
          message: `${name} exited (${code ?? signal}) before answering`,
        });
        resolve();
      });
    });
    child.on("message", (reply: WorkerReply) => {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      waiting?.(reply);
    });
  }

  /** Forks a worker and waits for it to be ready. */
  static async start(
    role: "server" | "client" | "idle",
    system: System,
    url: string,
    compiled = false,
  ): Promise<{ worker: Worker; info: Readonly<Record<string, number>> | undefined }> {
    const profile = process.env["KEEL_BENCH_CPU_PROF"];
    const child = fork(compiled ? COMPILED_WORKER : WORKER, [role, system, url], {
      execArgv: [
        "--expose-gc",
        ...(compiled ? ["--import", COMPILED_HOOKS] : []),
        ...(profile === undefined || role === "idle"
          ? []
          : [
              "--cpu-prof",
              `--cpu-prof-dir=${profile}`,
              `--cpu-prof-name=${system}-${role}.cpuprofile`,
            ]),
      ],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    const worker = new Worker(`${system} ${role}${compiled ? " (compiled)" : ""}`, child);
    const ready = await worker.#next();
    if (ready.type !== "ready") {
      await worker.stop();
      throw new Error(`${worker.name} did not start: ${JSON.stringify(ready)}`);
    }
    return { worker, info: ready.info };
  }

  get pid(): number {
    return this.#child.pid ?? -1;
  }

  #next(): Promise<WorkerReply> {
    if (this.#waiting !== undefined) throw new Error(`${this.name}: one request at a time`);
    if (this.#exited) return Promise.reject(new Error(`${this.name} has exited`));
    return new Promise((resolve) => {
      this.#waiting = resolve;
    });
  }

  /** Sends a command and returns the reply of the expected type (or throws the worker's error). */
  async ask<T extends WorkerReply["type"]>(
    command: WorkerCommand,
    expect: T,
  ): Promise<Extract<WorkerReply, { type: T }>> {
    const reply = this.#next();
    this.#child.send(command);
    const r = await reply;
    if (r.type !== expect) {
      throw new Error(`${this.name}: ${r.type === "error" ? r.message : JSON.stringify(r)}`);
    }
    return r as Extract<WorkerReply, { type: T }>;
  }

  /** Asks the worker to stop; kills it if it has not exited after `ms`. */
  async stop(ms = 5000): Promise<void> {
    if (this.#exited) return;
    if (this.#child.connected) this.#child.send({ type: "stop" } satisfies WorkerCommand);
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), ms);
    await this.#exit;
    clearTimeout(timer);
  }
}

/** CPU time of a process so far, in µs (Linux: /proc/<pid>/stat utime + stime); undefined elsewhere. */
function processCpuUs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of the file, in clock ticks (100 per second on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
  } catch {
    return undefined;
  }
}

/** Busy and total CPU time of the whole machine so far, in jiffies (Linux /proc/stat); undefined elsewhere. */
function machineCpu(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

const MB = 1024 * 1024;
const mb = (bytes: number) => (bytes / MB).toFixed(1);

/** Compiles the workspace (`tsc -b bench`), so idle processes can run the packages as JavaScript. */
function compile(log: (line: string) => void): void {
  const result = spawnSync(`${ROOT}node_modules/.bin/tsc`, ["-b", "bench"], {
    cwd: ROOT,
    encoding: "utf8",
  });
  if (result.status !== 0) {
    log(`warning: tsc -b bench failed; idle processes run what dist/ holds:\n${result.stdout}`);
  }
  for (const file of [COMPILED_WORKER, COMPILED_HOOKS]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: tsc -b bench did not emit it`);
  }
}

/** The idle processes: a keel node and a Moleculer broker as JavaScript, and keel from its .ts sources. */
const IDLE = [
  { id: "keel", system: "keel", compiled: true },
  { id: "moleculer", system: "moleculer", compiled: true },
  { id: "keelSource", system: "keel", compiled: false },
] as const;

/**
 * Idle RSS of a keel node and a Moleculer broker, each hosting the echo service and connected to
 * NATS, in processes started side by side and sampled after they settle.
 */
async function idleMemory(url: string, log: (line: string) => void) {
  compile(log);
  const samples: Record<(typeof IDLE)[number]["id"], number[]> = {
    keel: [],
    moleculer: [],
    keelSource: [],
  };
  for (let round = 0; round < RSS.pairs; round++) {
    const started = await Promise.all(
      IDLE.map((p) => Worker.start("idle", p.system, url, p.compiled)),
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, RSS.settleMs));
      const replies = await Promise.all(
        started.map(({ worker }) =>
          worker.ask({ type: "rss", samples: RSS.samples, intervalMs: RSS.intervalMs }, "rss"),
        ),
      );
      const line: string[] = [];
      for (const [i, p] of IDLE.entries()) {
        const bytes = replies[i]!.bytes;
        samples[p.id].push(...bytes);
        line.push(`${p.id} ${bytes.map(mb).join(" ")}`);
      }
      log(`idle RSS (MB), round ${round + 1}/${RSS.pairs}: ${line.join("; ")}`);
    } finally {
      await Promise.all(started.map(({ worker }) => worker.stop()));
    }
  }
  return {
    keel: stat(samples.keel),
    moleculer: stat(samples.moleculer),
    keelSource: stat(samples.keelSource),
  };
}

const LABELS: Record<System, string> = {
  raw: "raw NATS: publish with a reply subject, one reply subscription, id in the payload, no timers",
  request: "raw NATS nc.request(): the client's muxed inbox, a timer and a promise per request",
  keel: "keel node.call over NATS: msgpack frames, passthrough schemas, separate server node",
  moleculer: "Moleculer 0.14 broker.call over its NATS transporter (nats 2.29), JSON serializer",
};

const range = (s: Stat, f: (v: number) => string) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`;

function rssLine(keel: Stat, moleculer: Stat, keelSource: Stat): string {
  const r = keel.median / moleculer.median;
  return (
    `idle RSS after ${RSS.settleMs / 1000} s settle, median of ${RSS.pairs} rounds x ${RSS.samples} samples, as compiled JavaScript: ` +
    `keel ${range(keel, mb)} MB, Moleculer ${range(moleculer, mb)} MB; keel / Moleculer ${r.toFixed(2)} (target <= 0.80: ${r <= 0.8 ? "met" : "NOT met"}). ` +
    `keel run from its .ts sources (Node's type stripping loaded): ${range(keelSource, mb)} MB`
  );
}

/**
 * The nats suite: request/reply between two processes over a private nats-server, at
 * concurrency 1 and 100: the raw NATS limit, the NATS client's request(), keel and Moleculer.
 */
export async function prepare(options: HarnessOptions): Promise<PreparedSuite> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let server: BenchNatsServer | undefined = await startBenchNatsServer();
  const workers: Worker[] = [];
  const teardown = async () => {
    await Promise.allSettled(workers.map((w) => w.stop()));
    await server?.stop();
    server = undefined;
  };
  try {
    const url = server.url;
    const natsPid = server.pid;
    // Idle memory takes a while: with --only, only when "rss" is listed.
    const withRss = options.only === undefined || options.only.includes("rss");
    log(`nats-server ${url}${withRss ? "; idle memory first" : ""}`);
    const rss = withRss ? await idleMemory(url, log) : undefined;

    const start = async (role: "server" | "client", system: System) => {
      const started = await Worker.start(role, system, url);
      workers.push(started.worker);
      return started;
    };
    const rawServer = (await start("server", "raw")).worker;
    const keelServer = (await start("server", "keel")).worker;
    const moleculerServer = (await start("server", "moleculer")).worker;
    const servers: Record<System, Worker> = {
      raw: rawServer,
      request: rawServer,
      keel: keelServer,
      moleculer: moleculerServer,
    };
    const clients = {} as Record<System, Worker>;
    let frameSizes: Readonly<Record<string, number>> | undefined;
    for (const system of ["raw", "request", "keel", "moleculer"] as const) {
      const { worker, info } = await start("client", system);
      clients[system] = worker;
      if (system === "keel") frameSizes = info;
      const { value } = await worker.ask({ type: "check" }, "checked");
      if (value !== INPUT) throw new Error(`${system} returned ${String(value)}, not ${INPUT}`);
    }

    const cases: MeasuredCase[] = [];
    for (const concurrency of CONCURRENCY) {
      for (const system of ["raw", "request", "keel", "moleculer"] as const) {
        const client = clients[system];
        const srv = servers[system];
        cases.push({
          id: `${system}-c${concurrency}`,
          label: `${LABELS[system]}; ${concurrency} caller${concurrency === 1 ? "" : "s"}`,
          measure: async (seconds, maxOps) => {
            await srv.ask({ type: "mark" }, "marked");
            const nats0 = processCpuUs(natsPid);
            const machine0 = machineCpu();
            const r = await client.ask(
              { type: "measure", concurrency, seconds, maxOps },
              "measured",
            );
            const nats1 = processCpuUs(natsPid);
            const machine1 = machineCpu();
            const { us, writes } = await srv.ask({ type: "since" }, "cpu");
            const extra: Record<string, number> = {};
            if (r.writes >= 0 && writes >= 0)
              extra["socket writes per 100 req"] = (100 * (r.writes + writes)) / r.ops;
            if (nats0 !== undefined && nats1 !== undefined)
              extra["nats-server CPU µs/req"] = (nats1 - nats0) / r.ops;
            if (machine0 !== undefined && machine1 !== undefined)
              extra["machine busy %"] =
                (100 * (machine1.busy - machine0.busy)) / (machine1.total - machine0.total);
            return {
              ops: r.ops,
              elapsedMs: r.elapsedMs,
              metrics: {
                "p50 µs": r.p50Us,
                "p99 µs": r.p99Us,
                "CPU µs/req": (r.cpuUs + us) / r.ops,
                "client CPU µs/req": r.cpuUs / r.ops,
                "server CPU µs/req": us / r.ops,
                ...extra,
              },
            };
          },
        });
      }
    }

    const rssNote =
      rss === undefined
        ? "idle RSS: not measured (add rss to --only)"
        : rssLine(rss.keel, rss.moleculer, rss.keelSource);
    const comparisons: Comparison[] = [];
    for (const c of CONCURRENCY) {
      comparisons.push(
        ratio(
          `c=${c}: throughput keel / raw (the transport limit)`,
          `keel-c${c}`,
          `raw-c${c}`,
          c === 1 ? 0.95 : 0.9,
        ),
        ratio(`c=${c}: throughput request() / raw`, `request-c${c}`, `raw-c${c}`),
        ratio(`c=${c}: throughput moleculer / raw`, `moleculer-c${c}`, `raw-c${c}`),
        ratio(`c=${c}: throughput keel / moleculer`, `keel-c${c}`, `moleculer-c${c}`),
      );
    }
    return {
      suite: {
        name: "nats",
        description:
          "request/reply between two processes over a private nats-server: raw NATS, request(), keel, Moleculer",
        reference: "raw-c1",
        cases,
        comparisons,
        notes: [
          rssNote,
          "Each system has a server process (echo handler) and a client process; the driver only coordinates over IPC. All run on one machine with the nats-server, whose own CPU is not counted.",
          "CPU µs/req: user + system CPU of the client and the server process during the measurement, divided by the requests completed.",
          `Raw requests and replies carry ${64} bytes; keel's frames are ${frameSizes?.["requestBytes"] ?? "?"} (request) and ${frameSizes?.["replyBytes"] ?? "?"} (reply) bytes of MessagePack.`,
          "Latency is per call, from the caller's start to its result (performance.now()), in µs.",
        ],
      },
      teardown,
    };
  } catch (err) {
    await teardown().catch(() => {});
    throw err;
  }
}
