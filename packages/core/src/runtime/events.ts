import { KeelError } from "../errors/index.ts";
import {
  activeContext,
  parentContext,
  runIn,
  type Span,
  traceFields,
  traceparent,
  tracestate,
  withSpan,
} from "../observability/tracing.ts";
import { schemaError, validate } from "../schema/index.ts";
import { type EventFrame, WIRE_VERSION } from "../wire/index.ts";
import { EventInvocation, type Invocation } from "./invocation.ts";
import type { Logger } from "./logger.ts";
import { type NodeShared, unavailable } from "./node-shared.ts";
import type { Scope } from "./scope.ts";
import type { EventDefinition } from "./service.ts";

/** Events: `emit` reaches one node per subscribing service, `broadcast` every subscriber. At most once. */
export class Events {
  readonly #n: NodeShared;
  #cursor = 0;
  readonly #log: Logger;

  constructor(shared: NodeShared) {
    this.#n = shared;
    this.#log = shared.log.child({ module: "keel.events" });
  }

  emit(
    event: EventDefinition,
    payload: unknown,
    mode: "emit" | "broadcast",
    parent: Scope | undefined,
    traceParent: Span | undefined,
  ): void {
    const n = this.#n;
    if (event?.kind !== "event")
      throw new KeelError("CONFIGURATION", `${mode}() takes an event from defineEvent()`);
    if (n.state !== "ready" && n.state !== "draining") {
      throw unavailable(`node '${n.id}' is ${n.state}: it cannot emit events`);
    }
    const checked = event.schema["~standard"].validate(payload);
    if (!(checked instanceof Promise) && checked.issues !== undefined) {
      throw schemaError("INVALID_ARGUMENT", `payload of event '${event.name}'`, checked.issues);
    }
    n.stats.eventsEmitted++;
    let tc = (parent as Invocation | undefined)?.traceContext;
    let ts = (parent as Invocation | undefined)?.traceState;
    const tracer = n.tracing.tracer();
    let span: Span | undefined;
    if (tracer !== undefined) {
      const ctx = parentContext(traceParent, tc, ts);
      span = n.tracing.startPublish(tracer, event.name, mode, ctx);
      const sc = span.spanContext();
      tc = traceparent(sc);
      ts = tracestate(sc);
    }
    const bySvc = n.registry.subscribers(event.name);
    if (bySvc === undefined) {
      if (span !== undefined) n.tracing.end(span);
      return;
    }
    // One copy per subscribing service (emit, round-robin over its nodes) or per node (broadcast).
    const targets: Array<[node: string, grp: string | undefined]> = [];
    const frame: EventFrame = {
      v: WIRE_VERSION,
      k: "evt",
      from: n.id,
      name: event.name,
      mode,
      p: payload,
      ...(tc === undefined ? {} : { tc }),
      ...(ts === undefined ? {} : { ts }),
    };
    if (mode === "emit") {
      for (const [svc, nodes] of bySvc) {
        targets.push([nodes.length === 1 ? nodes[0]! : nodes[this.#cursor++ % nodes.length]!, svc]);
      }
    } else {
      const nodes = new Set<string>();
      for (const list of bySvc.values()) for (const node of list) nodes.add(node);
      const local = nodes.has(n.id);
      if (n.fanOut && nodes.size > (local ? 1 : 0)) {
        // One send reaches every node (NATS: one publish); nodes without subscribers drop it.
        if (local) nodes.delete(n.id);
        n.broadcastTo(nodes, frame);
        if (local) targets.push([n.id, undefined]);
      } else {
        for (const node of nodes) targets.push([node, undefined]);
      }
    }
    for (const [target, grp] of targets) {
      if (target === n.id) {
        this.#deliver(event.name, payload, grp, n.id, tc, ts);
        continue;
      }
      n.sendTo(target, grp === undefined ? frame : { ...frame, grp });
    }
    if (span !== undefined) {
      span.setAttribute("keel.event.copies", targets.length);
      n.tracing.end(span);
    }
  }

  onEvent(f: EventFrame): void {
    this.#deliver(f.name, f.p, f.mode === "emit" ? f.grp : undefined, f.from, f.tc, f.ts);
  }

  /** Runs local subscribers: of service `svc` only, or of every hosted service when undefined. */
  #deliver(
    name: string,
    payload: unknown,
    svc: string | undefined,
    from: string,
    tc: string | undefined,
    ts: string | undefined,
  ): void {
    const n = this.#n;
    for (const hosted of n.hosted.values()) {
      if (svc !== undefined && hosted.def.name !== svc) continue;
      const sub = hosted.subscriptions.get(name);
      if (sub === undefined) continue;
      n.stats.eventsDelivered++;
      const ctx = new EventInvocation(n.hooks, hosted.def.name, name, from, tc, ts);
      const tracing = n.tracing;
      // Always asynchronous, so an emitter never runs subscriber code on its own stack.
      void Promise.resolve()
        .then(async () => {
          const tracer = tracing.tracer();
          if (tracer !== undefined) {
            const span = tracing.startProcess(tracer, name, hosted.def.name, from, tc, ts);
            ctx.span = span;
            ctx.otelContext = withSpan(activeContext(), span);
          }
          let value = validate(sub.event.schema, payload, `payload of event '${name}'`);
          if (value instanceof Promise) value = await value;
          const otel = ctx.otelContext;
          await (otel === undefined
            ? sub.handler(value, ctx)
            : runIn(otel, sub.handler, value, ctx));
          if (ctx.span !== undefined) tracing.end(ctx.span);
        })
        .catch((err: unknown) => {
          if (ctx.span !== undefined) tracing.end(ctx.span, err);
          this.#log.error(
            { err, service: hosted.def.name, event: name, peer: from, ...traceFields(ctx.span) },
            "event handler failed",
          );
        });
    }
  }
}
