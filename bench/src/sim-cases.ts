/**
 * The simulator's cases of the sim suite, run in a worker thread per measurement (see `inWorker`
 * in sim.ts): `workerData` names the case, the reply is its Measurement.
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { createRealEnv } from "@keel/core";
import shop from "@keel/example-shop/simulation";
import { createSimulation, runScenario } from "@keel/sim";
import type { Measurement } from "./harness.ts";

/** Micro workload: 100 tasks, each sleeping a random 1–10 ms in a loop; one event per sleep. */
async function microEvents(seconds: number, maxOps: number): Promise<Measurement> {
  const clock = createRealEnv().clock;
  const batch = Math.min(maxOps, 200_000);
  let events = 0;
  let elapsedMs = 0;
  let seed = 1;
  while (elapsedMs < seconds * 1000 && events < maxOps) {
    const sim = createSimulation({ seed: seed++ });
    const random = sim.random("micro");
    const t0 = clock.now();
    await sim.run(async () => {
      const task = async () => {
        for (let i = 0; i < batch / 100; i++) await sim.env.timers.sleep(1 + random.int(10));
      };
      await Promise.all(Array.from({ length: 100 }, task));
    });
    elapsedMs += clock.now() - t0;
    events += sim.events;
  }
  return { ops: events, elapsedMs, metrics: { "events/s": (events / elapsedMs) * 1000 } };
}

/** The shop scenario (7 nodes, drawn faults, 20 s safety + liveness): seeds in a row. */
async function shopSeeds(seconds: number, maxOps: number): Promise<Measurement> {
  const clock = createRealEnv().clock;
  let seeds = 0;
  let virtualMs = 0;
  let events = 0;
  let failures = 0;
  const t0 = clock.now();
  while (clock.now() - t0 < seconds * 1000 && seeds < maxOps) {
    const report = await runScenario(shop, { seed: 1000 + seeds });
    seeds++;
    virtualMs += report.virtualMs;
    events += report.events;
    if (!report.ok) failures++;
  }
  const elapsedMs = clock.now() - t0;
  if (failures > 0) throw new Error(`${failures} shop seeds failed their invariants`);
  return {
    ops: seeds,
    elapsedMs,
    metrics: {
      "sim/real": virtualMs / elapsedMs,
      "events/s": (events / elapsedMs) * 1000,
      "virtual s/seed": virtualMs / seeds / 1000,
    },
  };
}

const { name, seconds, maxOps } = workerData as {
  name: "micro" | "shop";
  seconds: number;
  maxOps: number;
};
const measure = name === "micro" ? microEvents : shopSeeds;
// A fresh worker starts cold: warm its JIT up on the same case first, as the harness does for
// cases that run in its own process.
await measure(Math.min(0.5, seconds), maxOps);
const measurement = await measure(seconds, maxOps);
parentPort?.postMessage(measurement);
