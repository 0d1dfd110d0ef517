import { hash32, type Random } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";
import type { BalancerName, CallOptions } from "./context-types.ts";
import type { Endpoint } from "./registry.ts";

/** Picks one endpoint among candidates; `exclude` holds nodes already tried by this call. */
export interface BalancerState {
  readonly random: Random;
  /** Round-robin cursors per routing key. */
  readonly cursors: Map<string, number>;
}

const score = (e: Endpoint) => (e.ewma + 1) * (e.inflight + 1);

function usable(
  list: readonly Endpoint[],
  exclude: ReadonlySet<string> | undefined,
): readonly Endpoint[] {
  if (exclude === undefined || exclude.size === 0) return list;
  return list.filter((e) => !exclude.has(e.node));
}

/** Chooses an endpoint with the named strategy, or undefined when none is usable. */
export function pick(
  strategy: BalancerName,
  key: string,
  all: readonly Endpoint[],
  state: BalancerState,
  exclude: ReadonlySet<string> | undefined,
  hashKey: string | undefined,
): Endpoint | undefined {
  if (strategy === "consistent-hash" && hashKey === undefined) {
    // Checked first: a missing key must fail the same way with one endpoint as with ten.
    throw new KeelError(
      "CONFIGURATION",
      "the consistent-hash balancer needs a 'hashKey' in the call options",
    );
  }
  const list = usable(all, exclude);
  const n = list.length;
  if (n === 0) return undefined;
  if (n === 1) return list[0];
  switch (strategy) {
    case "p2c": {
      // Power of two choices on EWMA latency x in-flight.
      const i = state.random.int(n);
      let j = state.random.int(n - 1);
      if (j >= i) j++;
      const a = list[i]!;
      const b = list[j]!;
      return score(b) < score(a) ? b : a;
    }
    case "round-robin": {
      const c = state.cursors.get(key) ?? 0;
      state.cursors.set(key, c + 1);
      return list[c % n];
    }
    case "consistent-hash": {
      if (hashKey === undefined) {
        throw new KeelError(
          "CONFIGURATION",
          "the consistent-hash balancer needs a 'hashKey' in the call options",
        );
      }
      // Rendezvous hashing: only the keys of a node that leaves move.
      let best = list[0]!;
      let bestScore = -1;
      for (const e of list) {
        const s = hash32(`${hashKey}\u0000${e.node}`);
        if (s > bestScore) {
          bestScore = s;
          best = e;
        }
      }
      return best;
    }
    case "prefer-local": {
      for (const e of list) if (e.local) return e;
      return pick("p2c", key, list, state, undefined, hashKey);
    }
    default:
      throw new KeelError("CONFIGURATION", `unknown balancer '${String(strategy)}'`);
  }
}

/** Draws a version from weights like `{ 1: 95, 2: 5 }`, among versions that have endpoints. */
export function pickVersion(
  weights: Readonly<Record<number, number>>,
  available: (version: number) => boolean,
  random: Random,
): number | undefined {
  let total = 0;
  const entries: Array<[number, number]> = [];
  for (const [v, w] of Object.entries(weights)) {
    const version = Number(v);
    if (w > 0 && available(version)) {
      entries.push([version, w]);
      total += w;
    }
  }
  if (entries.length === 0) return undefined;
  let r = random.next() * total;
  for (const [version, w] of entries) {
    r -= w;
    if (r < 0) return version;
  }
  return entries[entries.length - 1]![0];
}

const BALANCERS: ReadonlySet<string> = new Set<BalancerName>([
  "p2c",
  "round-robin",
  "consistent-hash",
  "prefer-local",
]);

/** Checks that `balancer` names a strategy; throws CONFIGURATION. */
export function checkBalancerName(balancer: string): void {
  if (!BALANCERS.has(balancer)) {
    throw new KeelError("CONFIGURATION", `unknown balancer '${String(balancer)}'`);
  }
}

/** Checks the routing part of call options; throws CONFIGURATION. */
export function checkRouting(options: CallOptions): void {
  const { balancer, versions, timeoutMs } = options;
  if (balancer !== undefined) checkBalancerName(balancer);
  if (balancer === "consistent-hash" && options.hashKey === undefined) {
    throw new KeelError(
      "CONFIGURATION",
      "the consistent-hash balancer needs a 'hashKey' in the call options",
    );
  }
  if (versions !== undefined) checkVersionWeights(versions);
  if (timeoutMs !== undefined && !(timeoutMs >= 0)) {
    throw new KeelError(
      "CONFIGURATION",
      `'timeoutMs' must be a number >= 0, got ${String(timeoutMs)}`,
    );
  }
}

/** Checks version weights at definition time. */
export function checkVersionWeights(weights: Readonly<Record<number, number>>): void {
  const entries = Object.entries(weights);
  if (!entries.some(([, w]) => w > 0)) {
    throw new KeelError("CONFIGURATION", "'versions' needs at least one version with a weight > 0");
  }
  for (const [v, w] of entries) {
    if (!Number.isInteger(Number(v)) || Number(v) < 1) {
      throw new KeelError("CONFIGURATION", `'versions' keys must be positive integers, got '${v}'`);
    }
    if (!(Number.isFinite(w) && w >= 0)) {
      throw new KeelError(
        "CONFIGURATION",
        `'versions' weight of version ${v} must be a number >= 0`,
      );
    }
  }
}
