/**
 * @keel/sim: deterministic simulation of Keel clusters, and the checkers that judge what clients saw.
 * @module
 */

export { type Guard, installGuard, NondeterminismError } from "./env/guard.ts";
export {
  type ClockSettings,
  NodeClock,
  type RunStop,
  type TieBreak,
} from "./env/world.ts";
export {
  decodePlan,
  describeStep,
  drawPlan,
  encodePlan,
  FAULT_KINDS,
  type FaultKind,
  type FaultOptions,
  type FaultStep,
  type NemesisProfile,
} from "./faults.ts";
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
export {
  checkDeterminism,
  type DeterminismReport,
  defineScenario,
  type Phase,
  type RunChoices,
  type RunInfo,
  type RunOptions,
  type RunReport,
  replayArgs,
  runScenario,
  type Scenario,
} from "./scenario.ts";
export {
  describeShrink,
  formatTimeline,
  type ShrinkOptions,
  type ShrinkResult,
  shrink,
} from "./shrink.ts";
export {
  type ClockOptions,
  createSimulation,
  type Failure,
  type NodeLife,
  type SimNode,
  type SimNodeOptions,
  Simulation,
  type SimulationOptions,
  SimulationStuckError,
  type TimelineEntry,
} from "./simulation.ts";
