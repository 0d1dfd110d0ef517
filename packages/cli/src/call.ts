import { hostname } from "node:os";
import {
  type AnyService,
  createNode,
  createRealEnv,
  defineService,
  isKeelError,
  KeelError,
  type StandardSchemaV1,
} from "@keel/core";
import { createNatsTransport } from "@keel/nats";
import { cliLogger } from "./log.ts";
import { codecOf } from "./start.ts";
import { EXIT, UsageError } from "./usage.ts";

/** Options of `keel call`, as parsed. */
export interface CallCommandOptions {
  readonly nats: string;
  readonly cluster?: string;
  readonly codec: "msgpack" | "json";
  readonly timeout: number;
  readonly version: number;
  readonly json: boolean;
}

/** A schema that accepts anything: the caller has no definition; the server validates. */
const passthrough: StandardSchemaV1<unknown, unknown> = {
  "~standard": { version: 1, vendor: "keel-cli", validate: (value) => ({ value }) },
};

const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/** Splits `service.action`, or throws a UsageError. */
export function parseTarget(target: string): { service: string; action: string } {
  const dot = target.indexOf(".");
  const service = target.slice(0, dot);
  const action = target.slice(dot + 1);
  if (dot === -1 || !NAME.test(service) || !NAME.test(action)) {
    throw new UsageError(`target must be <service>.<action>, e.g. orders.place; got '${target}'`);
  }
  return { service, action };
}

/** Parses the JSON input argument (default `{}`), or throws a UsageError. */
export function parseInput(text: string | undefined): unknown {
  if (text === undefined) return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`input is not valid JSON: ${(err as Error).message}`);
  }
}

/** A definition of one action of a remote service, enough to route and call it. */
function remoteDefinition(service: string, action: string, version: number): AnyService {
  return defineService(service, { version }).action(action, {
    input: passthrough,
    output: passthrough,
    handler: () => {
      throw new KeelError("INTERNAL", "keel call hosts nothing");
    },
  });
}

/**
 * `keel call <service.action> [json]`: joins as a short-lived client node, waits for an endpoint,
 * calls the action and prints the result. Returns the exit code.
 */
export async function call(
  target: string,
  inputText: string | undefined,
  options: CallCommandOptions,
): Promise<number> {
  const { service, action } = parseTarget(target);
  const input = parseInput(inputText);
  const env = createRealEnv();
  const log = cliLogger(options.json, env.clock, "warn");
  const id = `keel-cli-${hostname()}-${process.pid}`;
  const transport = createNatsTransport({
    nodeId: id,
    servers: options.nats.split(",").map((s) => s.trim()),
    env,
    logger: log.child({ component: "nats" }),
    connectTimeoutMs: Math.min(options.timeout, 5000),
    reconnect: false,
    ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
  });
  const node = createNode({
    id,
    env,
    transport,
    codec: codecOf(options.codec),
    logger: log,
  });
  const def = remoteDefinition(service, action, options.version);
  const deadline = performance.now() + options.timeout;
  try {
    await node.start();
    await node.waitForEndpoints(def, 1, Math.max(1, deadline - performance.now()));
    const result: unknown = await node.call(def, action, input, {
      timeoutMs: Math.max(1, Math.round(deadline - performance.now())),
    });
    process.stdout.write(
      `${options.json ? JSON.stringify(result ?? null) : JSON.stringify(result ?? null, null, 2)}\n`,
    );
    return EXIT.ok;
  } catch (err) {
    const e = isKeelError(err)
      ? err
      : new KeelError("INTERNAL", err instanceof Error ? err.message : String(err));
    if (options.json) {
      const error = { code: e.code, message: e.message, details: e.details ?? null };
      process.stdout.write(`${JSON.stringify({ error })}\n`);
    } else {
      const details = e.details === undefined ? "" : `\n${JSON.stringify(e.details, null, 2)}`;
      process.stderr.write(`${e.code}: ${e.message}${details}\n`);
    }
    return EXIT.failed;
  } finally {
    await node.stop({ graceMs: 0 }).catch(() => {});
  }
}
