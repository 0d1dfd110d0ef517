import type { IncomingMessage, ServerResponse } from "node:http";
import { KeelError } from "../errors/index.ts";
import type { KeelNode } from "../runtime/node.ts";

/** What serves `/metrics`: an exporter's text and its content type (`@keel/prometheus` has one). */
export interface MetricsEndpoint {
  /** The `content-type` of the exposition, e.g. `text/plain; version=0.0.4; charset=utf-8`. */
  readonly contentType: string;
  /** The exposition text at this moment. */
  render(): Promise<string> | string;
}

/** Options of `startAdminServer`. */
export interface AdminServerOptions {
  /** TCP port; 0 picks a free one (read it back from `port`). */
  readonly port: number;
  /** Interface to listen on (default `127.0.0.1`; `0.0.0.0` for probes from outside a pod). */
  readonly host?: string;
  /** Serves `GET /metrics` from this; without it `/metrics` answers 404. */
  readonly metrics?: MetricsEndpoint;
}

/** A node's running admin HTTP server. */
export interface AdminServer extends AsyncDisposable {
  /** The port it listens on (useful when started on port 0). */
  readonly port: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/**
 * Starts a node's admin HTTP server: `GET /health/live` (200 while the process answers),
 * `GET /health/ready` (200 when the node is ready, its transport connected and its registry
 * synced; 503 otherwise, draining included) and, with `metrics`, `GET /metrics`. Off unless
 * started: a library embedding Keel opens no port by itself; `keel start` starts one.
 * @example
 * const metrics = createPrometheusMetrics();
 * const node = createNode({ id: "a", transport, services, metrics });
 * await node.start();
 * await using admin = await startAdminServer(node, { port: 9464, metrics });
 */
export async function startAdminServer(
  node: KeelNode,
  options: AdminServerOptions,
): Promise<AdminServer> {
  const port = options?.port;
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) {
    throw new KeelError(
      "CONFIGURATION",
      `admin server port must be an integer from 0 to 65535, got ${String(port)}`,
    );
  }
  const host = options.host ?? "127.0.0.1";
  const metrics = options.metrics;
  // Loaded only when an admin server starts: node:http costs every node ~9 MB of memory otherwise.
  const { createServer } = await import("node:http");
  const server = createServer((req, res) => {
    handle(node, metrics, req, res).catch((err: unknown) => {
      // Only /metrics awaits anything: an exporter that throws gets a 500, never a crash.
      reply(res, 500, { error: String(err) });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const bound = typeof address === "object" && address !== null ? address.port : port;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return { port: bound, close, [Symbol.asyncDispose]: close };
}

function reply(res: ServerResponse, status: number, body: object): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(`${JSON.stringify(body)}\n`);
}

async function handle(
  node: KeelNode,
  metrics: MetricsEndpoint | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return reply(res, 405, { error: "GET only" });
  }
  if (path === "/health/live") return reply(res, 200, { status: "live", node: node.id });
  if (path === "/health/ready") {
    const h = node.health();
    return reply(res, h.ready ? 200 : 503, {
      status: h.ready ? "ready" : "not-ready",
      node: node.id,
      state: h.state,
      transport: h.transport,
      registrySynced: h.registrySynced,
    });
  }
  if (path === "/metrics" && metrics !== undefined) {
    const text = await metrics.render();
    res.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : text);
    return;
  }
  return reply(res, 404, { error: "not found" });
}
