import { KeelError } from "../errors/index.ts";
import type { AdaptiveAlgorithm } from "../policies/index.ts";
import { isStandardSchema, type StandardSchemaV1 } from "../schema/index.ts";
import type { Context, EventContext } from "./context-types.ts";

type In<S extends StandardSchemaV1> = StandardSchemaV1.InferInput<S>;
type Out<S extends StandardSchemaV1> = StandardSchemaV1.InferOutput<S>;

/** How a service author configures one action. */
export interface ActionConfig<I extends StandardSchemaV1, O extends StandardSchemaV1> {
  /** Schema of the input; the handler receives its parsed output. */
  readonly input: I;
  /** Schema of the result; checked before the reply leaves the server. */
  readonly output: O;
  /** Safe to run twice: callers may then fail over or retry it after an ambiguous failure. */
  readonly idempotent?: boolean;
  /** Upper bound on the handler's time on the server, whatever the caller's deadline (ms). */
  readonly timeoutMs?: number;
  /** One line for humans and tooling. */
  readonly description?: string;
  /**
   * Server-side protection, per node: what is over a limit is shed at once with a retryable,
   * not-processed OVERLOADED or RATE_LIMITED, so callers go to another replica.
   */
  readonly limits?: ActionLimits;
  /** The implementation. */
  handler(input: Out<I>, ctx: Context): Promise<In<O>> | In<O>;
}

/** Server-side limits of one action on one node. */
export interface ActionLimits {
  /** A bulkhead: at most `maxConcurrent` running, `maxQueue` waiting (default 0). */
  readonly concurrency?: { readonly maxConcurrent: number; readonly maxQueue?: number };
  /** An adaptive concurrency limit (AIMD or gradient) that sheds instead of queueing. */
  readonly adaptive?: AdaptiveAlgorithm;
  /** A token bucket: `ratePerSecond` sustained, `burst` at once. */
  readonly rate?: { readonly ratePerSecond: number; readonly burst: number };
}

/** An action as stored in a service definition. */
export interface ActionDefinition<I extends StandardSchemaV1, O extends StandardSchemaV1>
  extends ActionConfig<I, O> {
  readonly name: string;
  readonly idempotent: boolean;
}

/** Any action, whatever its schemas. */
export type AnyAction = ActionDefinition<StandardSchemaV1, StandardSchemaV1>;

/** A typed event: a name and the schema of its payload. */
export interface EventDefinition<
  N extends string = string,
  S extends StandardSchemaV1 = StandardSchemaV1,
> {
  readonly kind: "event";
  readonly name: N;
  readonly schema: S;
}

/** A service's handler for one event. */
export interface Subscription {
  readonly event: EventDefinition;
  handler(payload: unknown, ctx: EventContext): void | Promise<void>;
}

/** The data of a service definition: its name, version, actions and subscriptions. */
export interface ServiceShape<Name extends string, Actions extends Record<string, AnyAction>> {
  readonly kind: "service";
  readonly name: Name;
  readonly version: number;
  /** `name@version`, the routing key of this definition. */
  readonly key: string;
  readonly actions: Actions;
  readonly subscriptions: readonly Subscription[];
}

/** Any service definition. */
export type AnyService = ServiceShape<string, Record<string, AnyAction>>;

/** A service definition that can still gain actions and event handlers. */
export interface ServiceDefinition<Name extends string, Actions extends Record<string, AnyAction>>
  extends ServiceShape<Name, Actions> {
  /** Adds an action. Returns a new definition; the name must be new. */
  action<const A extends string, I extends StandardSchemaV1, O extends StandardSchemaV1>(
    name: A extends keyof Actions ? `action '${A}' is already defined` : A,
    config: ActionConfig<I, O>,
  ): ServiceDefinition<Name, Actions & { readonly [K in A]: ActionDefinition<I, O> }>;
  /** Subscribes this service to an event. Returns a new definition. */
  on<E extends EventDefinition>(
    event: E,
    handler: (payload: Out<E["schema"]>, ctx: EventContext) => void | Promise<void>,
  ): ServiceDefinition<Name, Actions>;
}

/** Names of the actions of a service. */
export type ActionName<S extends AnyService> = keyof S["actions"] & string;
/** What a caller passes to action `A` of service `S`. */
export type InputOf<S extends AnyService, A extends ActionName<S>> = In<S["actions"][A]["input"]>;
/** What a caller gets back from action `A` of service `S`. */
export type OutputOf<S extends AnyService, A extends ActionName<S>> = Out<
  S["actions"][A]["output"]
