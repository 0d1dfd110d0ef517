import { defineEvent, defineService, hasCode, KeelError } from "@keel/core";
import { z } from "zod";
import type { Ledger, OrderBook, Stock } from "./stores.ts";

/** Prices per SKU, in cents. */
export const PRICES: Readonly<Record<string, number>> = {
  "espresso-beans": 1450,
  "pour-over-kettle": 5900,
  grinder: 12900,
  "limited-edition-mug": 2500,
};

/** Emitted once an order is paid; inventory commits the reservation. */
export const orderPaid = defineEvent(
  "order.paid",
  z.object({ orderId: z.string(), sku: z.string(), qty: z.number().int().positive() }),
);

const OrderId = z.string().min(1);

// Schemas are built once, not per service definition: zod compiles each schema on first use, and a
// simulation defines the services again for every seed.
const ReserveIn = z.object({ orderId: OrderId, sku: z.string(), qty: z.number().int().positive() });
const ReserveOut = z.object({ reserved: z.literal(true) });
const ReleaseIn = z.object({ orderId: OrderId });
const ReleaseOut = z.object({ released: z.literal(true) });
const SettleIn = z.object({ idempotencyKey: z.string().min(1) });
const SettleOut = z.object({
  outcome: z.enum(["charged", "voided"]),
  chargeId: z.string().optional(),
});
const ChargeIn = z.object({ orderId: OrderId, amount: z.number().int().positive() });
const ChargeOut = z.object({ chargeId: z.string() });
const PlaceIn = z.object({
  sku: z.enum(Object.keys(PRICES) as [string, ...string[]]),
  qty: z.number().int().min(1).max(5),
});
const PlaceOut = z.object({
  orderId: z.string(),
  status: z.enum(["paid", "rejected"]),
  chargeId: z.string().optional(),
});
const ReconcileIn = z.object({ orderIds: z.array(z.string()).max(1000) });
const ReconcileOut = z.object({ paid: z.number().int(), failed: z.number().int() });

/** Inventory: reservations are keyed by order, so retries are harmless (idempotent). */
export function inventoryService(stock: Stock) {
  return defineService("inventory", { version: 1 })
    .action("reserve", {
      input: ReserveIn,
      output: ReserveOut,
      idempotent: true,
      handler: async ({ orderId, sku, qty }, ctx) => {
        await ctx.env.timers.sleep(1 + ctx.env.random.next(), ctx.signal);
        stock.reserve(orderId, sku, qty);
        return { reserved: true as const };
      },
    })
    .action("release", {
      input: ReleaseIn,
      output: ReleaseOut,
      idempotent: true,
      handler: ({ orderId }) => {
        stock.release(orderId);
        return { released: true as const };
      },
    })
    .on(orderPaid, ({ orderId }) => {
      stock.commit(orderId);
    });
}

/** Options for the payments service. */
export interface PaymentsOptions {
  /** Simulate a bug: charge without honouring the idempotency key. */
  readonly buggyNotIdempotent?: boolean;
}

/** Payments: a charge carries an idempotency key, so a retry on another replica never charges twice. */
export function paymentsService(ledger: Ledger, options: PaymentsOptions = {}) {
  return defineService("payments", { version: 1 })
    .action("settle", {
      input: SettleIn,
      output: SettleOut,
      idempotent: true,
      handler: ({ idempotencyKey }) => ledger.settle(idempotencyKey),
    })
    .action("charge", {
      input: ChargeIn,
      output: ChargeOut,
      idempotent: true,
      handler: async ({ orderId, amount }, ctx) => {
        const key = ctx.idempotencyKey;
        if (key === undefined)
          throw new KeelError("INVALID_ARGUMENT", "charge needs an idempotency key");
        // The provider takes a few milliseconds; the charge lands before the reply is sent.
        await ctx.env.timers.sleep(2 + 4 * ctx.env.random.next(), ctx.signal);
        const charge = options.buggyNotIdempotent
          ? ledger.chargeWithoutKey(orderId, amount, key, ctx.node)
          : ledger.charge(orderId, amount, key, ctx.node);
        // Recording the receipt: a crash here leaves a charge whose reply never left.
        await ctx.env.timers.sleep(1 + 2 * ctx.env.random.next(), ctx.signal);
        return { chargeId: charge.chargeId };
      },
    });
}

/**
 * Orders: reserve stock, charge, record, announce. An order whose charge outcome is unknown (the
 * reply was lost) waits for `reconcile`, which settles it with payments.
 */
export function ordersService(
  book: OrderBook,
  inventory: ReturnType<typeof inventoryService>,
  payments: ReturnType<typeof paymentsService>,
) {
  return defineService("orders", { version: 1 })
    .action("place", {
      input: PlaceIn,
      output: PlaceOut,
      handler: async ({ sku, qty }, ctx) => {
        const orderId = `o_${ctx.env.random.hex(6)}`;
        const amount = (PRICES[sku] ?? 0) * qty;
        book.orders.set(orderId, { status: "pending", sku, qty, amount });
        try {
          await ctx.call(inventory, "reserve", { orderId, sku, qty });
        } catch (err) {
          if (hasCode(err, "FAILED_PRECONDITION")) {
            book.orders.set(orderId, { status: "rejected", sku, qty, amount });
            return { orderId, status: "rejected" as const };
          }
          // The reservation may have landed: reconciliation releases it.
          book.orders.set(orderId, { status: "unknown", sku, qty, amount });
          throw err;
        }
        try {
          const { chargeId } = await ctx.call(
            payments,
            "charge",
            { orderId, amount },
            { idempotencyKey: `charge:${orderId}` },
          );
          book.orders.set(orderId, { status: "paid", sku, qty, amount });
          ctx.emit(orderPaid, { orderId, sku, qty });
          return { orderId, status: "paid" as const, chargeId };
        } catch (err) {
          // The charge may have landed even though no reply came back: leave the order to
          // reconciliation, which settles it with payments (charged, or voided for good).
          if (book.orders.get(orderId)?.status === "pending") {
            book.orders.set(orderId, { status: "unknown", sku, qty, amount });
          }
          throw err;
        }
      },
    })
    .action("reconcile", {
      input: ReconcileIn,
      output: ReconcileOut,
      idempotent: true,
      handler: async ({ orderIds }, ctx) => {
        let paid = 0;
        let failed = 0;
        for (const orderId of orderIds) {
          const order = book.orders.get(orderId);
          if (order === undefined || (order.status !== "unknown" && order.status !== "pending")) {
            continue;
          }
          const settled = await ctx.call(payments, "settle", {
            idempotencyKey: `charge:${orderId}`,
          });
          if (settled.outcome === "charged") {
            book.orders.set(orderId, { ...order, status: "paid" });
            ctx.emit(orderPaid, { orderId, sku: order.sku, qty: order.qty });
            paid++;
          } else {
            await ctx.call(inventory, "release", { orderId });
            book.orders.set(orderId, { ...order, status: "failed" });
            failed++;
          }
        }
        return { paid, failed };
      },
    });
}
