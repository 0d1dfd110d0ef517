/**
 * The payments service alone, for `keel start`: one process of the shop over NATS. Its ledger
 * lives in this process's memory, so replicas do not share charges (see docs/nats.md).
 * @example
 * npx keel start examples/shop/src/processes/payments.ts --id payments-1
 */
import { paymentsService } from "../services.ts";
import { Ledger } from "../stores.ts";

/** What `keel start` hosts. */
export const services = [paymentsService(new Ledger())];
