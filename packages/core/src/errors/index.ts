export { CALLER_MISTAKES, ERROR_CODES, type ErrorCode, isErrorCode } from "./codes.ts";
export {
  type ErrorDetails,
  hasCode,
  isKeelError,
  KeelError,
  type KeelErrorOptions,
  type WireError,
} from "./keel-error.ts";
