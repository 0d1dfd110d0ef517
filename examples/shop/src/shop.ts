import {
  type AnyService,
  createInProcessNetwork,
  createJsonLogger,
  createNode,
  type Env,
  isKeelError,
  type KeelNode,
  type Logger,
} from "@keel/core";
import { inventoryService, ordersService, PRICES, paymentsService } from "./services.ts";
import { Ledger, OrderBook, Stock } from "./stores.ts";

/** Options for one run of the shop. */
export interface ShopOptions {
  readonly env: Env;
  /** How long traffic runs, in ms of the Env's clock. */
  readonly durationMs: number;
  /** Concurrent shoppers (default 8). */
  readonly shoppers?: number;
  /** Upper bound on orders placed, whatever the duration (default 100000). */
  readonly maxOrders?: number;
  /** When to crash `payments-1` (default: half-way). */
  readonly crashAtMs?: number;
  /** When to bring `payments-1` back (default: three quarters of the way); omit with `restart: false`. */
  readonly restartAtMs?: number;
  readonly restart?: boolean;
  /** Run the deliberately broken payments handler (ignores idempotency keys). */
  readonly buggyPayments?: boolean;
  readonly logger?: Logger;
  /** Told of notable moments (crash, detection, rejoin) as they happen. */
  readonly onEvent?: (atMs: number, what: string) => void;
}

