import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  context,
  createContextKey,
  createTraceState,
  SpanKind,
  SpanStatusCode,
  type TraceState,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { z } from "zod";
import {
  type AnyService,
  createJsonLogger,
  defineEvent,
  defineService,
  type ErrorCode,
  hasCode,
  hedge,
  jsonCodec,
  KeelError,
  type KeelNode,
  retry,
} from "../src/index.ts";
import { tracestate } from "../src/observability/tracing.ts";
import { type Cluster, capture, cluster } from "./support.ts";

/** An SDK provider that keeps finished spans in memory; passed to nodes, never registered. */
function memoryTracing() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const spans = () => exporter.getFinishedSpans();
  const one = (pred: (s: ReadableSpan) => boolean, what: string): ReadableSpan => {
    const found = spans().filter(pred);
    assert.equal(
      found.length,
      1,
      `one span ${what}; spans: ${spans().map(describeSpan).join(", ")}`,
    );
    return found[0]!;
  };
  return { provider, exporter, spans, one };
}

/** `service` on r1 and r2 and a caller, every node tracing into `t`, all started; returns the caller. */
async function tracedReplicas(
  c: Cluster,
  service: AnyService,
  t: ReturnType<typeof memoryTracing>,
): Promise<KeelNode> {
  const traced = { tracerProvider: t.provider };
  c.add("r1", [service], traced);
  c.add("r2", [service], traced);
  const caller = c.add("caller", [], traced);
  await c.start();
  return caller;
}

/** A service whose one action, `go`, takes null and always throws a KeelError with `code`. */
function alwaysThrows<const S extends string>(service: S, code: ErrorCode, message: string) {
  return defineService(service).action("go", {
    input: z.null(),
    output: z.null(),
    handler: () => {
      throw new KeelError(code, message);
    },
  });
}

const kindName = (k: SpanKind) => SpanKind[k];
const describeSpan = (s: ReadableSpan) =>
  `${kindName(s.kind)} ${s.name}@${String(s.attributes["keel.node"])}`;
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
const isSpan = (kind: SpanKind, name: string, node: string) => (s: ReadableSpan) =>
  s.kind === kind && s.name === name && s.attributes["keel.node"] === node;

const leaf = defineService("leaf").action("get", {
  input: z.object({ id: z.string() }),
  output: z.object({ id: z.string(), by: z.string() }),
  handler: async ({ id }, ctx) => {
    await ctx.env.timers.sleep(2);
    return { id, by: ctx.node };
  },
});

const middle = defineService("middle", { version: 2 }).action("lookup", {
  input: z.object({ id: z.string() }),
  output: z.object({ id: z.string(), by: z.string() }),
  handler: async ({ id }, ctx) => {
    await ctx.env.timers.sleep(1); // the downstream call happens after an await, on purpose
    return ctx.call(leaf, "get", { id });
  },
});

