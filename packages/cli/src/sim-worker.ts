/**
 * A `keel sim` worker thread: imports the scenario module once, then performs the tasks the main
 * thread sends, one at a time, answering each with a structured message.
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import type { Scenario } from "@keel/sim";
import {
  isScenario,
  performTask,
  type Task,
  type TaskChoices,
  type TaskResult,
} from "./sim-tasks.ts";

/** What the main thread gives each worker. */
export interface WorkerSetup {
  readonly url: string;
  readonly exportName: string;
  readonly choices: TaskChoices;
}

/** Messages from a worker to the main thread. */
export type WorkerMessage =
  | { readonly kind: "result"; readonly result: TaskResult }
  | {
      readonly kind: "progress";
      readonly seed: number;
      readonly runs: number;
      readonly reproduced: number;
    }
  | { readonly kind: "error"; readonly message: string };

const port = parentPort;
if (port === null) throw new Error("sim-worker.ts runs only as a worker thread");
const setup = workerData as WorkerSetup;
const mod = (await import(setup.url)) as Record<string, unknown>;
const found = mod[setup.exportName];
if (!isScenario(found)) throw new Error(`export '${setup.exportName}' is not a scenario`);
const scenario: Scenario = found;

const post = (message: WorkerMessage) => port.postMessage(message);

port.on("message", (task: Task) => {
  performTask(scenario, task, setup.choices, (seed, runs, reproduced) =>
    post({ kind: "progress", seed, runs, reproduced }),
  ).then(
    (result) => post({ kind: "result", result }),
    (err: unknown) =>
      post({
        kind: "error",
        message: err instanceof Error ? (err.stack ?? err.message) : String(err),
      }),
  );
});
