import type { Env, Random } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import { checkFaults, drawLatency, type LinkFaults } from "./faults.ts";
import { FrameQueue, type InboundFrame, type Transport } from "./transport.ts";

/** Counters of what the network did with frames. */
export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  /** Frames that met a partition. */
  blocked: number;
}

/** Options for the partition helpers. */
export interface PartitionOptions {
  /** Block only the direction from the first group to the second. */
  readonly oneWay?: boolean;
}

/** Many nodes in one process, with a fault model on every directed link. */
export interface InProcessNetwork {
  /** The transport for node `nodeId` (one per node id). */
  transport(nodeId: string): Transport;
  /** Node ids currently attached. */
  nodes(): string[];
  /** Sets the fault model for links with no model of their own. */
  setDefaultFaults(faults: LinkFaults): void;
  /** Sets the fault model of the directed link `from` → `to`. */
  setLink(from: string, to: string, faults: LinkFaults): void;
  /** Blocks traffic between two groups of nodes (both ways unless `oneWay`). */
  partition(a: readonly string[], b: readonly string[], options?: PartitionOptions): void;
  /** Cuts one node off from every other node, both ways, including nodes that join later. */
  isolate(nodeId: string): void;
  /** Removes every partition. */
  heal(): void;
  /** Removes every link fault model (latency, drop, duplicate). */
  clearFaults(): void;
  /**
   * Holds frames that arrive for `nodeId` until `resume` (a paused process reads nothing; the
   * frames wait in its socket buffer).
   */
  pause(nodeId: string): void;
  /** Delivers the frames held for a paused node, in arrival order, and stops holding. */
  resume(nodeId: string): void;
  /** Detaches a node as if its process died: frames in flight to it are lost. */
  crash(nodeId: string): void;
  /** Delivers raw bytes to `to` as if `from` sent them (for malformed-frame tests and chaos). */
  inject(from: string, to: string, frame: Uint8Array): void;
  readonly stats: Readonly<NetworkStats>;
}

/** Options for the in-process network. */
export interface InProcessNetworkOptions {
  readonly env: Env;
  /** Fault model for every link without its own (default: none, zero latency). */
  readonly faults?: LinkFaults;
}

const linkKey = (from: string, to: string) => `${from}\u0000${to}`;

/**
 * Creates an in-process network: the embedded default for one process, tests and simulation.
 * Latency, loss and duplication are drawn from the Env, so runs replay from a seed.
 */
