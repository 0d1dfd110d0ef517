export type {
  BalancerName,
  Caller,
  CallOptions,
  Client,
  Context,
  EventContext,
} from "./context-types.ts";
export {
  createJsonLogger,
  DEFAULT_REDACT_KEYS,
  type JsonLoggerOptions,
  type Logger,
  type LogLevel,
  silentLogger,
} from "./logger.ts";
export {
  type ActionStats,
  createNode,
  type Decision,
  type KeelNode,
  type NodeHealth,
  type NodeOptions,
  type NodeState,
  type NodeStats,
  type StopOptions,
} from "./node.ts";
export type { Endpoint, NodeRecord, RegistryEvent, RegistryView } from "./registry.ts";
export {
  type ActionConfig,
  type ActionDefinition,
  type ActionLimits,
  type ActionName,
  type AnyAction,
  type AnyService,
  defineEvent,
  defineService,
  type EventDefinition,
  type InputOf,
  type OutputOf,
  type PayloadOf,
  type ServiceDefinition,
  type ServiceOptions,
  type ServiceShape,
  type Subscription,
} from "./service.ts";
