import type { ServiceAnnouncement } from "../wire/index.ts";

/** One node hosting one `service@version`, with the stats the balancer reads. */
export interface Endpoint {
  readonly node: string;
  readonly service: string;
  readonly version: number;
  readonly local: boolean;
  /** Calls sent to this endpoint and not yet answered. */
  inflight: number;
  /** Exponentially weighted moving average of latency, in ms (0 until the first reply). */
  ewma: number;
}

/** What the registry knows of a node. */
export interface NodeRecord {
  readonly id: string;
  readonly local: boolean;
  /** Changes each time the node starts. */
  readonly incarnation: string;
  /** Largest frame the node accepts, if it said. */
  readonly maxFrameBytes: number | undefined;
  seq: number;
  state: "ready" | "draining";
  /** Monotonic time of the last frame heard from it. */
  lastSeen: number;
  services: readonly ServiceAnnouncement[];
}

/** A change in cluster membership, as seen by one node. */
export type RegistryEvent =
  | { readonly kind: "node-up"; readonly node: string }
  | { readonly kind: "node-updated"; readonly node: string }
  | {
      readonly kind: "node-down";
      readonly node: string;
      readonly reason: NodeDownReason;
    };

/** Why a node left the registry: it said goodbye, went silent, or came back as a new incarnation. */
export type NodeDownReason = "left" | "failed" | "restarted";

/** Read-only view of a node's registry. */
export interface RegistryView {
  /** Ids of the nodes known to be alive (this one included). */
  nodes(): string[];
  /** The node's record, if known. */
  node(id: string): Readonly<NodeRecord> | undefined;
  /** Endpoints of `service@version` that take new calls (ready nodes only). */
  endpoints(service: string, version: number): readonly Readonly<Endpoint>[];
  /** Versions of `service` with at least one ready endpoint. */
  versions(service: string): number[];
  /** Listens to membership changes; returns an unsubscribe function. */
  onChange(listener: (event: RegistryEvent) => void): () => void;
}

const EWMA_ALPHA = 0.3;

function getOrCreate<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = make();
    map.set(key, value);
  }
  return value;
}

/** Who hosts what: learned from announcements, heartbeats and leaves. */
export class Registry implements RegistryView {
  readonly #nodes = new Map<string, NodeRecord>();
  /** Stable endpoint objects, so stats survive re-announcements. */
  readonly #all = new Map<string, Endpoint>();
  /** `service@version` → ready endpoints; rebuilt on every change. */
  #ready = new Map<string, Endpoint[]>();
  /** event name → subscribing service → node ids (ready nodes). */
  #subscribers = new Map<string, Map<string, string[]>>();
  /** Bumped by every rebuild: what a cache of routes compares against. */
  #generation = 0;
  readonly #listeners = new Set<(event: RegistryEvent) => void>();

  nodes(): string[] {
    return [...this.#nodes.keys()];
  }

  node(id: string): NodeRecord | undefined {
    return this.#nodes.get(id);
  }

  endpoints(service: string, version: number): readonly Endpoint[] {
    return this.#ready.get(`${service}@${version}`) ?? [];
  }

  /** Changes whenever the ready endpoints may have changed. */
  get generation(): number {
    return this.#generation;
  }

  /** Ready endpoints by routing key `service@version`. */
  endpointsByKey(key: string): readonly Endpoint[] | undefined {
    return this.#ready.get(key);
  }

  versions(service: string): number[] {
    const out = new Set<number>();
    for (const [key, eps] of this.#ready) {
      const at = key.lastIndexOf("@");
      if (key.slice(0, at) === service && eps.length > 0) out.add(Number(key.slice(at + 1)));
    }
    return [...out].sort((a, b) => a - b);
  }

  /** For each service subscribed to `event`: the ready nodes hosting it. */
  subscribers(event: string): ReadonlyMap<string, readonly string[]> | undefined {
    return this.#subscribers.get(event);
  }

  onChange(listener: (event: RegistryEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Records an announcement; returns true if the node was new. */
  upsert(announced: Omit<NodeRecord, "lastSeen">, now: number): boolean {
    const { id, seq, state, services } = announced;
    const existing = this.#nodes.get(id);
    if (existing !== undefined && existing.incarnation !== announced.incarnation) {
      this.remove(id, "restarted");
    } else if (existing !== undefined) {
      existing.lastSeen = now;
      if (seq < existing.seq) return false; // a late, older announce
      const changed = seq !== existing.seq || state !== existing.state;
      existing.seq = seq;
      existing.state = state;
      existing.services = services;
      if (changed) {
        this.#rebuild();
        this.#notify({ kind: "node-updated", node: id });
      }
      return false;
    }
    this.#nodes.set(id, { ...announced, lastSeen: now });
    this.#rebuild();
    this.#notify({ kind: "node-up", node: id });
    return true;
  }

  /** Notes that a node was heard from. Returns false if the node is unknown. */
  touch(id: string, now: number): NodeRecord | undefined {
    const rec = this.#nodes.get(id);
    if (rec !== undefined) rec.lastSeen = now;
    return rec;
  }

  remove(id: string, reason: NodeDownReason): boolean {
    if (!this.#nodes.delete(id)) return false;
    for (const [key, ep] of this.#all) if (ep.node === id) this.#all.delete(key);
    this.#rebuild();
    this.#notify({ kind: "node-down", node: id, reason });
    return true;
  }

  /** Remote nodes not heard from since `before`. */
  silentSince(before: number): string[] {
    const out: string[] = [];
    for (const rec of this.#nodes.values())
      if (!rec.local && rec.lastSeen < before) out.push(rec.id);
    return out;
  }

  /** Records a reply's latency on an endpoint. */
  static observe(endpoint: Endpoint, latencyMs: number): void {
    endpoint.ewma =
      endpoint.ewma === 0 ? latencyMs : endpoint.ewma + EWMA_ALPHA * (latencyMs - endpoint.ewma);
  }

  #rebuild(): void {
    const ready = new Map<string, Endpoint[]>();
    const subs = new Map<string, Map<string, string[]>>();
    for (const rec of this.#nodes.values()) {
      if (rec.state !== "ready") continue;
      for (const s of rec.services) {
        const key = `${s.name}@${s.version}`;
        const epKey = `${rec.id}\u0000${key}`;
        let ep = this.#all.get(epKey);
        if (ep === undefined) {
          ep = {
            node: rec.id,
            service: s.name,
            version: s.version,
            local: rec.local,
            inflight: 0,
            ewma: 0,
          };
          this.#all.set(epKey, ep);
        }
        getOrCreate(ready, key, () => []).push(ep);
        for (const event of s.events) {
          const nodes = getOrCreate(
            getOrCreate(subs, event, () => new Map<string, string[]>()),
            s.name,
            () => [],
          );
          if (!nodes.includes(rec.id)) nodes.push(rec.id);
        }
      }
    }
    // Sorted so that every node sees the same order (round-robin and hashing agree).
    for (const list of ready.values())
      list.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    for (const bySvc of subs.values()) for (const nodes of bySvc.values()) nodes.sort();
    this.#ready = ready;
    this.#subscribers = subs;
    this.#generation++;
  }

  #notify(event: RegistryEvent): void {
    for (const l of this.#listeners) l(event);
  }
}
