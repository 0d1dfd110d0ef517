/**
 * The inventory service alone, for `keel start`: one process of the shop over NATS. Its stock
 * lives in this process's memory (as if it were this replica's database).
 * @example
 * npx keel start examples/shop/src/processes/inventory.ts --id inventory-1
 */
import { inventoryService } from "../services.ts";
import { Stock } from "../stores.ts";

/** The stock this process starts with. */
export const stock = new Stock({
  "espresso-beans": 100_000,
  "pour-over-kettle": 100_000,
  grinder: 100_000,
  "limited-edition-mug": 40,
});

/** What `keel start` hosts. */
export const services = [inventoryService(stock)];
