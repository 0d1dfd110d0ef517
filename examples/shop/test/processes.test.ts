/**
 * The shop as separate processes over NATS, the way docs/nats.md tells users to run it: a private
 * nats-server, `keel start` for inventory, payments and orders, and orders placed with
 * `keel call`. Every child is bounded in time and killed in `after`.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

/** What this test uses of the CLI's test helpers (packages/cli/test/support.ts). */
interface CliSupport {
  startNatsServer(options: { jetstream: boolean }): Promise<{
    readonly url: string;
    [Symbol.asyncDispose](): Promise<void>;
  }>;
  spawnCli(
    args: readonly string[],
    timeoutMs?: number,
  ): {
    readonly child: { kill(signal: NodeJS.Signals): boolean };
    readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>;
    output(): { stdout: string; stderr: string };
  };
  runCli(
    args: readonly string[],
    timeoutMs?: number,
  ): Promise<{ code: number | null; stdout: string; stderr: string }>;
  killAll(): void;
  until(probe: () => boolean, timeoutMs: number, what: () => string): Promise<void>;
}

// Another tsc project's test helper: loaded by URL, as tsc cannot rewrite that import path.
const cli = (await import(
  new URL("../../../packages/cli/test/support.ts", import.meta.url).href
)) as CliSupport;

const processModule = (name: string) =>
  fileURLToPath(new URL(`../src/processes/${name}.ts`, import.meta.url));

describe("shop over NATS, one process per service", { timeout: 40_000 }, () => {
  let nats: Awaited<ReturnType<CliSupport["startNatsServer"]>>;

  before(async () => {
    nats = await cli.startNatsServer({ jetstream: false });
  });
  after(async () => {
    cli.killAll();
    await nats?.[Symbol.asyncDispose]();
  });

  it("keel start hosts each service; keel call places orders across them", async () => {
    const nodes = ["inventory", "payments", "orders"].map((name) =>
      cli.spawnCli(["start", processModule(name), "--nats", nats.url, "--id", `${name}-1`], 30_000),
    );
    for (const node of nodes) {
      await cli.until(
        () => /ready/.test(node.output().stderr),
        10_000,
        () => node.output().stderr,
      );
    }
    const place = async (sku: string, qty: number) => {
      const r = await cli.runCli(
        ["call", "orders.place", JSON.stringify({ sku, qty }), "--nats", nats.url, "--json"],
        10_000,
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return JSON.parse(r.stdout) as { orderId: string; status: string; chargeId?: string };
    };

    // orders (one process) reserves in inventory and charges in payments (two others).
    const first = await place("grinder", 1);
    assert.equal(first.status, "paid");
    assert.match(first.orderId, /^o_[0-9a-f]{12}$/);
    assert.equal(first.chargeId, "ch_1", "the payments process's ledger took its first charge");

    // The inventory process holds the stock: 40 mugs are 8 orders of 5, the ninth is refused.
    for (let i = 0; i < 8; i++)
      assert.equal((await place("limited-edition-mug", 5)).status, "paid");
    const ninth = await place("limited-edition-mug", 5);
    assert.equal(ninth.status, "rejected");
    assert.equal(ninth.chargeId, undefined, "a rejected order is never charged");

    for (const node of nodes) node.child.kill("SIGTERM");
    for (const node of nodes) assert.equal((await node.done).code, 0);
  });
});
