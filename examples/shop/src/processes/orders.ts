/**
 * The orders service alone, for `keel start`: one process of the shop over NATS. It calls
 * inventory and payments in other processes; the definitions below only type and route those
 * calls (their stores are never used here), and the `services` export hosts orders alone.
 * @example
 * npx keel start examples/shop/src/processes/orders.ts --id orders-1
 */
import { inventoryService, ordersService, paymentsService } from "../services.ts";
import { Ledger, OrderBook, Stock } from "../stores.ts";

/** The orders this process took. */
export const book = new OrderBook();

/** What `keel start` hosts: orders only. */
export const services = [
  ordersService(book, inventoryService(new Stock({})), paymentsService(new Ledger())),
];
