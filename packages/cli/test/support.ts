/**
 * Helpers for tests that run the `keel` command as a child process: spawn it bounded in time,
 * collect its output, find a free port, and poll for a condition. Every child is tracked so
 * `killAll()` can end it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type * as NatsServerModule from "../../nats/test/nats-server.ts";

// The helper lives in another tsc project, whose import path tsc cannot rewrite: load it by URL.
const natsServerModule = (await import(
  new URL("../../nats/test/nats-server.ts", import.meta.url).href
)) as typeof NatsServerModule;

/** Starts a private nats-server (see packages/nats/test/nats-server.ts). */
export const startNatsServer = natsServerModule.startNatsServer;
export type NatsServer = NatsServerModule.NatsServer;

/** The `keel` command's entry point. */
export const KEEL_MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url));

/** How a child process ended, with what it printed. */
export interface Result {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running `keel` child. */
export interface CliProcess {
  readonly child: ChildProcess;
  readonly done: Promise<Result>;
  output(): { stdout: string; stderr: string };
}

const children = new Set<ChildProcess>();
// The children see no KEEL_* settings of the shell running the tests, and a node's admin server
// takes any free port (tests run in parallel: the default 9464 would collide).
const cleanEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KEEL_"))),
  KEEL_ADMIN_PORT: "0",
};

/** Spawns `program <args>` from `cwd`; the child is killed if it outlives `timeoutMs`. */
export function spawnProgram(
  program: string,
  args: readonly string[],
  timeoutMs = 15_000,
  cwd: string | undefined = undefined,
): CliProcess {
  const child = spawn(program, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: cleanEnv,
    ...(cwd === undefined ? {} : { cwd }),
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    stdout += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const done = new Promise<Result>((resolve) => {
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done, output: () => ({ stdout, stderr }) };
}

/** Spawns `keel <args>` on this Node, from `cwd`; the child is killed if it outlives `timeoutMs`. */
export const spawnCli = (args: readonly string[], timeoutMs?: number, cwd?: string): CliProcess =>
  spawnProgram(process.execPath, [KEEL_MAIN, ...args], timeoutMs, cwd);

/** Runs `keel <args>` to the end. */
export const runCli = (args: readonly string[], timeoutMs?: number, cwd?: string) =>
  spawnCli(args, timeoutMs, cwd).done;

/** Kills every child still running (for `after`). */
export function killAll(): void {
  for (const child of children) child.kill("SIGKILL");
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

/** Polls `probe` every 25 ms until it holds; fails after `timeoutMs` with `what()`. */
export async function until(
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: () => string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await probe())) {
    if (performance.now() > deadline) throw new Error(`timed out: ${what()}`);
    await sleep(25);
  }
}
