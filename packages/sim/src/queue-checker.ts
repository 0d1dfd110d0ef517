/**
 * A checker for queues and streams: were acknowledged messages delivered, delivered once, and in
 * each producer's order?
 * @module
 */

/** A message a producer sent. */
export interface SentMessage {
  /** Unique across the history. */
  readonly id: string;
  readonly producer: string;
  /** Whether the broker acknowledged the send. Only acknowledged messages must be delivered. */
  readonly acked: boolean;
}

/** One delivery of a message to a consumer. */
export interface Delivery {
  readonly id: string;
  readonly consumer: string;
}

/** What a messaging workload saw. */
export interface QueueHistory {
  /** Sends, in the order each producer sent them (FIFO is judged against this order). */
  readonly sends: readonly SentMessage[];
  /** Deliveries, in the order each consumer received them (consumers may interleave). */
  readonly deliveries: readonly Delivery[];
}

/** Options of `checkQueue`: the guarantee the system claims. */
export interface QueueCheckOptions {
  /**
   * `at-least-once`: no acknowledged message is lost (duplicates are reported but allowed).
   * `exactly-once`: no acknowledged message is lost and none is delivered twice.
   */
  readonly guarantee: "at-least-once" | "exactly-once";
  /** Also require each consumer to see each producer's messages in the order they were sent. */
  readonly fifo?: boolean;
  /**
   * `shared` (default): consumers compete, each message is due to one of them. `broadcast`:
   * every consumer is due every message (fan-out, one durable subscription each).
   */
  readonly consumers?: "shared" | "broadcast";
  /** With `broadcast`: the consumers due every message (default: those that received anything). */
  readonly expectedConsumers?: readonly string[];
}

/** An acknowledged message never delivered (to `consumer`, in broadcast mode). */
export interface LostMessage {
  readonly id: string;
  readonly producer: string;
  readonly consumer?: string;
}

/** A message delivered more than once (to `consumer`, in broadcast mode). */
export interface DuplicatedMessage {
  readonly id: string;
  readonly count: number;
  readonly consumer?: string;
}

/** A message a consumer first received after a later message of the same producer. */
export interface Reordering {
  readonly consumer: string;
  readonly producer: string;
  readonly id: string;
  /** The later-sent message it came after. */
  readonly after: string;
}

/** The checker's findings. Everything found is listed; `ok` says whether the guarantee held. */
export interface QueueCheckResult {
  readonly ok: boolean;
  /** Which of the findings break the claimed guarantee. */
  readonly violations: readonly ("lost" | "duplicated" | "reordered" | "unexpected")[];
  readonly lost: readonly LostMessage[];
  readonly duplicated: readonly DuplicatedMessage[];
  readonly reordered: readonly Reordering[];
  /** Deliveries of messages nobody sent. Always a violation. */
  readonly unexpected: readonly Delivery[];
  readonly stats: {
    readonly sent: number;
    readonly acked: number;
    readonly deliveries: number;
    /** Distinct messages delivered at least once. */
    readonly delivered: number;
  };
}

/**
 * Checks a messaging history against a delivery guarantee.
 * @example
 * const result = checkQueue(
 *   { sends: [{ id: "m1", producer: "p", acked: true }], deliveries: [] },
 *   { guarantee: "at-least-once" },
 * );
 * result.lost; // [{ id: "m1", producer: "p" }]
 */