/** What happened, and whether the invariants held. */
export interface ShopReport {
  readonly durationMs: number;
  readonly placed: number;
  readonly paid: number;
  readonly rejected: number;
  readonly failed: number;
  readonly failuresByCode: Readonly<Record<string, number>>;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly failovers: number;
  readonly timeline: ReadonlyArray<{ atMs: number; what: string }>;
  readonly invariants: ReadonlyArray<{ name: string; ok: boolean; detail: string }>;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/**
 * Runs the shop: five nodes on the in-process network, shoppers placing orders, one payments
 * replica crashing mid-run. Works on any Env: the real one (`npm start`) or a virtual one (tests).
 */
export async function runShop(options: ShopOptions): Promise<ShopReport> {
  const { env, durationMs } = options;
  const logger = options.logger ?? createJsonLogger({ level: "error", clock: env.clock });
  const shoppers = options.shoppers ?? 8;
  const maxOrders = options.maxOrders ?? 100_000;
  const crashAt = options.crashAtMs ?? durationMs / 2;
  const restartAt = options.restartAtMs ?? (durationMs * 3) / 4;
  const start = env.clock.now();
  const timeline: Array<{ atMs: number; what: string }> = [];
  const note = (what: string) => {
    const atMs = env.clock.now() - start;
    timeline.push({ atMs, what });
    options.onEvent?.(atMs, what);
  };

  const network = createInProcessNetwork({
    env,
    faults: { latency: { kind: "uniform", min: 0.1, max: 0.6 } },
  });
  const ledger = new Ledger();
  const stock = new Stock({
    "espresso-beans": 100_000,
    "pour-over-kettle": 100_000,
    grinder: 100_000,
    "limited-edition-mug": 40,
  });
  const book = new OrderBook();
  const inventory = inventoryService(stock);
  const payments = paymentsService(ledger, { buggyNotIdempotent: options.buggyPayments === true });
  const orders = ordersService(book, inventory, payments);

  const make = (id: string, services: readonly AnyService[]) =>
    createNode({ id, env, transport: network.transport(id), services, logger });
  const gateway = make("gateway", [orders]);
  const nodes: KeelNode[] = [
    gateway,
    make("payments-1", [payments]),
    make("payments-2", [payments]),
    make("inventory-1", [inventory]),
    make("inventory-2", [inventory]),
  ];
  for (const n of nodes) await n.start();
  await gateway.waitForEndpoints(payments, 2);
  await gateway.waitForEndpoints(inventory, 2);
  gateway.registry.onChange((e) => {
    if (e.kind === "node-down") note(`gateway stopped routing to ${e.node} (${e.reason})`);
    if (e.kind === "node-up" && e.node === "payments-1") note("gateway sees payments-1 again");
  });

  const latencies: number[] = [];
  const failuresByCode: Record<string, number> = {};
  let placed = 0;
  let paid = 0;
  let rejected = 0;
  let failed = 0;
  const told = new Map<string, "paid" | "rejected">();
  const end = start + durationMs;
  const skus = Object.keys(PRICES);
  const random = env.random.split("shoppers");

  const shopper = async () => {
    while (env.clock.now() < end && placed < maxOrders) {
      placed++;
      const sku = skus[random.int(skus.length)] ?? "grinder";
      const t0 = env.clock.now();
      try {
        const res = await gateway.call(
          orders,
          "place",
          { sku, qty: 1 + random.int(2) },
          { timeoutMs: 5000 },
        );
        told.set(res.orderId, res.status);
        if (res.status === "paid") paid++;
        else rejected++;
      } catch (err) {
        failed++;
        const code = isKeelError(err) ? err.code : "UNKNOWN";
        failuresByCode[code] = (failuresByCode[code] ?? 0) + 1;
      }
      latencies.push(env.clock.now() - t0);
      await env.timers.sleep(5 + 10 * random.next());
    }
  };

  const chaos = async () => {
    await env.timers.sleep(crashAt);
    const victim = nodes[1];
    victim?.crash();
    note("crashed payments-1 (no drain, no goodbye)");
    if (options.restart === false) return;
    await env.timers.sleep(Math.max(0, restartAt - crashAt));
    const reborn = make("payments-1", [payments]);
    nodes[1] = reborn;
    await reborn.start();
    note("restarted payments-1");
  };

  await Promise.all([...Array.from({ length: shoppers }, shopper), chaos()]);
  const failovers = gateway.stats.failovers;
  for (const n of [...nodes].reverse()) await n.stop();

  // ---- invariants ----
  const invariants: Array<{ name: string; ok: boolean; detail: string }> = [];
  const paidOrders = [...told].filter(([, s]) => s === "paid").map(([id]) => id);
  const lost = paidOrders.filter(
    (id) => book.orders.get(id)?.status !== "paid" || !ledger.byOrder.has(id),
  );
  invariants.push({
    name: "no lost paid order",
    ok: lost.length === 0,
    detail:
      lost.length === 0
        ? `${paidOrders.length} orders confirmed as paid: each recorded as paid and charged`
        : `${lost.length} confirmed orders missing or uncharged, e.g. ${lost.slice(0, 3).join(", ")}`,
  });
  const doubles = [...ledger.byOrder].filter(([, charges]) => charges.length > 1);
  const charges = [...ledger.byOrder.values()].reduce((n, c) => n + c.length, 0);
  invariants.push({
    name: "no double charge",
    ok: doubles.length === 0,
    detail:
      doubles.length === 0
        ? `${charges} charges for ${ledger.byOrder.size} orders`
        : `${doubles.length} orders charged more than once, e.g. ${doubles[0]?.[0]} x${doubles[0]?.[1].length}`,
  });
  let conserved = true;
  for (const [sku, initial] of stock.initial) {
    let held = 0;
    for (const r of stock.reservations.values()) if (r.sku === sku) held += r.qty;
    if ((stock.available.get(sku) ?? 0) + held !== initial) conserved = false;
  }
  invariants.push({
    name: "inventory never negative, stock conserved",
    ok: stock.lowWater >= 0 && conserved,
    detail: `lowest level ${stock.lowWater}; available + reserved = initial for every SKU: ${conserved}`,
  });

  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    durationMs: env.clock.now() - start,
    placed,
    paid,
    rejected,
    failed,
    failuresByCode,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? 0,
    failovers,
    timeline,
    invariants,
  };
}