describe("tracing: calls", () => {
  it("a three-hop call over the in-process network is one trace with client and server spans", async () => {
    const t = memoryTracing();
    await using c = cluster("trace-3hop");
    c.add("c", [leaf], { tracerProvider: t.provider });
    c.add("b", [middle], { tracerProvider: t.provider });
    const a = c.add("a", [], { tracerProvider: t.provider });
    await c.start();
    const out = capture(a.call(middle, "lookup", { id: "x" }));
    await c.env.advance(20);
    assert.deepEqual(out.value, { id: "x", by: "c" });

    const clientA = t.one(isSpan(SpanKind.CLIENT, "middle/lookup", "a"), "client a→b");
    const serverB = t.one(isSpan(SpanKind.SERVER, "middle/lookup", "b"), "server on b");
    const clientB = t.one(isSpan(SpanKind.CLIENT, "leaf/get", "b"), "client b→c");
    const serverC = t.one(isSpan(SpanKind.SERVER, "leaf/get", "c"), "server on c");
    assert.equal(t.spans().length, 4);

    // One trace; each span the child of the one before it.
    const traceId = clientA.spanContext().traceId;
    for (const s of [serverB, clientB, serverC]) assert.equal(s.spanContext().traceId, traceId);
    assert.equal(parentOf(clientA), undefined, "the first call is a root: no span was active");
    assert.equal(parentOf(serverB), clientA.spanContext().spanId);
    assert.equal(parentOf(clientB), serverB.spanContext().spanId);
    assert.equal(parentOf(serverC), clientB.spanContext().spanId);

    // RPC semantic-convention attributes, and keel's own.
    assert.deepEqual(
      {
        system: clientA.attributes["rpc.system"],
        service: clientA.attributes["rpc.service"],
        method: clientA.attributes["rpc.method"],
        version: clientA.attributes["keel.service.version"],
        server: clientA.attributes["server.address"],
        attempts: clientA.attributes["keel.attempts"],
        error: clientA.attributes["error.type"],
      },
      {
        system: "keel",
        service: "middle",
        method: "lookup",
        version: 2,
        server: "b",
        attempts: undefined, // only when more than one
        error: undefined,
      },
    );
    assert.equal(serverB.attributes["client.address"], "a");
    assert.equal(serverB.attributes["keel.node"], "b");
    assert.equal(serverC.attributes["keel.service.version"], undefined, "version 1 is implied");
    assert.equal(serverC.attributes["client.address"], "b");
    for (const s of t.spans()) assert.equal(s.status.code, SpanStatusCode.UNSET);

    // Times come from the nodes' virtual clocks: the leaf slept 2 ms of virtual time.
    const ms = (s: ReadableSpan) => s.duration[0] * 1000 + s.duration[1] / 1e6;
    assert.ok(ms(serverC) >= 2 && ms(serverC) < 3, `leaf span took ${ms(serverC)} ms`);
    assert.ok(ms(clientA) >= ms(serverB) && ms(serverB) >= ms(clientB));
  });

  it("a call only this node serves is one INTERNAL span, and its handler's calls are its children", async () => {
    const t = memoryTracing();
    const inner = defineService("inner").action("inc", {
      input: z.number(),
      output: z.number(),
      handler: (x) => x + 1,
    });
    const local = defineService("local").action("twice", {
      input: z.number(),
      output: z.number(),
      handler: async (x, ctx) => (await ctx.call(inner, "inc", x)) * 2,
    });
    await using c = cluster("trace-local");
    const a = c.add("a", [local, inner], { tracerProvider: t.provider });
    await c.start();
    assert.equal(await a.call(local, "twice", 20), 42);
    assert.equal(t.spans().length, 2);
    const outer = t.one(isSpan(SpanKind.INTERNAL, "local/twice", "a"), "outer");
    const child = t.one(isSpan(SpanKind.INTERNAL, "inner/inc", "a"), "inner");
    assert.equal(parentOf(child), outer.spanContext().spanId);
    assert.equal(child.spanContext().traceId, outer.spanContext().traceId);
    assert.equal(outer.attributes["rpc.service"], "local");
    assert.equal(outer.attributes["rpc.method"], "twice");
  });

  it("with localCallSpans: 'client-server', a same-node call gets a client and a server span", async () => {
    const t = memoryTracing();
    const local = defineService("local").action("twice", {
      input: z.number(),
      output: z.number(),
      handler: (x) => x * 2,
    });
    await using c = cluster("trace-local-two");
    const a = c.add("a", [local], { tracerProvider: t.provider, localCallSpans: "client-server" });
    await c.start();
    assert.equal(await a.call(local, "twice", 21), 42);
    const client = t.one(isSpan(SpanKind.CLIENT, "local/twice", "a"), "client");
    const server = t.one(isSpan(SpanKind.SERVER, "local/twice", "a"), "server");
    assert.equal(parentOf(server), client.spanContext().spanId);
    assert.equal(client.attributes["server.address"], "a");
  });

  it("a node option localCallSpans other than 'one' or 'client-server' is refused", () => {
    const c = cluster("trace-local-bad");
    assert.throws(
      () => c.add("a", [], { localCallSpans: "two" as "one" }),
      (err: unknown) => hasCode(err, "CONFIGURATION") && /localCallSpans/.test(String(err)),
    );
  });

  for (const [mode, kinds] of [
    ["one", [SpanKind.INTERNAL]],
    ["client-server", [SpanKind.CLIENT, SpanKind.SERVER]],
  ] as const) {
    it(`a same-node call's spans end with its request: its time, its error (${mode})`, async () => {
      const t = memoryTracing();
      const local = defineService("local").action("slow", {
        input: z.number(),
        output: z.number(),
        handler: async (ms, ctx) => {
          await ctx.env.timers.sleep(ms);
          if (ms > 2) throw new KeelError("FAILED_PRECONDITION", "too slow");
          return ms;
        },
      });
      await using c = cluster(`trace-local-end-${mode}`);
      const a = c.add("a", [local], { tracerProvider: t.provider, localCallSpans: mode });
      await c.start();
      const ok = capture(a.call(local, "slow", 2));
      const failed = capture(a.call(local, "slow", 3));
      await c.env.advance(5);
      assert.equal(ok.value, 2);
      assert.ok(hasCode(failed.error, "FAILED_PRECONDITION"));
      const ms = (s: ReadableSpan) => s.duration[0] * 1000 + s.duration[1] / 1e6;
      const spans = t.spans();
      assert.equal(spans.length, 2 * kinds.length);
      for (const kind of kinds) {
        const [good, bad] = spans.filter((s) => s.kind === kind).sort((x, y) => ms(x) - ms(y));
        assert.ok(ms(good!) >= 2 && ms(good!) < 3, `${kindName(kind)} took ${ms(good!)} ms`);
        assert.equal(good!.status.code, SpanStatusCode.UNSET);
        assert.ok(ms(bad!) >= 3 && ms(bad!) < 4, `${kindName(kind)} took ${ms(bad!)} ms`);
        assert.equal(bad!.status.code, SpanStatusCode.ERROR);
        assert.equal(bad!.attributes["error.type"], "FAILED_PRECONDITION");
      }
    });
  }

  it("a failed call has status ERROR with the KeelError code on both sides", async () => {
    const t = memoryTracing();
    const failing = alwaysThrows("failing", "FAILED_PRECONDITION", "not today");
    await using c = cluster("trace-fail");
    c.add("s", [failing], { tracerProvider: t.provider });
    const a = c.add("a", [], { tracerProvider: t.provider });
    await c.start();
    const out = capture(a.call(failing, "go", null));
    await c.env.advance(5);
    assert.ok(hasCode(out.error, "FAILED_PRECONDITION"));
    for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
      const s = t.one((x) => x.kind === kind, kindName(kind));
      assert.equal(s.status.code, SpanStatusCode.ERROR);
      assert.match(s.status.message ?? "", /^FAILED_PRECONDITION: not today/);
      assert.equal(s.attributes["error.type"], "FAILED_PRECONDITION");
    }
  });

  it("a retried call shows its attempts: retry events on the call span, one server span each", async () => {
    const t = memoryTracing();
    const flaky = defineService("flaky").action("get", {
      input: z.null(),
      output: z.string(),
      idempotent: true,
      handler: async (_, ctx) => {
        await ctx.env.timers.sleep(1);
        if (ctx.node === "r1") throw new KeelError("UNAVAILABLE", "r1 is down");
        return ctx.node;
      },
    });
    await using c = cluster("trace-retry");
    const caller = await tracedReplicas(c, flaky, t);
    const policy = retry({
      env: c.env,
      maxAttempts: 3,
      backoff: { kind: "constant", delayMs: 20 },
      maxDelayMs: 100,
    });
    // Land the first attempt on r1: round-robin from a fresh caller, tried until it does.
    let result: string | undefined;
    for (let i = 0; i < 4 && result === undefined; i++) {
      t.exporter.reset();
      const out = capture(
        caller.call(flaky, "get", null, { balancer: "round-robin", retry: policy }),
      );
      await c.env.advance(60);
      if (t.spans().some(isSpan(SpanKind.SERVER, "flaky/get", "r1"))) result = out.value;
    }
    assert.equal(result, "r2");
    const call = t.one((s) => s.kind === SpanKind.CLIENT, "call");
    const retries = call.events.filter((e) => e.name === "keel.retry");
    assert.equal(retries.length, 1);
    assert.deepEqual(retries[0]!.attributes, {
      "keel.service": "flaky@1",
      "keel.action": "get",
      "keel.attempt": 1,
      "keel.delay_ms": 20,
      "error.type": "UNAVAILABLE",
    });
    assert.equal(call.attributes["keel.attempts"], 2);
    assert.equal(call.attributes["server.address"], "r2");
    const attempts = t.spans().filter((s) => s.kind === SpanKind.SERVER);
    assert.deepEqual(attempts.map((s) => s.attributes["keel.node"]).sort(), ["r1", "r2"]);
    for (const s of attempts) assert.equal(parentOf(s), call.spanContext().spanId);
    const r1 = attempts.find((s) => s.attributes["keel.node"] === "r1")!;
    assert.equal(r1.status.code, SpanStatusCode.ERROR);
    assert.equal(call.status.code, SpanStatusCode.UNSET);
  });

  it("a breaker opening is an event on the span of the call that tripped it", async () => {
    const t = memoryTracing();
    const down = alwaysThrows("down", "UNAVAILABLE", "down");
    await using c = cluster("trace-breaker");
    c.add("r1", [down]);
    const caller = c.add("caller", [], {
      tracerProvider: t.provider,
      breaker: { policy: { kind: "consecutive", threshold: 2 }, halfOpenAfterMs: 1000 },
    });
    await c.start();
    for (let i = 0; i < 3; i++) {
      capture(caller.call(down, "go", null));
      await c.env.advance(5);
    }
    const calls = t.spans().filter((s) => s.kind === SpanKind.CLIENT);
    assert.equal(calls.length, 3);
    const opened = calls.flatMap((s) => s.events.filter((e) => e.name === "keel.breaker"));
    assert.equal(opened.length, 1, "one transition, on the second call");
    assert.deepEqual(
      calls[1]!.events.map((e) => e.name),
      ["keel.breaker"],
    );
    assert.deepEqual(opened[0]!.attributes, {
      "keel.peer": "r1",
      "keel.service": "down@1",
      "keel.from": "closed",
      "keel.to": "open",
    });
    // The third call found no endpoint whose breaker lets it through.
    assert.equal(calls[2]!.attributes["error.type"], "UNAVAILABLE");
  });

  it("a request shed by a rate limit is a server span with a keel.shed event", async () => {
    const t = memoryTracing();
    const limited = defineService("limited").action("go", {
      input: z.null(),
      output: z.null(),
      limits: { rate: { ratePerSecond: 1, burst: 1 } },
      handler: () => null,
    });
    await using c = cluster("trace-shed");
    c.add("s", [limited], { tracerProvider: t.provider });
    const a = c.add("a", []);
    await c.start();
    const first = capture(a.call(limited, "go", null));
    const second = capture(a.call(limited, "go", null));
    await c.env.advance(5);
    assert.equal(first.value, null);
    assert.ok(hasCode(second.error, "RATE_LIMITED"));
    const shed = t.one((s) => s.events.some((e) => e.name === "keel.shed"), "shed");
    assert.equal(shed.kind, SpanKind.SERVER);
    assert.equal(shed.attributes["error.type"], "RATE_LIMITED");
    assert.deepEqual(shed.events[0]!.attributes, {
      "keel.service": "limited",
      "keel.action": "go",
      "error.type": "RATE_LIMITED",
      "keel.by": "rate",
    });
  });

  it("a hedged call has one span, hedge events, and a server span per attempt", async () => {
    const t = memoryTracing();
    const slowOnR1 = defineService("slow").action("get", {
      input: z.null(),
      output: z.string(),
      idempotent: true,
      handler: async (_, ctx) => {
        await ctx.env.timers.sleep(ctx.node === "r1" ? 50 : 1, ctx.signal);
        return ctx.node;
      },
    });
    await using c = cluster("trace-hedge");
    const caller = await tracedReplicas(c, slowOnR1, t);
    let done = false;
    for (let i = 0; i < 4 && !done; i++) {
      t.exporter.reset();
      const out = capture(
        caller.call(slowOnR1, "get", null, {
          balancer: "round-robin",
          hedge: hedge({ env: c.env, delayMs: 10, maxHedges: 1 }),
        }),
      );
      await c.env.advance(80);
      done = out.value === "r2" && t.spans().filter((s) => s.kind === SpanKind.SERVER).length === 2;
    }
    assert.ok(done, "a hedge went to r2 while r1 was slow");
    const call = t.one((s) => s.kind === SpanKind.CLIENT, "one call span");
    assert.equal(call.attributes["keel.attempts"], 2);
    assert.deepEqual(
      call.events.map((e) => [e.name, e.attributes?.["keel.attempt"]]),
      [["keel.hedge", 1]],
    );
    for (const s of t.spans().filter((x) => x.kind === SpanKind.SERVER))
      assert.equal(parentOf(s), call.spanContext().spanId);
  });
});

