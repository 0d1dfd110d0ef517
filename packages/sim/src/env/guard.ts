/**
 * Guard mode: while a simulation runs, any touch of real time, real timers, ambient randomness or a
 * real socket throws, with a stack trace that names the culprit, and is recorded so the run fails
 * even when the code that called it swallowed the error (as a handler's failure becomes a reply).
 * @module
 */
import crypto from "node:crypto";
import dgram from "node:dgram";
import http from "node:http";
import https from "node:https";
import { syncBuiltinESMExports } from "node:module";
import net from "node:net";
import timers from "node:timers";
import timersPromises from "node:timers/promises";
import { KeelError } from "@keel/core";

/** Thrown when simulated code reaches for the real world. */
export class NondeterminismError extends Error {
  override readonly name = "NondeterminismError";
  /** What was touched, e.g. `Date.now()`. */
  readonly touched: string;

  constructor(touched: string) {
    super(
      `${touched} was called during a simulation: use the Env (env.clock, env.timers, env.random) or the simulated network instead`,
    );
    this.touched = touched;
  }
}

interface Patch {
  readonly target: object;
  readonly key: string;
  readonly original: unknown;
}

/** A guard in force; `restore()` puts every global back. */
export interface Guard {
  /** Violations seen so far (the first one fails the run). */
  readonly violations: readonly NondeterminismError[];
  restore(): void;
}

let active: Guard | undefined;

/**
 * Replaces ambient time, timers, randomness and socket constructors with functions that throw
 * {@link NondeterminismError}. Only one guard can be active at a time (they patch globals).
 */
export function installGuard(): Guard {
  if (active !== undefined)
    throw new KeelError(
      "FAILED_PRECONDITION",
      "a simulation guard is already active in this process",
    );
  const violations: NondeterminismError[] = [];
  const patches: Patch[] = [];
  const trap = (label: string) => {
    const err = new NondeterminismError(label);
    Error.captureStackTrace(err, trap);
    violations.push(err);
    return err;
  };
  const patch = (target: object, key: string, label: string) => {
    const original: unknown = Reflect.get(target, key);
    if (typeof original !== "function") return;
    patches.push({ target, key, original });
    Reflect.set(target, key, function guarded() {
      throw trap(label);
    });
  };

  const RealDate = Date;
  function GuardedDate(this: unknown, ...args: unknown[]): unknown {
    if (!new.target) throw trap("Date()");
    if (args.length === 0) throw trap("new Date()");
    return Reflect.construct(RealDate, args, new.target);
  }
  Object.setPrototypeOf(GuardedDate, RealDate);
  GuardedDate.prototype = RealDate.prototype;
  Reflect.set(GuardedDate, "now", () => {
    throw trap("Date.now()");
  });
  patches.push({ target: globalThis, key: "Date", original: RealDate });
  Reflect.set(globalThis, "Date", GuardedDate);

  patch(performance, "now", "performance.now()");
  patch(globalThis, "setTimeout", "setTimeout()");
  patch(globalThis, "setInterval", "setInterval()");
  patch(globalThis, "setImmediate", "setImmediate()");
  patch(Math, "random", "Math.random()");
  patch(globalThis.crypto, "randomUUID", "crypto.randomUUID()");
  patch(globalThis.crypto, "getRandomValues", "crypto.getRandomValues()");
  patch(crypto, "randomUUID", "crypto.randomUUID()");
  patch(crypto, "randomBytes", "crypto.randomBytes()");
  patch(crypto, "randomFill", "crypto.randomFill()");
  patch(crypto, "randomFillSync", "crypto.randomFillSync()");
  patch(crypto, "randomInt", "crypto.randomInt()");
  // The same functions as the globals, but a separate binding: `import { setTimeout } from "node:timers"`.
  patch(timers, "setTimeout", "setTimeout() (node:timers)");
  patch(timers, "setInterval", "setInterval() (node:timers)");
  patch(timers, "setImmediate", "setImmediate() (node:timers)");
  patch(timersPromises, "setTimeout", "setTimeout() (node:timers/promises)");
  patch(timersPromises, "setInterval", "setInterval() (node:timers/promises)");
  patch(timersPromises, "setImmediate", "setImmediate() (node:timers/promises)");
  patch(timersPromises.scheduler, "wait", "scheduler.wait() (node:timers/promises)");
  patch(process.hrtime, "bigint", "process.hrtime.bigint()");
  patch(process, "hrtime", "process.hrtime()");
  // The guarded hrtime replaces the function that carried `bigint`: give it a trap of its own.
  Reflect.set(process.hrtime, "bigint", function guarded() {
    throw trap("process.hrtime.bigint()");
  });
  patch(process, "uptime", "process.uptime()");
  // A real timer behind a signal: in a simulation it would never fire, silently.
  patch(AbortSignal, "timeout", "AbortSignal.timeout()");
  patch(net.Socket.prototype, "connect", "a real socket (net.Socket.connect)");
  patch(net.Server.prototype, "listen", "a real server (net.Server.listen)");
  patch(dgram, "createSocket", "a real socket (dgram.createSocket)");
  patch(http, "request", "a real HTTP request (http.request)");
  patch(https, "request", "a real HTTP request (https.request)");
  patch(globalThis, "fetch", "a real HTTP request (fetch)");
  // Named imports of builtins (`import { randomUUID } from "node:crypto"`) see the patches too.
  syncBuiltinESMExports();

  const guard: Guard = {
    violations,
    restore() {
      for (const p of patches.reverse()) Reflect.set(p.target, p.key, p.original);
      patches.length = 0;
      syncBuiltinESMExports();
      if (active === guard) active = undefined;
    },
  };
  active = guard;
  return guard;
}