export function createInProcessNetwork(options: InProcessNetworkOptions): InProcessNetwork {
  const { env } = options;
  const random: Random = env.random.split("network");
  const queues = new Map<string, FrameQueue>();
  const links = new Map<string, LinkFaults>();
  const blocked = new Set<string>();
  /** Per directed link: when its last frame is due, so an in-order link never lets one overtake. */
  const lastDue = new Map<string, number>();
  /** Per in-order link: frames scheduled but not yet delivered, oldest first. */
  const inFlight = new Map<string, InboundFrame[]>();
  /** Per sender: the receiver's link key, so routing a frame builds no string. */
  const keys = new Map<string, Map<string, string>>();
  const keyOf = (from: string, to: string): string => {
    let byTo = keys.get(from);
    if (byTo === undefined) {
      byTo = new Map();
      keys.set(from, byTo);
    }
    let key = byTo.get(to);
    if (key === undefined) {
      key = linkKey(from, to);
      byTo.set(to, key);
    }
    return key;
  };
  const isolated = new Set<string>();
  const held = new Map<string, InboundFrame[]>();
  let defaults: LinkFaults = checkFaults(options.faults ?? {});
  const stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, blocked: 0 };

  const deliver = (to: string, item: InboundFrame): void => {
    const queue = queues.get(to);
    if (queue === undefined || queue.closed) {
      stats.dropped++;
      return;
    }
    if (held.size > 0) {
      const waiting = held.get(to);
      if (waiting !== undefined) {
        waiting.push(item);
        return;
      }
    }
    stats.delivered++;
    queue.push(item);
  };

  const route = (from: string, to: string, frame: Uint8Array): void => {
    stats.sent++;
    const key = keyOf(from, to);
    if (
      (blocked.size > 0 && blocked.has(key)) ||
      (isolated.size > 0 && (isolated.has(from) || isolated.has(to)))
    ) {
      stats.blocked++;
      return;
    }
    const faults = links.size > 0 ? (links.get(key) ?? defaults) : defaults;
    if (faults.drop !== undefined && faults.drop > 0 && random.next() < faults.drop) {
      stats.dropped++;
      return;
    }
    const copies =
      faults.duplicate !== undefined && faults.duplicate > 0 && random.next() < faults.duplicate
        ? 2
        : 1;
    if (copies === 2) stats.duplicated++;
    // Receivers own their bytes: a sender reusing its buffer must not change a frame in flight.
    const item: InboundFrame = { from, frame };
    const now = env.clock.now();
    for (let i = 0; i < copies; i++) {
      let due = now + drawLatency(faults.latency, random);
      if (faults.reorder !== true && (faults.latency !== undefined || lastDue.size > 0)) {
        const last = lastDue.get(key);
        if (last !== undefined && last > due) due = last;
        lastDue.set(key, due);
        // Timers due at the same instant may fire in any order (the simulator breaks such ties at
        // random), so each one delivers the link's oldest frame in flight, not its own.
        let waiting = inFlight.get(key);
        if (waiting === undefined) {
          waiting = [];
          inFlight.set(key, waiting);
        }
        if (due <= now && waiting.length === 0) {
          deliver(to, item);
        } else {
          const queue = waiting;
          queue.push(item);
          env.timers.schedule(() => deliver(to, queue.shift() as InboundFrame), due - now);
        }
        continue;
      }
      if (due <= now) deliver(to, item);
      else env.timers.schedule(() => deliver(to, item), due - now);
    }
  };

  const transport = (nodeId: string): Transport => {
    let queue: FrameQueue | undefined;
    return {
      nodeId,
      connect() {
        const existing = queues.get(nodeId);
        if (existing !== undefined && !existing.closed) {
          return Promise.reject(
            new KeelError("CONFIGURATION", `node id '${nodeId}' is already on this network`),
          );
        }
        queue = new FrameQueue();
        queues.set(nodeId, queue);
        return Promise.resolve();
      },
      send(to, frame) {
        if (queue === undefined || queue.closed) return;
        route(nodeId, to, frame);
      },
      broadcast(frame) {
        if (queue === undefined || queue.closed) return;
        for (const to of queues.keys()) if (to !== nodeId) route(nodeId, to, frame);
      },
      close() {
        queue?.close();
        if (queues.get(nodeId) === queue) queues.delete(nodeId);
        return Promise.resolve();
      },
      [Symbol.asyncIterator]() {
        if (queue === undefined)
          throw new KeelError("CONFIGURATION", `transport of '${nodeId}' is not connected`);
        return queue[Symbol.asyncIterator]();
      },
    };
  };

  return {
    transport,
    nodes: () => [...queues.keys()],
    setDefaultFaults(faults) {
      defaults = checkFaults(faults);
    },
    setLink(from, to, faults) {
      links.set(linkKey(from, to), checkFaults(faults));
    },
    partition(a, b, partitionOptions = {}) {
      for (const x of a) {
        for (const y of b) {
          if (x === y) continue;
          blocked.add(linkKey(x, y));
          if (partitionOptions.oneWay !== true) blocked.add(linkKey(y, x));
        }
      }
    },
    isolate(nodeId) {
      isolated.add(nodeId);
    },
    heal() {
      blocked.clear();
      isolated.clear();
    },
    clearFaults() {
      links.clear();
      defaults = {};
    },
    pause(nodeId) {
      if (!held.has(nodeId)) held.set(nodeId, []);
    },
    resume(nodeId) {
      const waiting = held.get(nodeId);
      if (waiting === undefined) return;
      held.delete(nodeId);
      for (const item of waiting) deliver(nodeId, item);
    },
    crash(nodeId) {
      held.delete(nodeId);
      const queue = queues.get(nodeId);
      queue?.close();
      queues.delete(nodeId);
    },
    inject(from, to, frame) {
      deliver(to, { from, frame });
    },
    stats,
  };
}
