import { createServer, type Server } from "node:http";
import type { KeelNode } from "@keel/core";

/** The node's admin HTTP server: health probes for orchestrators. */
export interface AdminServer extends AsyncDisposable {
  /** The port it listens on (useful when started on port 0). */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `/health/live` (200 while the process runs) and `/health/ready` (200 when the node is
 * ready, 503 while it starts, drains or has stopped) on 127.0.0.1.
 */
export async function startAdminServer(node: KeelNode, port: number): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://localhost").pathname;
    const reply = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json", connection: "close" });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return reply(405, { error: "GET only" });
    if (path === "/health/live") return reply(200, { status: "live", node: node.id });
    if (path === "/health/ready") {
      const ready = node.state === "ready";
      return reply(ready ? 200 : 503, { status: node.state, node: node.id });
    }
    return reply(404, { error: "not found" });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
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
