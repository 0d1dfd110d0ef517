import { isKeelError, type KeelNode } from "@keel/core";
import { echo } from "./support.ts";

/** One finished call of a load run. */
export interface CallRecord {
  /** When it started and ended (performance.now()). */
  readonly start: number;
  readonly end: number;
  /** Which node answered, or the error code. */
  readonly node?: string;
  readonly code?: string;
}

/** Options for a bounded load of `echo.say` calls. */
export interface LoadOptions {
  /** Stop after this many calls. */
  readonly calls: number;
  readonly concurrency: number;
  /** Stop starting calls after this long, in ms, whatever the count. */
  readonly maxMs: number;
  /** Handler delay per call, in ms. */
  readonly delayMs?: number;
  /** Per-call timeout, in ms. */
  readonly timeoutMs?: number;
  /** Pause after a failed call, so an outage does not spin the loop. */
  readonly pauseAfterFailureMs?: number;
  /** Called after each call. */
  readonly onCall?: (record: CallRecord, done: number) => void;
  /** Stops the load early when it returns true. */
  readonly stop?: () => boolean;
}

/** Runs `echo.say` calls from `node`, bounded in count and time; never throws for a failed call. */
export async function runLoad(node: KeelNode, options: LoadOptions): Promise<CallRecord[]> {
  const records: CallRecord[] = [];
  const until = performance.now() + options.maxMs;
  let started = 0;
  const worker = async () => {
    while (started < options.calls && performance.now() < until && options.stop?.() !== true) {
      started++;
      const start = performance.now();
      let record: CallRecord;
      try {
        const out = await node.call(
          echo,
          "say",
          { text: "x", ...(options.delayMs === undefined ? {} : { delayMs: options.delayMs }) },
          { timeoutMs: options.timeoutMs ?? 2000 },
        );
        record = { start, end: performance.now(), node: out.node };
      } catch (err) {
        record = {
          start,
          end: performance.now(),
          code: isKeelError(err) ? err.code : `NOT_KEEL:${String(err)}`,
        };
      }
      records.push(record);
      options.onCall?.(record, records.length);
      if (record.code !== undefined && options.pauseAfterFailureMs !== undefined) {
        await new Promise((resolve) => setTimeout(resolve, options.pauseAfterFailureMs));
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return records;
}

/** The p-th percentile (0..100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}
