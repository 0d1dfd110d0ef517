import { execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  type HarnessOptions,
  type PreparedSuite,
  report,
  runSuite,
  type SourceInfo,
} from "./harness.ts";

/** A benchmark module: builds its suite (starting what it needs) and takes it down after. */
interface Benchmark {
  readonly description: string;
  load(): Promise<{ prepare(options: HarnessOptions): Promise<PreparedSuite> }>;
}

const BENCHMARKS: Readonly<Record<string, Benchmark>> = {
  core: {
    description:
      "one call, trivial handler: plain await, keel same-node (zod / passthrough), keel two-node, Moleculer local",
    load: () => import("./core.ts"),
  },
  sim: {
    description: "simulation: linearizability checker on the Jepsen etcd corpus (68 histories)",
    load: () => import("./sim.ts"),
  },
  policies: {
    description:
      "retry + circuit breaker + timeout per call: keel pipeline vs cockatiel, opossum, Moleculer, hand-written floor",
    load: () => import("./policies.ts"),
  },
  nats: {
    description:
      "request/reply across processes over a private nats-server, concurrency 1 and 100: raw NATS limit, request(), keel, Moleculer; idle RSS",
    load: () => import("./nats.ts"),
  },
};

const DEFAULTS = {
  rounds: 7,
  seconds: 0.75,
  warmup: 0.5,
  maxOps: 10_000_000,
  batch: 1000,
} as const;

/** Set in the child this script spawns with --expose-gc, so that it never spawns again. */
const RESPAWNED = "KEEL_BENCH_RESPAWNED";

function usage(): string {
  const names = Object.keys(BENCHMARKS);
  const width = Math.max(...names.map((n) => n.length));
  return [
    "usage: npm run bench -- <benchmark> [options]",
    "",
    "benchmarks:",
    ...names.map((n) => `  ${n.padEnd(width)}  ${BENCHMARKS[n]!.description}`),
    "",
    "options:",
    `  --rounds N      rounds; each case is measured once per round (default ${DEFAULTS.rounds})`,
    `  --seconds S     time bound of one measurement (default ${DEFAULTS.seconds})`,
    `  --warmup S      warm-up per case before the first round (default ${DEFAULTS.warmup})`,
    `  --max-ops N     operation bound of one measurement (default ${DEFAULTS.maxOps})`,
    "  --only a,b      measure only these case ids (the reference case is always kept)",
    "  --json          print the results as JSON on stdout (progress stays on stderr)",
    "  -h, --help      this text",
  ].join("\n");
}

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${usage()}\n`);
  process.exit(1);
}

function numberFlag(
  name: string,
  raw: string | undefined,
  fallback: number,
  integer: boolean,
): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!(Number.isFinite(value) && value > 0) || (integer && !Number.isInteger(value))) {
    fail(`--${name} must be a positive ${integer ? "integer" : "number"}, got '${raw}'`);
  }
  return value;
}

function parse(argv: readonly string[]) {
  let parsed: ReturnType<typeof parseArgsStrict>;
  try {
    parsed = parseArgsStrict(argv);
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  const name = positionals[0];
  if (name === undefined) fail("which benchmark?");
  if (positionals.length > 1) fail(`one benchmark at a time, got: ${positionals.join(" ")}`);
  const benchmark = Object.hasOwn(BENCHMARKS, name) ? BENCHMARKS[name] : undefined;
  if (benchmark === undefined) fail(`unknown benchmark '${name}'`);
  const only = values.only
    ?.split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  return {
    name,
    benchmark,
    json: values.json === true,
    options: {
      rounds: numberFlag("rounds", values.rounds, DEFAULTS.rounds, true),
      seconds: numberFlag("seconds", values.seconds, DEFAULTS.seconds, false),
      warmupSeconds: numberFlag("warmup", values.warmup, DEFAULTS.warmup, false),
      maxOps: numberFlag("max-ops", values["max-ops"], DEFAULTS.maxOps, true),
      batch: DEFAULTS.batch,
      only,
      progress: (line: string) => process.stderr.write(`${line}\n`),
    } satisfies HarnessOptions,
  };
}

function parseArgsStrict(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      rounds: { type: "string" },
      seconds: { type: "string" },
      warmup: { type: "string" },
      "max-ops": { type: "string" },
      only: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/** The commit being measured and what differs from it in the packages' and the bench's sources; undefined without git. */
function sourceInfo(): SourceInfo | undefined {
  const cwd = fileURLToPath(new URL("../../", import.meta.url));
  const git = (...args: string[]) =>
    execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  try {
    const commit = git("rev-parse", "--short", "HEAD").trim();
    const modified = git("status", "--porcelain", "--", ":(glob)packages/*/src/**", "bench/src")
      .split("\n")
      .filter((line) => line.length > 3)
      .map((line) => line.slice(3));
    return { commit, modified };
  } catch {
    return undefined;
  }
}

/** Runs this script again with --expose-gc, so the harness can collect before each measurement. */
function respawnWithGc(argv: readonly string[]): Promise<number> {
  const script = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [...process.execArgv, "--expose-gc", script, ...argv], {
    stdio: "inherit",
    env: { ...process.env, [RESPAWNED]: "1" },
  });
  return new Promise((resolve) => {
    child.on("error", (err) => {
      process.stderr.write(`could not respawn with --expose-gc: ${err.message}\n`);
      resolve(1);
    });
    child.on("exit", (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
  });
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const { name, benchmark, json, options } = parse(argv);
  if (typeof globalThis.gc !== "function") {
    if (process.env[RESPAWNED] === undefined) return respawnWithGc(argv);
    options.progress("warning: gc() is not available; measurements start without a collection");
  }
  const run: HarnessOptions = { ...options, source: sourceInfo() };
  const { prepare } = await benchmark.load();
  options.progress(`${name}: preparing`);
  const { suite, teardown } = await prepare(run);
  try {
    const result = await runSuite(suite, run);
    process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `\n${report(result)}\n`);
  } finally {
    await teardown();
  }
  return 0;
}

try {
  process.exitCode = await main();
} catch (err) {
  process.stderr.write(
    `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  if (err instanceof Error && err.cause !== undefined)
    process.stderr.write(`caused by: ${String(err.cause)}\n`);
  process.exitCode = 1;
}