describe("tracing: events", () => {
  it("delivery is a CONSUMER span linked to the PRODUCER span of the emit", async () => {
    const t = memoryTracing();
    const placed = defineEvent("order.placed", z.object({ id: z.string() }));
    const seen: string[] = [];
    const orders = defineService("orders").action("place", {
      input: z.object({ id: z.string() }),
      output: z.null(),
      handler: ({ id }, ctx) => {
        ctx.emit(placed, { id });
        return null;
      },
    });
    const audit = defineService("audit").on(placed, ({ id }, ctx) => {
      seen.push(`${id}:${ctx.traceContext === undefined ? "no-tc" : "tc"}`);
    });
    await using c = cluster("trace-events");
    c.add("o", [orders], { tracerProvider: t.provider });
    c.add("x", [audit], { tracerProvider: t.provider });
    const a = c.add("a", [], { tracerProvider: t.provider });
    await c.start();
    capture(a.call(orders, "place", { id: "o1" }));
    await c.env.advance(10);
    assert.deepEqual(seen, ["o1:tc"]);
    const server = t.one(isSpan(SpanKind.SERVER, "orders/place", "o"), "server");
    const producer = t.one((s) => s.kind === SpanKind.PRODUCER, "producer");
    const consumer = t.one((s) => s.kind === SpanKind.CONSUMER, "consumer");
    assert.equal(producer.name, "send order.placed");
    assert.equal(producer.attributes["messaging.destination.name"], "order.placed");
    assert.equal(producer.attributes["messaging.operation.name"], "emit");
    assert.equal(parentOf(producer), server.spanContext().spanId, "emitted from the handler");
    assert.equal(consumer.name, "process order.placed");
    assert.equal(consumer.attributes["keel.node"], "x");
    assert.equal(consumer.attributes["messaging.consumer.group.name"], "audit");
    assert.equal(consumer.links.length, 1);
    assert.deepEqual(consumer.links[0]!.context.spanId, producer.spanContext().spanId);
    assert.equal(consumer.links[0]!.context.traceId, producer.spanContext().traceId);
    assert.equal(consumer.spanContext().traceId, producer.spanContext().traceId);
  });

  it("a failing subscriber's span has status ERROR", async () => {
    const t = memoryTracing();
    const ping = defineEvent("ping", z.null());
    const bad = defineService("bad").on(ping, () => {
      throw new KeelError("INVALID_ARGUMENT", "nope");
    });
    await using c = cluster("trace-event-fail");
    const n = c.add("n", [bad], { tracerProvider: t.provider });
    await c.start();
    n.emit(ping, null);
    await c.env.advance(1);
    const consumer = t.one((s) => s.kind === SpanKind.CONSUMER, "consumer");
    assert.equal(consumer.status.code, SpanStatusCode.ERROR);
    assert.equal(consumer.attributes["error.type"], "INVALID_ARGUMENT");
  });
});

