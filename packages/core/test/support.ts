import {
  type AnyService,
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  type InProcessNetwork,
  type KeelNode,
  type Logger,
  type NodeOptions,
  silentLogger,
  type VirtualEnv,
} from "../src/index.ts";

/** A captured promise outcome, so a test can look at it later without unhandled rejections. */
export interface Outcome<T> {
  done: boolean;
  value: T | undefined;
  error: unknown;
}

/** Starts observing a promise at once. */
export function capture<T>(promise: Promise<T>): Outcome<T> {
  const out: Outcome<T> = { done: false, value: undefined, error: undefined };
  promise.then(
    (v) => {
      out.done = true;
      out.value = v;
    },
    (e: unknown) => {
      out.done = true;
      out.error = e;
    },
  );
  return out;
}

/** A logger that keeps its lines for assertions. */
export function memoryLogger(): Logger & {
  lines: Array<{ level: string; obj: object; msg: string | undefined }>;
} {
  const lines: Array<{ level: string; obj: object; msg: string | undefined }> = [];
  // Errors keep their message when the line is turned into JSON.
  const plain = (obj: object): object =>
    Object.fromEntries(
      Object.entries(obj).map(([k, v]) => [
        k,
        v instanceof Error ? { message: v.message, code: (v as { code?: unknown }).code } : v,
      ]),
    );
  const make = (bindings: object): Logger => {
    const at = (level: string) => (obj: object, msg?: string) => {
      lines.push({ level, obj: plain({ ...bindings, ...obj }), msg });
    };
    return {
      trace: at("trace"),
      debug: at("debug"),
      info: at("info"),
      warn: at("warn"),
      error: at("error"),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return Object.assign(make({}), { lines });
}

/** A cluster on one in-process network and virtual time. */
export interface Cluster extends AsyncDisposable {
  readonly env: VirtualEnv;
  readonly network: InProcessNetwork;
  readonly nodes: Map<string, KeelNode>;
  add(id: string, services?: readonly AnyService[], options?: Partial<NodeOptions>): KeelNode;
  /** Starts every node added so far and lets discovery settle. */
  start(): Promise<void>;
}

/** Creates a cluster fixture; `await using` stops every node at the end. */
export function cluster(seed: number | string = 1): Cluster {
  const env = createVirtualEnv({ seed });
  const network = createInProcessNetwork({ env });
  const nodes = new Map<string, KeelNode>();
  return {
    env,
    network,
    nodes,
    add(id, services = [], options = {}) {
      const node = createNode({
        id,
        env,
        transport: network.transport(id),
        services,
        logger: silentLogger,
        ...options,
      });
      nodes.set(id, node);
      return node;
    },
    async start() {
      for (const n of nodes.values()) if (n.state === "created") await n.start();
      await env.advance(1);
    },
    async [Symbol.asyncDispose]() {
      const stopping = [...nodes.values()].map((n) => n.stop({ graceMs: 0 }));
      await env.advance(10);
      await Promise.all(stopping);
    },
  };
}

/** Counts AbortControllers created while `body` runs. */
export async function countControllers(body: () => Promise<void>): Promise<number> {
  const Original = globalThis.AbortController;
  let created = 0;
  globalThis.AbortController = class extends Original {
    constructor() {
      super();
      created++;
    }
  };
  try {
    await body();
  } finally {
    globalThis.AbortController = Original;
  }
  return created;
}

/** The nearest-rank percentile `p` (0..1) of `values`; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? Number.NaN;
}
