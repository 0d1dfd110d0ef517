import { parseArgs } from "node:util";
import { createRealEnv } from "@keel/core";
import { runShop, type ShopReport } from "./shop.ts";

const HELP = `Keel shop example: orders, payments and inventory on the in-process network.

Usage: npm start -- [options]

Runs shoppers against five nodes for a while, crashes one payments replica
half-way (and restarts it at three quarters), then checks the invariants.
Exits 1 if an invariant fails.

Options:
  -d, --duration <seconds>  how long traffic runs (default 20)
  -s, --shoppers <n>        concurrent shoppers (default 8)
      --seed <seed>         seed for the random choices (default: random)
      --no-restart          leave the crashed replica down
      --buggy               use a payments handler that ignores idempotency keys
      --json                print the report as JSON
  -h, --help                show this help
`;

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${HELP}`);
  process.exit(2);
}

function print(report: ShopReport, seed: string): void {
  const pct = (n: number) =>
    report.placed === 0 ? "0.00" : ((100 * n) / report.placed).toFixed(2);
  const failures = Object.entries(report.failuresByCode)
    .map(([code, n]) => `${code} ${n}`)
    .join(", ");
  const lines = [
    "",
    `Keel shop: ${(report.durationMs / 1000).toFixed(1)} s on the in-process network, 5 nodes, seed ${seed}`,
    "",
    `  orders placed   ${report.placed}`,
    `  succeeded       ${report.paid + report.rejected} (${pct(report.paid + report.rejected)} %): ${report.paid} paid, ${report.rejected} rejected as out of stock`,
    `  failed          ${report.failed} (${pct(report.failed)} %)${failures === "" ? "" : `: ${failures}`}`,
    `  latency         p50 ${report.p50Ms.toFixed(1)} ms, p99 ${report.p99Ms.toFixed(1)} ms, max ${report.maxMs.toFixed(1)} ms`,
    `  failovers       ${report.failovers} calls moved to another replica`,
    "",
    "  invariants",
    ...report.invariants.map((i) => `    ${i.ok ? "ok  " : "FAIL"} ${i.name}: ${i.detail}`),
    "",
  ];
  process.stdout.write(lines.join("\n"));
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        duration: { type: "string", short: "d", default: "20" },
        shoppers: { type: "string", short: "s", default: "8" },
        seed: { type: "string" },
        "no-restart": { type: "boolean", default: false },
        buggy: { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
    });
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
})();

if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const duration = Number(values.duration);
if (!(Number.isFinite(duration) && duration > 0 && duration <= 3600))
  fail("--duration must be a number of seconds in (0, 3600]");
const shoppers = Number(values.shoppers);
if (!(Number.isInteger(shoppers) && shoppers > 0 && shoppers <= 1000))
  fail("--shoppers must be an integer in [1, 1000]");

const seed = values.seed ?? String(Math.floor(Math.random() * 1e9));
const env = createRealEnv({ seed });
if (!values.json) {
  process.stdout.write(
    `Running the shop for ${duration} s with ${shoppers} shoppers (seed ${seed})...\n`,
  );
}
const report = await runShop({
  env,
  durationMs: duration * 1000,
  shoppers,
  restart: !values["no-restart"],
  buggyPayments: values.buggy,
  onEvent: (atMs, what) => {
    if (!values.json) process.stdout.write(`  [${(atMs / 1000).toFixed(2)} s] ${what}\n`);
  },
});
if (values.json) process.stdout.write(`${JSON.stringify({ seed, ...report }, null, 2)}\n`);
else print(report, seed);
process.exitCode = report.invariants.every((i) => i.ok) ? 0 : 1;