export function checkQueue(history: QueueHistory, options: QueueCheckOptions): QueueCheckResult {
  const broadcast = options.consumers === "broadcast";
  const sends = new Map<string, { readonly message: SentMessage; readonly index: number }>();
  const perProducer = new Map<string, number>();
  let acked = 0;
  for (const message of history.sends) {
    if (sends.has(message.id)) {
      throw new RangeError(`checkQueue: message id ${JSON.stringify(message.id)} sent twice`);
    }
    const index = perProducer.get(message.producer) ?? 0;
    perProducer.set(message.producer, index + 1);
    sends.set(message.id, { message, index });
    if (message.acked) acked++;
  }

  const unexpected: Delivery[] = [];
  // Deliveries counted per message (shared) or per consumer and message (broadcast).
  const counts = new Map<string, Map<string, number>>();
  const count = (scope: string, id: string): number => {
    let scoped = counts.get(scope);
    if (scoped === undefined) {
      scoped = new Map();
      counts.set(scope, scoped);
    }
    const n = (scoped.get(id) ?? 0) + 1;
    scoped.set(id, n);
    return n;
  };
  const reordered: Reordering[] = [];
  // Per consumer and producer: the latest-sent message seen so far.
  const latest = new Map<string, Map<string, { index: number; id: string }>>();
  const seenBy = new Map<string, Set<string>>();
  const delivered = new Set<string>();
  for (const delivery of history.deliveries) {
    const sent = sends.get(delivery.id);
    if (sent === undefined) {
      unexpected.push(delivery);
      continue;
    }
    delivered.add(delivery.id);
    count(broadcast ? delivery.consumer : "", delivery.id);
    let seen = seenBy.get(delivery.consumer);
    if (seen === undefined) {
      seen = new Set();
      seenBy.set(delivery.consumer, seen);
    }
    if (seen.has(delivery.id)) continue; // a redelivery: counted above, not an ordering fact
    seen.add(delivery.id);
    let byProducer = latest.get(delivery.consumer);
    if (byProducer === undefined) {
      byProducer = new Map();
      latest.set(delivery.consumer, byProducer);
    }
    const { producer } = sent.message;
    const last = byProducer.get(producer);
    if (last !== undefined && sent.index < last.index) {
      reordered.push({ consumer: delivery.consumer, producer, id: delivery.id, after: last.id });
    } else {
      byProducer.set(producer, { index: sent.index, id: delivery.id });
    }
  }

  const duplicated: DuplicatedMessage[] = [];
  for (const [scope, scoped] of counts) {
    for (const [id, n] of scoped) {
      if (n > 1) duplicated.push(broadcast ? { id, count: n, consumer: scope } : { id, count: n });
    }
  }

  const lost: LostMessage[] = [];
  const due = broadcast ? (options.expectedConsumers ?? [...seenBy.keys()]) : [""];
  for (const { message } of sends.values()) {
    if (!message.acked) continue;
    for (const consumer of due) {
      const got = broadcast
        ? (seenBy.get(consumer)?.has(message.id) ?? false)
        : delivered.has(message.id);
      if (!got) {
        lost.push(
          broadcast
            ? { id: message.id, producer: message.producer, consumer }
            : { id: message.id, producer: message.producer },
        );
      }
    }
  }

  const violations: QueueCheckResult["violations"][number][] = [];
  if (lost.length > 0) violations.push("lost");
  if (options.guarantee === "exactly-once" && duplicated.length > 0) violations.push("duplicated");
  if (options.fifo === true && reordered.length > 0) violations.push("reordered");
  if (unexpected.length > 0) violations.push("unexpected");
  return {
    ok: violations.length === 0,
    violations,
    lost,
    duplicated,
    reordered,
    unexpected,
    stats: {
      sent: sends.size,
      acked,
      deliveries: history.deliveries.length,
      delivered: delivered.size,
    },
  };
}

/** A readable report of a queue check. */
export function describeQueueCheck(result: QueueCheckResult, limit = 10): string {
  const { stats } = result;
  const lines = [
    `${result.ok ? "ok" : `violated: ${result.violations.join(", ")}`} (${stats.sent} sent, ${stats.acked} acked, ${stats.deliveries} deliveries of ${stats.delivered} messages)`,
  ];
  const list = <T>(title: string, items: readonly T[], show: (item: T) => string) => {
    if (items.length === 0) return;
    lines.push(`  ${title} (${items.length}):`);
    for (const item of items.slice(0, limit)) lines.push(`    ${show(item)}`);
    if (items.length > limit) lines.push(`    … and ${items.length - limit} more`);
  };
  const to = (consumer: string | undefined) => (consumer === undefined ? "" : ` to ${consumer}`);
  list("lost", result.lost, (m) => `${m.id} from ${m.producer}${to(m.consumer)}`);
  list("duplicated", result.duplicated, (m) => `${m.id} ×${m.count}${to(m.consumer)}`);
  list(
    "reordered",
    result.reordered,
    (r) => `${r.consumer} got ${r.id} after ${r.after} (both from ${r.producer})`,
  );
  list("unexpected", result.unexpected, (d) => `${d.id} delivered to ${d.consumer}, never sent`);
  return lines.join("\n");
}
