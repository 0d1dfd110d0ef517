import { ERROR_CODES, type ErrorCode, isErrorCode } from "./codes.ts";

const BRAND = Symbol.for("keel.error");

/** Structured, JSON-safe extra information attached to an error. */
export type ErrorDetails = Readonly<Record<string, unknown>>;

/** Options for constructing a KeelError. */
export interface KeelErrorOptions {
  /** Overrides the code's default retryability. */
  readonly retryable?: boolean;
  readonly details?: ErrorDetails;
  readonly cause?: unknown;
  /** Skip capturing a stack trace (cheaper; used for errors that arrive over the wire). */
  readonly noStack?: boolean;
}

/** The shape of an error on the wire: no stack, no cause chain. */
export interface WireError {
  readonly code: ErrorCode;
  readonly message: string;
  readonly retryable: boolean;
  readonly details?: ErrorDetails;
}

/** The one error type of Keel: a closed `code`, a `retryable` flag, `details` and a `cause`. */
export class KeelError extends Error {
  override readonly name = "KeelError";
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: ErrorDetails | undefined;
  /** True when this error was decoded from a remote peer's reply. */
  readonly remote: boolean;

  constructor(code: ErrorCode, message: string, options: KeelErrorOptions = {}) {
    if (options.noStack === true) {
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      super(message, options.cause === undefined ? undefined : { cause: options.cause });
      Error.stackTraceLimit = limit;
    } else {
      super(message, options.cause === undefined ? undefined : { cause: options.cause });
    }
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.details = options.details;
    this.remote = false;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** The JSON-safe form sent across the wire. */
  toWire(): WireError {
    return this.details === undefined
      ? { code: this.code, message: this.message, retryable: this.retryable }
      : {
          code: this.code,
          message: this.message,
          retryable: this.retryable,
          details: this.details,
        };
  }

  /** Rebuilds a KeelError received from a peer; unknown codes become PROTOCOL. */
  static fromWire(wire: unknown): KeelError {
    if (typeof wire !== "object" || wire === null) {
      return new KeelError("PROTOCOL", "malformed error in reply", { noStack: true });
    }
    const w = wire as Record<string, unknown>;
    const code = w["code"];
    const message = typeof w["message"] === "string" ? w["message"] : "";
    if (!isErrorCode(code)) {
      return new KeelError("PROTOCOL", `unknown error code in reply: ${String(code)}`, {
        noStack: true,
        details: { message },
      });
    }
    const details = w["details"];
    const err = new KeelError(code, message, {
      noStack: true,
      ...(typeof w["retryable"] === "boolean" ? { retryable: w["retryable"] } : {}),
      ...(typeof details === "object" && details !== null
        ? { details: details as ErrorDetails }
        : {}),
    });
    Object.defineProperty(err, "remote", { value: true });
    return err;
  }
}

/** True for any KeelError, even one from a duplicate copy of this package. */
export function isKeelError(value: unknown): value is KeelError {
  return typeof value === "object" && value !== null && BRAND in value;
}

/** True if `value` is a KeelError with the given code. */
export function hasCode(value: unknown, code: ErrorCode): value is KeelError {
  return isKeelError(value) && value.code === code;
}
