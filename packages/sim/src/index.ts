/**
 * @keel/sim: deterministic simulation of Keel clusters, and the checkers that judge what clients saw.
 * @module
 */
export {
  createHistory,
  type FailedOperation,
  HistoryError,
  type HistoryErrorReason,
  type HistoryEvent,
  type HistoryRecorder,
  type IndeterminateOperation,
  type OkOperation,
  type Operation,
  type OperationBase,
  type OperationStatus,
  type Outcome,
  operationsFromEvents,
  type ProcessId,
} from "./history.ts";
export { type JepsenHistory, JepsenParseError, parseJepsenLog } from "./jepsen.ts";
export {
  type Candidate,
  type Counterexample,
  checkLinearizability,
  describeCounterexample,
  describeLinearizability,
  type LinearizabilityOptions,
  type LinearizabilityResult,
  type LinearizedOperation,
  type PartitionResult,
  type TimeSource,
  type Verdict,
} from "./linearizability.ts";
export {
  hashValue,
  type KvInput,
  type KvOutput,
  type KvState,
  kvModel,
  type Model,
  type Partition,
  type RegisterInput,
  type RegisterOutput,
  type RegisterState,
  type RegisterValue,
  registerModel,
  type StepResult,
} from "./models.ts";
export {
  checkQueue,
  type Delivery,
  type DuplicatedMessage,
  describeQueueCheck,
  type LostMessage,
  type QueueCheckOptions,
  type QueueCheckResult,
  type QueueHistory,
  type Reordering,
  type SentMessage,
} from "./queue-checker.ts";
