import { hostname } from "node:os";
import {
  type AdminServer,
  type Codec,
  createNode,
  createRealEnv,
  jsonCodec,
  startAdminServer,
} from "@keel/core";
import { msgpackCodec } from "@keel/core/msgpack";
import { createNatsTransport, serveDiscovery } from "@keel/nats";
import { cliLogger, type LogLevels } from "./log.ts";
import { loadServices } from "./services.ts";
import { EXIT } from "./usage.ts";

/** Options of `keel start`, as parsed. */
export interface StartOptions {
  readonly nats: string;
  readonly id?: string;
  readonly cluster?: string;
  readonly codec: "msgpack" | "json";
  readonly adminPort?: number;
  /** Interface of the admin server (default 127.0.0.1). */
  readonly adminHost?: string;
  readonly graceMs?: number;
  readonly json: boolean;
  /** `--log-level`: the base level and levels per module. */
  readonly log?: LogLevels;
}

/** The codec named on the command line. */
export function codecOf(name: "msgpack" | "json"): Codec {
  return name === "json" ? jsonCodec : msgpackCodec;
}

/**
 * `keel start <module>`: hosts the module's services on a node over NATS until SIGTERM or SIGINT,
 * then drains and exits 0. Resolves only when the process should exit, with its exit code.
 */
export async function start(modulePath: string, options: StartOptions): Promise<number> {
  const services = await loadServices(modulePath);
  const env = createRealEnv();
  const log = cliLogger(options.json, env.clock, options.log?.level, options.log?.levels);
  const id = options.id ?? `${hostname()}-${process.pid}`;
  const cluster = options.cluster === undefined ? {} : { cluster: options.cluster };
  const transport = createNatsTransport({
    nodeId: id,
    servers: options.nats.split(",").map((s) => s.trim()),
    env,
    logger: log.child({ module: "keel.nats" }),
    ...cluster,
  });
  // Metrics are recorded when the admin server can serve them at /metrics. prom-client is loaded
  // only then, so `keel call` and `keel sim` do not pay for it at startup.
  const metrics =
    options.adminPort === undefined
      ? undefined
      : (await import("@keel/prometheus")).createPrometheusMetrics();
  const node = createNode({
    id,
    env,
    transport,
    ...(metrics === undefined ? {} : { metrics }),
    codec: codecOf(options.codec),
    services,
    logger: log,
    ...(options.graceMs === undefined ? {} : { drainGraceMs: options.graceMs }),
  });

  let admin: AdminServer | undefined;
  let signals = 0;
  let stopping: Promise<void> | undefined;
  const { promise: exited, resolve: exit } = Promise.withResolvers<number>();

  const stop = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, "second signal: exiting without draining");
      process.exit(128 + (signal === "SIGINT" ? 2 : 15));
    }
    log.info({ signal, node: id }, "draining");
    stopping = (async () => {
      let code: number = EXIT.ok;
      try {
        await node.stop();
        log.info({ node: id }, "stopped");
      } catch (err) {
        log.error({ err }, "stop failed");
        code = EXIT.failed;
      }
      await admin?.close();
      metrics?.close();
      exit(code);
    })();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  try {
    if (options.adminPort !== undefined) {
      admin = await startAdminServer(node, {
        port: options.adminPort,
        ...(options.adminHost === undefined ? {} : { host: options.adminHost }),
        ...(metrics === undefined ? {} : { metrics }),
      });
    }
    await node.start();
    if (stopping === undefined) {
      serveDiscovery(transport.connection(), {
        node,
        services,
        logger: log.child({ module: "keel.srv" }),
        ...cluster,
      });
    }
  } catch (err) {
    log.error({ err }, "start failed");
    await node.stop({ graceMs: 0 }).catch(() => {});
    await admin?.close();
    metrics?.close();
    return EXIT.failed;
  }
  log.info(
    {
      node: id,
      nats: options.nats,
      services: services.map((s) => s.key),
      ...(admin === undefined ? {} : { adminPort: admin.port }),
    },
    "ready",
  );
  return exited;
}