describe("tracing: context", () => {
  const manager = new AsyncLocalStorageContextManager();
  before(() => {
    context.setGlobalContextManager(manager.enable());
  });
  after(() => {
    context.disable();
  });

  it("a call made under an active span is its child; handlers run with their server span active", async () => {
    const t = memoryTracing();
    const activeInHandler: string[] = [];
    const svc = defineService("svc").action("who", {
      input: z.null(),
      output: z.null(),
      handler: async (_, ctx) => {
        await ctx.env.timers.sleep(1);
        activeInHandler.push(trace.getActiveSpan()?.spanContext().spanId ?? "none");
        return null;
      },
    });
    await using c = cluster("trace-active");
    c.add("s", [svc], { tracerProvider: t.provider });
    const a = c.add("a", [], { tracerProvider: t.provider });
    await c.start();
    const tracer = t.provider.getTracer("app");
    const outer = tracer.startSpan("http GET /who");
    const out = context.with(trace.setSpan(context.active(), outer), () =>
      capture(a.call(svc, "who", null)),
    );
    await c.env.advance(5);
    outer.end();
    assert.equal(out.value, null);
    const client = t.one((s) => s.kind === SpanKind.CLIENT, "client");
    const server = t.one((s) => s.kind === SpanKind.SERVER, "server");
    assert.equal(parentOf(client), outer.spanContext().spanId);
    assert.equal(client.spanContext().traceId, outer.spanContext().traceId);
    assert.deepEqual(activeInHandler, [server.spanContext().spanId]);
  });

  it("the handler runs with the call's span active and keeps the caller's other context values", async () => {
    const t = memoryTracing();
    const tenant = createContextKey("tenant");
    const seen: Array<{ span?: string; tenant: unknown; afterSet: unknown; afterDelete: unknown }> =
      [];
    const svc = defineService("svc").action("who", {
      input: z.null(),
      output: z.null(),
      handler: async (_, ctx) => {
        await ctx.env.timers.sleep(1);
        const active = context.active();
        const other = createContextKey("other");
        const set = active.setValue(other, 7);
        seen.push({
          ...(trace.getActiveSpan() === undefined
            ? {}
            : { span: trace.getActiveSpan()!.spanContext().spanId }),
          tenant: active.getValue(tenant),
          afterSet: [set.getValue(other), set.getValue(tenant), trace.getSpan(set) !== undefined],
          afterDelete: [
            set.deleteValue(tenant).getValue(tenant),
            set.deleteValue(other).getValue(other),
          ],
        });
        return null;
      },
    });
    await using c = cluster("trace-active-local");
    const a = c.add("a", [svc], { tracerProvider: t.provider });
    await c.start();
    const out = context.with(context.active().setValue(tenant, "acme"), () =>
      capture(a.call(svc, "who", null)),
    );
    await c.env.advance(5);
    assert.equal(out.value, null);
    const span = t.one((s) => s.kind === SpanKind.INTERNAL, "internal");
    assert.deepEqual(seen, [
      {
        span: span.spanContext().spanId,
        tenant: "acme",
        afterSet: [7, "acme", true],
        afterDelete: [undefined, undefined],
      },
    ]);
  });

  it("the caller's tracestate reaches the server span, the handler, nested calls and event consumers", async () => {
    const t = memoryTracing();
    const seen: Array<string | undefined> = [];
    const note = defineEvent("noted", z.null());
    const listener = defineService("listener").on(note, (_, ctx) => {
      seen.push(`event:${ctx.traceState}`);
    });
    const inner = defineService("inner").action("see", {
      input: z.null(),
      output: z.null(),
      handler: (_, ctx) => {
        seen.push(`inner:${ctx.traceState}`);
        ctx.emit(note, null);
        return null;
      },
    });
    const outer = defineService("outer").action("go", {
      input: z.null(),
      output: z.null(),
      handler: (_, ctx) => {
        seen.push(`outer:${ctx.traceState}`);
        return ctx.call(inner, "see", null);
      },
    });
    await using c = cluster("trace-state");
    c.add("o", [outer], { tracerProvider: t.provider });
    c.add("i", [inner], { tracerProvider: t.provider });
    c.add("l", [listener], { tracerProvider: t.provider });
    const a = c.add("a", [], { tracerProvider: t.provider });
    await c.start();
    // The caller continues a trace whose upstream sent a tracestate.
    const upstream = trace.setSpanContext(context.active(), {
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      traceFlags: 1,
      isRemote: true,
      traceState: createTraceState("vendor=abc,other=1"),
    });
    const out = context.with(upstream, () => capture(a.call(outer, "go", null)));
    await c.env.advance(10);
    assert.equal(out.value, null);
    assert.deepEqual(seen.sort(), [
      "event:vendor=abc,other=1",
      "inner:vendor=abc,other=1",
      "outer:vendor=abc,other=1",
    ]);
    for (const s of t.spans()) {
      assert.equal(s.spanContext().traceState?.serialize(), "vendor=abc,other=1", describeSpan(s));
    }
  });
});

