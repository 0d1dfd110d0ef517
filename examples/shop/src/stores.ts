import { KeelError } from "@keel/core";

/**
 * The example's "databases". Replicas of a service share one store, as real replicas share a
 * database; the invariant checks read them at the end.
 */

/** One charge in the payment provider's ledger. */
export interface Charge {
  readonly chargeId: string;
  readonly orderId: string;
  readonly amount: number;
  readonly idempotencyKey: string;
  readonly chargedBy: string;
}

/** The payment provider: dedupes by idempotency key, like real providers do. */
export class Ledger {
  readonly byKey = new Map<string, Charge>();
  readonly byOrder = new Map<string, Charge[]>();
  /** Idempotency keys voided by reconciliation: a late charge with one is refused. */
  readonly voided = new Set<string>();
  /** Told of every charge as it lands, with how many charges its order now has. */
  onCharge: ((charge: Charge, chargesForOrder: number) => void) | undefined;
  #next = 0;

  /** Charges once per idempotency key; a repeat returns the first charge. */
  charge(orderId: string, amount: number, idempotencyKey: string, node: string): Charge {
    if (this.voided.has(idempotencyKey)) {
      throw new KeelError("FAILED_PRECONDITION", "this charge was voided by reconciliation", {
        details: { idempotencyKey },
      });
    }
    const existing = this.byKey.get(idempotencyKey);
    if (existing !== undefined) {
      if (existing.orderId !== orderId || existing.amount !== amount) {
        throw new KeelError(
          "FAILED_PRECONDITION",
          "idempotency key reused for a different charge",
          {
            details: { idempotencyKey },
          },
        );
      }
      return existing;
    }
    return this.chargeWithoutKey(orderId, amount, idempotencyKey, node);
  }

  /**
   * Settles a charge whose outcome its caller never learned: `charged` if it landed, otherwise
   * `voided`, after which a late charge with the same key is refused. Repeats give the same answer.
   */
  settle(idempotencyKey: string): { outcome: "charged"; chargeId: string } | { outcome: "voided" } {
    const existing = this.byKey.get(idempotencyKey);
    if (existing !== undefined) return { outcome: "charged", chargeId: existing.chargeId };
    this.voided.add(idempotencyKey);
    return { outcome: "voided" };
  }

  /** What a buggy, non-idempotent handler would do. */
  chargeWithoutKey(orderId: string, amount: number, idempotencyKey: string, node: string): Charge {
    const charge: Charge = {
      chargeId: `ch_${++this.#next}`,
      orderId,
      amount,
      idempotencyKey,
      chargedBy: node,
    };
    this.byKey.set(idempotencyKey, charge);
    const list = this.byOrder.get(orderId) ?? [];
    list.push(charge);
    this.byOrder.set(orderId, list);
    this.onCharge?.(charge, list.length);
    return charge;
  }
}

/** Stock per SKU, with reservations per order. Never goes negative. */
export class Stock {
  readonly available = new Map<string, number>();
  readonly reservations = new Map<string, { sku: string; qty: number; committed: boolean }>();
  readonly initial = new Map<string, number>();
  /** Lowest stock level ever seen, to check the invariant over the whole run. */
  lowWater = Number.POSITIVE_INFINITY;

  constructor(initial: Record<string, number>) {
    for (const [sku, qty] of Object.entries(initial)) {
      this.available.set(sku, qty);
      this.initial.set(sku, qty);
      this.lowWater = Math.min(this.lowWater, qty);
    }
  }

  /** Orders whose reservation was released: a late reserve for one must not take stock again. */
  readonly released = new Set<string>();

  /** Reserves stock for an order; a repeat for the same order is a no-op. */
  reserve(orderId: string, sku: string, qty: number): void {
    if (this.reservations.has(orderId)) return;
    if (this.released.has(orderId)) {
      throw new KeelError("FAILED_PRECONDITION", `order ${orderId} was released already`);
    }
    const have = this.available.get(sku);
    if (have === undefined) throw new KeelError("NOT_FOUND", `unknown sku '${sku}'`);
    if (have < qty) {
      throw new KeelError("FAILED_PRECONDITION", `out of stock: ${sku}`, {
        details: { sku, available: have, qty },
      });
    }
    this.available.set(sku, have - qty);
    this.lowWater = Math.min(this.lowWater, have - qty);
    this.reservations.set(orderId, { sku, qty, committed: false });
  }

  /** Gives a reservation back; a repeat is a no-op. */
  release(orderId: string): void {
    this.released.add(orderId);
    const r = this.reservations.get(orderId);
    if (r === undefined || r.committed) return;
    this.reservations.delete(orderId);
    this.available.set(r.sku, (this.available.get(r.sku) ?? 0) + r.qty);
  }

  /** Marks a reservation as sold. */
  commit(orderId: string): void {
    const r = this.reservations.get(orderId);
    if (r !== undefined) r.committed = true;
  }
}

/** Order status as the orders service records it; `unknown` waits for reconciliation. */
export type OrderStatus = "pending" | "unknown" | "paid" | "rejected" | "failed";

/** The orders table. */
export class OrderBook {
  readonly orders = new Map<
    string,
    { status: OrderStatus; sku: string; qty: number; amount: number }
  >();
}
