/**
 * The shop as a simulation scenario: the real services on a simulated cluster under drawn faults.
 *
 *   npx keel sim examples/shop/src/simulation.ts --seeds 200
 *   npx keel sim examples/shop/src/simulation.ts --scenario buggy --seeds 300 --shrink
 *
 * Invariants: no paid order lost, no double charge, inventory never negative (and conserved), and,
 * once every fault is healed, every order consistent with payments.
 */
import { isKeelError, type KeelNode } from "@keel/core";
import { defineScenario, type Scenario, type Simulation } from "@keel/sim";
import { inventoryService, ordersService, PRICES, paymentsService } from "./services.ts";
import { Ledger, OrderBook, Stock } from "./stores.ts";

/** Options for {@link shopScenario}. */
export interface ShopScenarioOptions {
  /** Run the payments handler that ignores idempotency keys. */
  readonly buggyPayments?: boolean;
  /** Shoppers placing orders concurrently (default 4). */
  readonly shoppers?: number;
  /** Virtual ms of the safety phase (default 20000). */
  readonly safetyMs?: number;
}

interface ShopState {
  readonly ledger: Ledger;
  readonly stock: Stock;
  readonly book: OrderBook;
  readonly client: KeelNode;
  readonly orders: ReturnType<typeof ordersService>;
  /** What each shopper was told, per order. */
  readonly told: Map<string, "paid" | "rejected">;
  /** When the reconciler first saw each pending order. */
  readonly pendingSince: Map<string, number>;
}

const SERVERS = ["orders-1", "orders-2", "payments-1", "payments-2", "inventory-1", "inventory-2"];

/** A `pending` order older than this lost its handler (its node died): reconcile it too. */
const ORPHANED_MS = 5_000;

/**
 * Asks orders to settle every order whose outcome is unknown, and every order left pending by a
 * handler that died (as a periodic job would).
 */
async function reconcile(sim: Simulation, state: ShopState): Promise<void> {
  const open: string[] = [];
  for (const [id, o] of state.book.orders) {
    if (o.status === "unknown") open.push(id);
    else if (o.status === "pending") {
      const since = state.pendingSince.get(id);
      if (since === undefined) state.pendingSince.set(id, sim.now);
      else if (sim.now - since >= ORPHANED_MS) open.push(id);
    }
  }
  if (open.length === 0) return;
  await state.client.call(
    state.orders,
    "reconcile",
    { orderIds: open.slice(0, 1000) },
    { timeoutMs: 5000 },
  );
}

/** Orders not yet final: in a handler, or waiting for reconciliation. */
function unsettled(state: ShopState): number {
  let n = 0;
  for (const o of state.book.orders.values()) {
    if (o.status === "unknown" || o.status === "pending") n++;
  }
  return n;
}

