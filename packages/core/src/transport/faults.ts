import type { Random } from "../env/index.ts";
import { KeelError } from "../errors/index.ts";

/** How long a frame spends on a link, in milliseconds. */
export type Latency =
  | { readonly kind: "fixed"; readonly ms: number }
  | { readonly kind: "uniform"; readonly min: number; readonly max: number }
  | { readonly kind: "exponential"; readonly mean: number }
  | { readonly kind: "normal"; readonly mean: number; readonly stddev: number };

/** The fault model of one directed link. Every draw comes from the Env's random stream. */
export interface LinkFaults {
  readonly latency?: Latency;
  /** Probability in [0, 1] that a frame is lost. */
  readonly drop?: number;
  /** Probability in [0, 1] that a frame is delivered twice (the copy with its own latency). */
  readonly duplicate?: number;
  /**
   * Let frames overtake each other when their latencies differ. Off by default: a link keeps
   * order, as a TCP connection (and so NATS between two clients) does.
   */
  readonly reorder?: boolean;
}

function probability(name: string, value: number | undefined): void {
  if (value !== undefined && !(value >= 0 && value <= 1)) {
    throw new KeelError(
      "CONFIGURATION",
      `link fault '${name}' must be a probability in [0, 1], got ${value}`,
    );
  }
}

function nonNegative(name: string, value: number): void {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new KeelError(
      "CONFIGURATION",
      `latency '${name}' must be a finite number >= 0, got ${value}`,
    );
  }
}

/** Checks a fault model when it is set, so a typo fails at once rather than mid-run. */
export function checkFaults(faults: LinkFaults): LinkFaults {
  probability("drop", faults.drop);
  probability("duplicate", faults.duplicate);
  if (faults.reorder !== undefined && typeof faults.reorder !== "boolean") {
    throw new KeelError(
      "CONFIGURATION",
      `link fault 'reorder' must be a boolean, got ${String(faults.reorder)}`,
    );
  }
  const l = faults.latency;
  if (l !== undefined) {
    switch (l.kind) {
      case "fixed":
        nonNegative("ms", l.ms);
        break;
      case "uniform":
        nonNegative("min", l.min);
        nonNegative("max", l.max);
        if (l.max < l.min) throw new KeelError("CONFIGURATION", "latency 'max' must be >= 'min'");
        break;
      case "exponential":
        nonNegative("mean", l.mean);
        break;
      case "normal":
        nonNegative("mean", l.mean);
        nonNegative("stddev", l.stddev);
        break;
      default:
        throw new KeelError(
          "CONFIGURATION",
          `unknown latency kind ${JSON.stringify((l as { kind: unknown }).kind)}`,
        );
    }
  }
  return faults;
}

/** Draws one latency sample (never negative). */
export function drawLatency(latency: Latency | undefined, random: Random): number {
  if (latency === undefined) return 0;
  switch (latency.kind) {
    case "fixed":
      return latency.ms;
    case "uniform":
      return latency.min + random.next() * (latency.max - latency.min);
    case "exponential":
      return -Math.log(1 - random.next()) * latency.mean;
    case "normal": {
      // Box-Muller; clamp at zero.
      const u = 1 - random.next();
      const v = random.next();
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
      return Math.max(0, latency.mean + z * latency.stddev);
    }
  }
}
