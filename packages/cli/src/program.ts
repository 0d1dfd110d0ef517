import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import { call } from "./call.ts";
import { type LogLevels, parseLogLevels } from "./log.ts";
import { parseSeed, sim } from "./sim.ts";
import { start } from "./start.ts";
import { EXIT, parsePort, parsePositiveInt, UsageError } from "./usage.ts";

const DEFAULT_NATS = "nats://127.0.0.1:4222";
/** The admin server's port unless told otherwise (Prometheus's default for exporters). */
const DEFAULT_ADMIN_PORT = 9464;

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version?: unknown;
  };
  return typeof pkg.version === "string" ? pkg.version : "0.0.0";
}

/** Wraps a parser so its UsageError becomes commander's invalid-argument error (then exit 2). */
function arg<T>(parse: (value: string, option: string) => T, option: string) {
  return (value: string): T => {
    try {
      return parse(value, option);
    } catch (err) {
      if (err instanceof UsageError) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

const natsOption = () =>
  new Option("--nats <url>", "NATS server URL(s), comma-separated")
    .env("KEEL_NATS_URL")
    .default(DEFAULT_NATS);
const clusterOption = () =>
  new Option("--cluster <prefix>", "subject prefix of the cluster (default: keel)").env(
    "KEEL_CLUSTER",
  );
const codecOption = () =>
  new Option("--codec <codec>", "wire codec; every node of a cluster must use the same")
    .choices(["msgpack", "json"] as const)
    .default("msgpack" as const);

/** Builds the `keel` command. Actions resolve to an exit code through `onExit`. */
export function buildProgram(onExit: (code: number) => void) {
  const program = new Command()
    .name("keel")
    .description(
      "Keel: start nodes that host services, call their actions over NATS, and simulate clusters",
    )
    .version(packageVersion(), "-V, --version", "print the version")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();

  program
    .command("start")
    .description("host the services a module exports on a node over NATS, until SIGTERM/SIGINT")
    .argument("<module>", "module exporting service definitions (or a 'services' array)")
    .addOption(natsOption())
    .addOption(new Option("--id <id>", "node id (default: <hostname>-<pid>)").env("KEEL_NODE_ID"))
    .addOption(clusterOption())
    .addOption(codecOption())
    .addOption(
      new Option(
        "--admin-port <port>",
        "serve /health/live, /health/ready and /metrics (Prometheus) on <port> (0: any free port)",
      )
        .env("KEEL_ADMIN_PORT")
        .default(DEFAULT_ADMIN_PORT)
        .argParser(arg(parsePort, "--admin-port")),
    )
    .option("--no-admin", "serve no admin HTTP endpoints (no probes, no /metrics)")
    .addOption(
      new Option("--admin-host <host>", "interface of the admin server (default 127.0.0.1)").env(
        "KEEL_ADMIN_HOST",
      ),
    )
    .addOption(
      new Option(
        "--grace-ms <ms>",
        "how long draining waits for in-flight requests (default 5000)",
      ).argParser(arg(parsePositiveInt, "--grace-ms")),
    )
    .option("--json", "log JSON lines instead of text", false)
    .addOption(
      new Option(
        "--log-level <levels>",
        "base level and levels per module, e.g. info,keel.calls=debug,orders=debug",
      )
        .env("KEEL_LOG_LEVEL")
        .default(parseLogLevels("info") as LogLevels, "info")
        .argParser(arg((v) => parseLogLevels(v), "--log-level")),
    )
    .exitOverride()
    .action(async (module, o) => {
      onExit(
        await start(module, {
          nats: o.nats,
          codec: o.codec,
          json: o.json,
          log: o.logLevel,
          ...(o.id === undefined ? {} : { id: o.id }),
          ...(o.cluster === undefined ? {} : { cluster: o.cluster }),
          ...(o.admin === false ? {} : { adminPort: o.adminPort }),
          ...(o.adminHost === undefined ? {} : { adminHost: o.adminHost }),
          ...(o.graceMs === undefined ? {} : { graceMs: o.graceMs }),
        }),
      );
    });

  program
    .command("call")
    .description("call an action once, as a short-lived client node, and print the result")
    .argument("<target>", "<service>.<action>, e.g. orders.place")
    .argument("[input]", "the input as JSON (default {})")
    .addOption(natsOption())
    .addOption(clusterOption())
    .addOption(codecOption())
    .addOption(
      new Option("--timeout <ms>", "time to find an endpoint and get the answer")
        .default(10_000)
        .argParser(arg(parsePositiveInt, "--timeout")),
    )
    .addOption(
      new Option("--version <n>", "service version")
        .default(1)
        .argParser(arg(parsePositiveInt, "--version")),
    )
    .option("--json", 'print one JSON line (errors as {"error":{...}})', false)
    .exitOverride()
    .action(async (target, input, o) => {
      onExit(
        await call(target, input, {
          nats: o.nats,
          codec: o.codec,
          timeout: o.timeout,
          version: o.version,
          json: o.json,
          ...(o.cluster === undefined ? {} : { cluster: o.cluster }),
        }),
      );
    });

  program
    .command("sim")
    .description(
      "run a simulation scenario over many seeds; replay, shrink and check the failing ones",
    )
    .argument("<module>", "module exporting a scenario from defineScenario()")
    .option("--scenario <export>", "the scenario's export (default: the default export)")
    .addOption(
      new Option("--seeds <n>", "how many seeds to run (default 100)").argParser(
        arg(parsePositiveInt, "--seeds"),
      ),
    )
    .addOption(
      new Option("--first <seed>", "the first seed of the range (default 1)").argParser(
        arg(parseSeed, "--first"),
      ),
    )
    .addOption(
      new Option("--seed <seed>", "run exactly this seed (with --plan, --ops, --ties: a replay)")
        .argParser(arg(parseSeed, "--seed"))
        .conflicts(["seeds", "first"]),
    )
    .option("--plan <encoded>", "run this fault plan instead of drawing one (from a replay)")
    .addOption(
      new Option("--ops <n>", "the workload's operation budget").argParser(arg(parseSeed, "--ops")),
    )
    .addOption(
      new Option("--ties <order>", "how same-time events are ordered").choices([
        "random",
        "fifo",
      ] as const),
    )
    .addOption(
      new Option(
        "--jobs <n>",
        "worker threads (default: the CPUs, at most one per seed)",
      ).argParser(arg(parsePositiveInt, "--jobs")),
    )
    .option("--shrink", "shrink failing seeds to a short timeline of faults", false)
    .addOption(
      new Option(
        "--shrink-max <n>",
        "how many failing seeds to shrink (default 1: the lowest)",
      ).argParser(arg(parsePositiveInt, "--shrink-max")),
    )
    .addOption(
      new Option("--shrink-runs <n>", "most runs one shrink may spend (default 300)").argParser(
        arg(parsePositiveInt, "--shrink-runs"),
      ),
    )
    .option("--check-determinism", "run each seed twice and report the first divergence", false)
    .option("--no-guard", "let simulated code touch real time and randomness (may not replay)")
    .option("--json", "print the summary as one JSON object", false)
    .exitOverride()
    .action(async (module, o) => {
      onExit(
        await sim(module, {
          shrink: o.shrink,
          checkDeterminism: o.checkDeterminism,
          guard: o.guard,
          json: o.json,
          ...(o.scenario === undefined ? {} : { scenario: o.scenario }),
          ...(o.seeds === undefined ? {} : { seeds: o.seeds }),
          ...(o.first === undefined ? {} : { first: o.first }),
          ...(o.seed === undefined ? {} : { seed: o.seed }),
          ...(o.plan === undefined ? {} : { plan: o.plan }),
          ...(o.ops === undefined ? {} : { ops: o.ops }),
          ...(o.ties === undefined ? {} : { ties: o.ties }),
          ...(o.jobs === undefined ? {} : { jobs: o.jobs }),
          ...(o.shrinkMax === undefined ? {} : { shrinkMax: o.shrinkMax }),
          ...(o.shrinkRuns === undefined ? {} : { shrinkRuns: o.shrinkRuns }),
        }),
      );
    });

  return program;
}

/** Runs the CLI on `argv` (as `process.argv`) and returns the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv]);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof UsageError) {
      process.stderr.write(`keel: ${err.message}\n(run with --help for usage)\n`);
      return EXIT.usage;
    }
    process.stderr.write(
      `keel: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return EXIT.failed;
  }
}