>;
/** The payload type of an event, as emitted. */
export type PayloadOf<E extends EventDefinition> = In<E["schema"]>;

/** Options for the service definition. */
export interface ServiceOptions {
  /** Positive integer; versions route separately (`orders@1`, `orders@2`). Default 1. */
  readonly version?: number;
}

const SERVICE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const ACTION_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const EVENT_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,127}$/;

function configError(message: string): KeelError {
  return new KeelError("CONFIGURATION", message);
}

function build<Name extends string, Actions extends Record<string, AnyAction>>(
  name: Name,
  version: number,
  actions: Actions,
  subscriptions: readonly Subscription[],
): ServiceDefinition<Name, Actions> {
  const def: ServiceDefinition<Name, Actions> = {
    kind: "service",
    name,
    version,
    key: `${name}@${version}`,
    actions,
    subscriptions,
    action(actionName, config) {
      const n = actionName as string;
      if (!ACTION_NAME.test(n)) {
        throw configError(`${name}@${version}: action name '${n}' must match ${ACTION_NAME}`);
      }
      if (Object.hasOwn(actions, n))
        throw configError(`${name}@${version}: action '${n}' is already defined`);
      if (!isStandardSchema(config.input)) {
        throw configError(
          `${name}@${version}.${n}: 'input' must be a Standard Schema (zod, valibot, arktype, ...)`,
        );
      }
      if (!isStandardSchema(config.output)) {
        throw configError(
          `${name}@${version}.${n}: 'output' must be a Standard Schema (zod, valibot, arktype, ...)`,
        );
      }
      if (typeof config.handler !== "function")
        throw configError(`${name}@${version}.${n}: 'handler' must be a function`);
      if (
        config.timeoutMs !== undefined &&
        !(Number.isFinite(config.timeoutMs) && config.timeoutMs > 0)
      ) {
        throw configError(`${name}@${version}.${n}: 'timeoutMs' must be a positive number`);
      }
      const action = { ...config, name: n, idempotent: config.idempotent ?? false };
      // The generic's shape is exactly what was added; TypeScript cannot follow the spread.
      const next = { ...actions, [n]: action } as unknown as Actions &
        Record<typeof n, typeof action>;
      return build(name, version, next, subscriptions) as never;
    },
    on(event, handler) {
      if (event?.kind !== "event")
        throw configError(`${name}@${version}: 'on' takes an event from defineEvent()`);
      if (subscriptions.some((s) => s.event.name === event.name)) {
        throw configError(`${name}@${version}: already subscribed to '${event.name}'`);
      }
      const sub: Subscription = { event, handler: handler as Subscription["handler"] };
      return build(name, version, actions, [...subscriptions, sub]);
    },
  };
  return Object.freeze(def);
}

/**
 * Defines a service: the one source of truth for its clients' types and its boundary checks.
 * @example
 * const payments = defineService("payments", { version: 1 }).action("charge", {
 *   input: z.object({ orderId: z.string(), amount: z.number().positive() }),
 *   output: z.object({ chargeId: z.string() }),
 *   idempotent: true,
 *   handler: async ({ orderId, amount }, ctx) => ({ chargeId: `${orderId}:${amount}` }),
 * });
 */
export function defineService<const Name extends string>(
  name: Name,
  options: ServiceOptions = {},
): ServiceDefinition<Name, {}> {
  if (typeof name !== "string" || !SERVICE_NAME.test(name)) {
    throw configError(`service name '${String(name)}' must match ${SERVICE_NAME}`);
  }
  const version = options.version ?? 1;
  if (!Number.isInteger(version) || version < 1) {
    throw configError(
      `service '${name}': version must be a positive integer, got ${String(version)}`,
    );
  }
  return build(name, version, {}, []);
}

/**
 * Defines a typed event that services can emit and subscribe to.
 * @example
 * const orderPaid = defineEvent("order.paid", z.object({ orderId: z.string() }));
 */
export function defineEvent<const N extends string, S extends StandardSchemaV1>(
  name: N,
  schema: S,
): EventDefinition<N, S> {
  if (typeof name !== "string" || !EVENT_NAME.test(name)) {
    throw configError(`event name '${String(name)}' must match ${EVENT_NAME}`);
  }
  if (!isStandardSchema(schema))
    throw configError(`event '${name}': schema must be a Standard Schema`);
  return Object.freeze({ kind: "event", name, schema });
}
