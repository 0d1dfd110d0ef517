/** Every failure in Keel carries one of these codes. The set is closed: see docs/errors.md. */
export const ERROR_CODES = {
  CANCELLED: { retryable: false, summary: "The caller cancelled the call." },
  DEADLINE_EXCEEDED: {
    retryable: false,
    summary: "The call's deadline passed before it finished.",
  },
  INVALID_ARGUMENT: { retryable: false, summary: "Input failed the action's schema." },
  NOT_FOUND: { retryable: false, summary: "No such service, version, action or event." },
  ALREADY_EXISTS: { retryable: false, summary: "The thing to create exists already." },
  FAILED_PRECONDITION: {
    retryable: false,
    summary: "The system is not in a state the operation needs.",
  },
  PERMISSION_DENIED: { retryable: false, summary: "The caller may not do this." },
  UNAUTHENTICATED: { retryable: false, summary: "The caller's identity is missing or invalid." },
  UNAVAILABLE: { retryable: true, summary: "No endpoint could take the call now." },
  OVERLOADED: { retryable: true, summary: "The server shed the call to protect itself." },
  RATE_LIMITED: { retryable: true, summary: "A rate limit refused the call." },
  CIRCUIT_OPEN: { retryable: true, summary: "A circuit breaker refused the call." },
  PROTOCOL: {
    retryable: false,
    summary: "A frame was malformed, oversized or of unknown version.",
  },
  CONFIGURATION: { retryable: false, summary: "A definition or option is invalid." },
  UNIMPLEMENTED: { retryable: false, summary: "The peer does not implement this operation." },
  INTERNAL: { retryable: false, summary: "A handler failed unexpectedly." },
} as const satisfies Record<string, { retryable: boolean; summary: string }>;

/** The closed union of error codes. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The codes of a caller's own mistakes: the server judged the request and refused it, so they say
 * nothing about the server's health (a breaker does not count them) and the operation did not
 * take effect.
 */
export const CALLER_MISTAKES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "FAILED_PRECONDITION",
  "PERMISSION_DENIED",
  "UNAUTHENTICATED",
]);

/** True if `code` is one of Keel's error codes. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}
