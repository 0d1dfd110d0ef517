/**
 * A private nats-server for the benchmark: its own process on a free loopback port, with a temp
 * dir for its ports file and log; never a server the machine may already run on 4222. (The
 * tests' helper, packages/nats/test/nats-server.ts, does more; a bench cannot import across
 * projects' test folders.)
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** A running server; `stop()` ends it and removes its dir. */
export interface BenchNatsServer {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

const CANDIDATES = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"];

function binary(): string {
  const fromEnv = process.env["NATS_SERVER_BIN"];
  for (const bin of fromEnv === undefined ? [...CANDIDATES, "nats-server"] : [fromEnv]) {
    const probe = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 10_000 });
    if (probe.error === undefined && probe.status === 0) return bin;
  }
  throw new Error(
    "nats-server not found: install it (apt-get install nats-server) or set NATS_SERVER_BIN",
  );
}

/** Starts nats-server on a free loopback port (no JetStream); ready when this resolves. */
export async function startBenchNatsServer(): Promise<BenchNatsServer> {
  const dir = mkdtempSync(join(tmpdir(), "keel-bench-nats-"));
  const logFile = join(dir, "server.log");
  const out = openSync(logFile, "a");
  const child = spawn(binary(), ["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir], {
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const stop = async () => {
    process.off("exit", killOnExit);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const portsFile = join(dir, `nats-server_${child.pid}.ports`);
  for (let waited = 0; waited < 10_000; waited += 20) {
    if (child.exitCode !== null) break;
    if (existsSync(portsFile)) {
      try {
        const url = (JSON.parse(readFileSync(portsFile, "utf8")) as { nats?: string[] }).nats?.[0];
        if (url !== undefined) return { url, pid: child.pid ?? -1, stop };
      } catch {
        // written but not complete yet
      }
    }
    await sleep(20);
  }
  const log = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
  await stop();
  throw new Error(`nats-server did not start within 10 s:\n${log}`);
}