describe("tracing: tracestate", () => {
  it("sends at most 512 characters of tracestate, dropping whole entries from the end", () => {
    const entries = Array.from({ length: 32 }, (_, i) => `k${i}=${"v".repeat(20)}`);
    // The API's own parser keeps nothing over 512 characters; another TraceState may hold more.
    const text = entries.join(",");
    const long: TraceState = {
      set: () => long,
      unset: () => long,
      get: () => undefined,
      serialize: () => text,
    };
    const sc = { traceId: "1".repeat(32), spanId: "2".repeat(16), traceFlags: 1, traceState: long };
    const sent = tracestate(sc) ?? "";
    assert.ok(sent.length <= 512 && sent.length > 450, `${sent.length} characters`);
    assert.ok(text.startsWith(sent) && !sent.endsWith(","));
    assert.equal(tracestate({ ...sc, traceState: createTraceState("") }), undefined);
    assert.equal(tracestate({ traceId: sc.traceId, spanId: sc.spanId, traceFlags: 1 }), undefined);
  });
});

describe("tracing: off", () => {
  it("with no provider and no SDK registered, nothing is traced and the caller's traceparent and tracestate pass through", async () => {
    const seen: Array<[string | undefined, string | undefined]> = [];
    const inner = defineService("inner").action("see", {
      input: z.null(),
      output: z.null(),
      handler: (_, ctx) => {
        seen.push([ctx.traceContext, ctx.traceState]);
        return null;
      },
    });
    const outer = defineService("outer").action("go", {
      input: z.null(),
      output: z.null(),
      handler: (_, ctx) => ctx.call(inner, "see", null),
    });
    await using c = cluster("trace-off");
    c.add("i", [inner]);
    c.add("o", [outer]);
    await c.start();
    // A raw request carrying a traceparent, as an upstream service would send it.
    const tc = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const network = c.network;
    const raw = network.transport("raw");
    await raw.connect();
    raw.send(
      "o",
      jsonCodec.encode({
        v: 1,
        k: "req",
        id: "1",
        from: "raw",
        svc: "outer",
        ver: 1,
        act: "go",
        dl: 1000,
        p: null,
        tc,
        ts: "vendor=abc,other=1",
      }),
    );
    await c.env.advance(5);
    assert.deepEqual(seen, [[tc, "vendor=abc,other=1"]]);
    await raw.close();
  });

  it("handler log lines carry the trace id of an incoming traceparent even with tracing off", async () => {
    const lines: string[] = [];
    const svc = defineService("svc").action("go", {
      input: z.null(),
      output: z.null(),
      handler: (_, ctx) => {
        ctx.log.warn({}, "inside");
        return null;
      },
    });
    await using c = cluster("trace-off-log");
    c.add("s", [svc], {
      logger: createJsonLogger({ write: (l) => lines.push(l), level: "warn" }),
    });
    await c.start();
    const raw = c.network.transport("raw");
    await raw.connect();
    const tc = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    raw.send(
      "s",
      jsonCodec.encode({
        v: 1,
        k: "req",
        id: "1",
        from: "raw",
        svc: "svc",
        ver: 1,
        act: "go",
        dl: 1000,
        p: null,
        tc,
      }),
    );
    await c.env.advance(5);
    const line = JSON.parse(lines.find((l) => l.includes("inside"))!) as Record<string, unknown>;
    assert.equal(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert.equal(line["service"], "svc");
    assert.equal(line["action"], "go");
    assert.equal(line["node"], "s");
    await raw.close();
  });
});
