/**
 * A private nats-server for tests: its own process, a free loopback port and a temp dir, never the
 * server a machine may already run on 4222.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** Options for a private server. */
export interface NatsServerOptions {
  /** TLS: server certificate and key (PEM files); `verifyCa` also requires client certificates. */
  readonly tls?: { readonly cert: string; readonly key: string; readonly verifyCa?: string };
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
  /** Contents of a configuration file (e.g. NKEY users); command-line flags still apply. */
  readonly config?: string;
  /** JetStream on, stored in the temp dir (default true). */
  readonly jetstream?: boolean;
}

/** A running private server. `await using` stops it and removes its dir. */
export interface NatsServer extends AsyncDisposable {
  readonly port: number;
  /** `nats://127.0.0.1:<port>` (or `tls://...` with TLS). */
  readonly url: string;
  /** The temp dir: store, log and anything a test puts there. */
  readonly dir: string;
  readonly running: boolean;
  /** Stops the process (SIGTERM, then SIGKILL after `timeoutMs`); the dir stays. */
  stop(timeoutMs?: number): Promise<void>;
  /** Starts it again on the same port and store, after `stop()`. */
  start(): Promise<void>;
  /** Stops, waits `downMs`, starts again on the same port. */
  restart(downMs?: number): Promise<void>;
  /** The server's log so far (for failure messages). */
  log(): string;
}

const CANDIDATES = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

/** The nats-server binary, or a clear failure. */
export function natsServerBinary(): string {
  const fromEnv = process.env["NATS_SERVER_BIN"];
  const candidates = fromEnv === undefined ? [...CANDIDATES, "nats-server"] : [fromEnv];
  for (const bin of candidates) {
    const probe = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 10_000 });
    if (probe.error === undefined && probe.status === 0) return bin;
  }
  throw new Error(
    "nats-server not found (looked for /usr/sbin/nats-server and on PATH): install nats-server: apt-get install nats-server",
  );
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", onExit);
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    socket.setTimeout(1000);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
    socket.once("timeout", () => done(false));
  });
}

/** Starts a private nats-server on a free loopback port; it is ready when this resolves. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const bin = natsServerBinary();
  const dir = mkdtempSync(join(tmpdir(), "keel-nats-"));
  const logFile = join(dir, "server.log");
  let configFile: string | undefined;
  if (options.config !== undefined) {
    configFile = join(dir, "server.conf");
    writeFileSync(configFile, options.config);
  }
  let child: ChildProcess | undefined;
  let port = -1; // the first start takes a free port; later ones reuse it

  const args = (): string[] => [
    ...(configFile === undefined ? [] : ["-c", configFile]),
    "-a",
    "127.0.0.1",
    "-p",
    String(port),
    "--ports_file_dir",
    dir,
    ...(options.jetstream === false ? [] : ["-js", "-sd", join(dir, "store")]),
    ...(options.user === undefined ? [] : ["--user", options.user]),
    ...(options.pass === undefined ? [] : ["--pass", options.pass]),
    ...(options.token === undefined ? [] : ["--auth", options.token]),
    ...(options.tls === undefined
      ? []
      : [
          "--tls",
          "--tlscert",
          options.tls.cert,
          "--tlskey",
          options.tls.key,
          ...(options.tls.verifyCa === undefined
            ? []
            : ["--tlsverify", "--tlscacert", options.tls.verifyCa]),
        ]),
  ];

  const log = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");

  const start = async (): Promise<void> => {
    if (child !== undefined) throw new Error("nats-server is already running");
    const out = openSync(logFile, "a");
    const proc = spawn(bin, args(), { stdio: ["ignore", out, out] });
    closeSync(out);
    child = proc;
    const portsFile = join(dir, `nats-server_${proc.pid}.ports`);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        child = undefined;
        throw new Error(
          `nats-server exited during start (${proc.exitCode ?? proc.signalCode}):\n${log()}`,
        );
      }
      if (existsSync(portsFile)) {
        try {
          const ports = JSON.parse(readFileSync(portsFile, "utf8")) as { nats?: string[] };
          const url = ports.nats?.[0];
          if (url !== undefined) {
            port = Number(new URL(url).port);
            if (await canConnect(port)) return;
          }
        } catch {
          // written but not complete yet
        }
      }
      await sleep(20);
    }
    proc.kill("SIGKILL");
    child = undefined;
    throw new Error(`nats-server did not accept connections within 10 s:\n${log()}`);
  };

  const stop = async (timeoutMs = 5000): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    child = undefined;
    proc.kill("SIGTERM");
    if (!(await waitForExit(proc, timeoutMs))) {
      proc.kill("SIGKILL");
      await waitForExit(proc, 5000);
    }
  };

  // A test process that dies must not leave its server behind.
  const killOnExit = () => child?.kill("SIGKILL");
  process.once("exit", killOnExit);
  try {
    await start();
  } catch (err) {
    process.off("exit", killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const scheme = options.tls === undefined ? "nats" : "tls";
  return {
    get port() {
      return port;
    },
    get url() {
      return `${scheme}://127.0.0.1:${port}`;
    },
    dir,
    get running() {
      return child !== undefined;
    },
    stop,
    start,
    async restart(downMs = 0) {
      await stop();
      if (downMs > 0) await sleep(downMs);
      await start();
    },
    log,
    async [Symbol.asyncDispose]() {
      await stop();
      process.off("exit", killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