/** Builds the shop scenario (the buggy variant with `buggyPayments`). */
export function shopScenario(options: ShopScenarioOptions = {}): Scenario<ShopState> {
  const shoppers = options.shoppers ?? 4;
  return defineScenario<ShopState>({
    name: options.buggyPayments === true ? "shop (buggy payments)" : "shop",
    safetyMs: options.safetyMs ?? 20_000,
    livenessMs: 15_000,
    ops: 200,
    faults: { protect: ["client"], maxDurationMs: 2000, ratePerSecond: 0.5 },
    async setup(sim: Simulation) {
      const ledger = new Ledger();
      // Checked as it happens, so the timeline shows the moment of a double charge.
      ledger.onCharge = (charge, count) =>
        sim.always(
          count === 1,
          "no double charge",
          () =>
            `order ${charge.orderId} charged ${count} times (this time by ${charge.chargedBy}, key ${charge.idempotencyKey})`,
        );
      const stock = new Stock({
        "espresso-beans": 1000,
        "pour-over-kettle": 1000,
        grinder: 1000,
        "limited-edition-mug": 15,
      });
      const book = new OrderBook();
      const inventory = inventoryService(stock);
      const payments = paymentsService(ledger, {
        buggyNotIdempotent: options.buggyPayments === true,
      });
      const orders = ordersService(book, inventory, payments);
      const hosted = { orders, payments, inventory };
      for (const id of SERVERS) {
        const kind = id.split("-")[0] as keyof typeof hosted;
        await sim.addNode(id, { services: [hosted[kind]] });
      }
      const client = (await sim.addNode("client")).node;
      await client.waitForEndpoints(orders, 2);
      return {
        ledger,
        stock,
        book,
        client,
        orders,
        told: new Map(),
        pendingSince: new Map(),
      };
    },

    async workload(sim, state, run) {
      const random = sim.random("shoppers");
      const skus = Object.keys(PRICES);
      let issued = 0;
      const shopper = async () => {
        while (!run.stopping && issued < run.ops) {
          issued++;
          const sku = skus[random.int(skus.length)] ?? "grinder";
          try {
            const res = await state.client.call(
              state.orders,
              "place",
              { sku, qty: 1 + random.int(2) },
              { timeoutMs: 3000 },
            );
            state.told.set(res.orderId, res.status);
            sim.sometimes(res.status === "rejected", "an order is rejected for lack of stock");
          } catch (err) {
            sim.sometimes(isKeelError(err), "an order fails under faults");
          }
          // Shoppers think between orders.
          await sim.sleep(200 + 800 * random.next());
        }
      };
      const reconciler = async () => {
        while (!run.stopping) {
          await sim.sleep(1000);
          await reconcile(sim, state).catch(() => undefined);
        }
      };
      await Promise.all([...Array.from({ length: shoppers }, shopper), reconciler()]);
      // Faults are healed now: keep reconciling until every order is final.
      while (unsettled(state) > 0) {
        await reconcile(sim, state).catch(() => undefined);
        if (unsettled(state) > 0) await sim.sleep(250);
      }
    },

    converged: (_sim, state) => unsettled(state) === 0,

    check(sim, state) {
      const { ledger, stock, book, told } = state;
      for (const [orderId, status] of told) {
        if (status !== "paid") continue;
        sim.always(
          book.orders.get(orderId)?.status === "paid" && ledger.byOrder.has(orderId),
          "no paid order lost",
          () => `order ${orderId} was confirmed as paid but is ${book.orders.get(orderId)?.status}`,
        );
      }
      for (const [orderId, charges] of ledger.byOrder) {
        sim.always(
          charges.length === 1,
          "no double charge",
          () => `order ${orderId} was charged ${charges.length} times`,
        );
      }
      sim.always(stock.lowWater >= 0, "inventory never negative", `lowest ${stock.lowWater}`);
      for (const [sku, initial] of stock.initial) {
        let held = 0;
        for (const r of stock.reservations.values()) if (r.sku === sku) held += r.qty;
        const available = stock.available.get(sku) ?? 0;
        sim.always(
          available + held === initial,
          "stock conserved",
          () => `${sku}: ${available} available + ${held} reserved != ${initial}`,
        );
      }
      for (const [orderId, order] of book.orders) {
        const charged = ledger.byOrder.has(orderId);
        const reserved = stock.reservations.has(orderId);
        const consistent =
          order.status === "paid"
            ? charged && reserved
            : order.status === "rejected" || order.status === "failed"
              ? !charged && !reserved
              : false;
        sim.always(
          consistent,
          "every order consistent with payments",
          () =>
            `order ${orderId} is ${order.status} but ${charged ? "charged" : "not charged"} and ${reserved ? "holds" : "holds no"} stock`,
        );
      }
      sim.sometimes(book.orders.size > 0, "orders were placed");
    },
  });
}

/** The shop as it should be. */
export default shopScenario();

/** The shop with a payments handler that charges again on a retry. */
export const buggy = shopScenario({ buggyPayments: true });
