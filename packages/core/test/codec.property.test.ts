import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import fc from "fast-check";
import { Packr, Unpackr } from "msgpackr";
import {
  type Codec,
  type Envelope,
  ERROR_CODES,
  type ErrorCode,
  isKeelError,
  jsonCodec,
  ProtocolViolation,
  WIRE_VERSION,
} from "../src/index.ts";
import { msgpackCodec } from "../src/wire/msgpack.ts";

const LIMIT = 1 << 20;
const CODECS: readonly Codec[] = [jsonCodec, msgpackCodec];
const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

const isProtocol = (err: unknown): boolean => isKeelError(err) && err.code === "PROTOCOL";

/** Decodes and returns the PROTOCOL error it throws; fails on success or on any other error. */
function refusal(codec: Codec, frame: Uint8Array, limit = LIMIT): ProtocolViolation {
  try {
    codec.decode(frame, limit);
  } catch (err) {
    assert.ok(isProtocol(err), `${codec.name}: expected a PROTOCOL KeelError, got ${String(err)}`);
    assert.ok(err instanceof ProtocolViolation);
    return err;
  }
  assert.fail(`${codec.name}: the frame was accepted`);
}

/** Decoding either succeeds with a frame of this wire version or throws PROTOCOL; nothing else. */
function decodesOrRefuses(codec: Codec, frame: Uint8Array): void {
  let decoded: Envelope;
  try {
    decoded = codec.decode(frame, LIMIT);
  } catch (err) {
    if (!isProtocol(err))
      throw new Error(`${codec.name} threw a non-PROTOCOL error: ${String(err)}`, { cause: err });
    return;
  }
  assert.equal(decoded.v, WIRE_VERSION);
  assert.equal(typeof decoded.from, "string");
}

/** What survives any codec: JSON's view of the envelope (no `undefined`, no `-0`). */
const normalise = (e: unknown): unknown => JSON.parse(JSON.stringify(e));

/** msgpackr renames `__proto__` keys (prototype-pollution guard), so such payloads cannot round-trip. */
const hasProtoKey = (v: unknown): boolean =>
  typeof v === "object" &&
  v !== null &&
  (Object.hasOwn(v, "__proto__") || Object.values(v).some((x) => hasProtoKey(x)));

// ---- arbitraries ---------------------------------------------------------------------------------

const name = fc.string({ minLength: 1, maxLength: 30 });
const id = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.string({ minLength: 256, maxLength: 256 }),
);
const inc = fc.string({ minLength: 1, maxLength: 64 });
const payload = fc.jsonValue({ maxDepth: 3 });
const finite = fc.double({ noNaN: true, noDefaultInfinity: true });
const safeKey = fc.string({ maxLength: 12 }).filter((k) => k !== "__proto__");

const wireError = fc.record(
  {
    code: fc.constantFrom(...CODES),
    message: fc.string({ maxLength: 60 }),
    retryable: fc.boolean(),
    details: fc.dictionary(safeKey, payload, { maxKeys: 3 }),
  },
  { requiredKeys: ["code", "message", "retryable"] },
);

const request = fc.record(
  {
    v: fc.constant(1 as const),
    k: fc.constant("req" as const),
    id,
    from: name,
    svc: name,
    ver: fc.nat(),
    act: name,
    dl: finite,
    p: payload,
    tc: fc.string({ maxLength: 512 }),
    ts: fc.string({ maxLength: 512 }),
    ik: fc.string({ maxLength: 512 }),
    caller: fc.record({ node: name, service: name }, { requiredKeys: ["node"] }),
    meta: fc.dictionary(safeKey, fc.string({ maxLength: 20 }), { maxKeys: 4 }),
  },
  { requiredKeys: ["v", "k", "id", "from", "svc", "ver", "act", "dl", "p"] },
);

const responseOk = fc.record({
  v: fc.constant(1 as const),
  k: fc.constant("res" as const),
  id,
  from: name,
  ok: fc.constant(true as const),
  p: payload,
});

const responseErr = fc.record({
  v: fc.constant(1 as const),
  k: fc.constant("res" as const),
  id,
  from: name,
  ok: fc.constant(false as const),
  err: wireError,
});

const cancel = fc.record({
  v: fc.constant(1 as const),
  k: fc.constant("cancel" as const),
  id,
  from: name,
});

const event = fc.record(
  {
    v: fc.constant(1 as const),
    k: fc.constant("evt" as const),
    from: name,
    name,
    mode: fc.constantFrom("emit" as const, "broadcast" as const),
    grp: name,
    p: payload,
    tc: fc.string({ maxLength: 512 }),
    ts: fc.string({ maxLength: 512 }),
  },
  { requiredKeys: ["v", "k", "from", "name", "mode", "p"] },
);

const announce = fc.record(
  {
    v: fc.constant(1 as const),
    k: fc.constant("announce" as const),
    from: name,
    inc,
    seq: fc.nat(),
    state: fc.constantFrom("ready" as const, "draining" as const),
    services: fc.array(
      fc.record({
        name,
        version: fc.integer({ min: 1, max: 1_000 }),
        actions: fc.array(name, { maxLength: 4 }),
        events: fc.array(name, { maxLength: 4 }),
      }),
      { maxLength: 4 },
    ),
    reply: fc.boolean(),
  },
  { requiredKeys: ["v", "k", "from", "inc", "seq", "state", "services"] },
);

const heartbeat = fc.record({
  v: fc.constant(1 as const),
  k: fc.constant("hb" as const),
  from: name,
  inc,
  seq: fc.nat(),
});
const leave = fc.record({
  v: fc.constant(1 as const),
  k: fc.constant("leave" as const),
  from: name,
});
const protocolError = fc.record({
  v: fc.constant(1 as const),
  k: fc.constant("perr" as const),
  from: name,
  err: wireError,
});

const envelope: fc.Arbitrary<Envelope> = fc.oneof(
  request,
  responseOk,
  responseErr,
  cancel,
  event,
  announce,
  heartbeat,
  leave,
  protocolError,
);

// One valid frame of each kind, for the table tests.
const BASE: Record<string, Record<string, unknown>> = {
  req: {
    v: 1,
    k: "req",
    id: "r1",
    from: "a",
    svc: "orders",
    ver: 1,
    act: "create",
    dl: 500,
    p: { sku: "x" },
    tc: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ik: "key-1",
    caller: { node: "a", service: "web" },
    meta: { tenant: "t1" },
  },
  resOk: { v: 1, k: "res", id: "r1", from: "b", ok: true, p: [1, 2] },
  resErr: {
    v: 1,
    k: "res",
    id: "r1",
    from: "b",
    ok: false,
    err: { code: "OVERLOADED", message: "shed", retryable: true },
  },
  cancel: { v: 1, k: "cancel", id: "r1", from: "a" },
  evt: {
    v: 1,
    k: "evt",
    from: "a",
    name: "order.paid",
    mode: "emit",
    grp: "billing",
    p: { id: 1 },
  },
  announce: {
    v: 1,
    k: "announce",
    from: "a",
    inc: "0f3a9c1d",
    seq: 3,
    state: "ready",
    services: [{ name: "orders", version: 1, actions: ["create"], events: ["order.paid"] }],
    reply: true,
  },
  hb: { v: 1, k: "hb", from: "a", inc: "0f3a9c1d", seq: 0 },
  leave: { v: 1, k: "leave", from: "a" },
  perr: { v: 1, k: "perr", from: "b", err: { code: "PROTOCOL", message: "bad", retryable: false } },
};

const MISSING = Symbol("missing");
const long = (n: number) => "x".repeat(n);
const svc = (over: Record<string, unknown>) => [
  { name: "orders", version: 1, actions: [], events: [], ...over },
];

// [frame, field, bad values]: each bad value (or the field's absence) must be refused.
const BAD_FIELDS: ReadonlyArray<readonly [string, string, readonly unknown[]]> = [
  ["leave", "from", [MISSING, "", 5, null, long(257)]],
  ["req", "id", [MISSING, "", 7, null, long(257)]],
  ["req", "svc", [MISSING, "", {}, long(257)]],
  ["req", "ver", [MISSING, -1, 1.5, "1", null]],
  ["req", "act", [MISSING, "", []]],
  ["req", "dl", [MISSING, "100", null, true]],
  ["req", "tc", [5, null, long(513)]],
  ["req", "ts", [5, null, long(513)]],
  ["req", "ik", [5, false, long(513)]],
  ["req", "caller", ["a", {}, { node: 5 }, null, 1]],
  ["req", "meta", ["m", { tenant: 1 }, { a: null }, null]],
  ["resOk", "id", [MISSING, "", 1]],
  ["resOk", "ok", [MISSING, "true", 1, null]],
  [
    "resErr",
    "err",
    [MISSING, null, "boom", { code: "X" }, { message: "m" }, { code: 1, message: "m" }, []],
  ],
  ["cancel", "id", [MISSING, "", {}]],
  ["evt", "name", [MISSING, "", 3]],
  ["evt", "mode", [MISSING, "unicast", null, 1]],
  ["evt", "grp", [5, long(257)]],
  ["evt", "tc", [5, long(513)]],
  ["evt", "ts", [5, long(513)]],
  ["announce", "inc", [MISSING, "", 7, null, long(65)]],
  ["announce", "seq", [MISSING, -1, 0.5, "1"]],
  ["announce", "state", [MISSING, "up", null]],
  [
    "announce",
    "services",
    [
      MISSING,
      "orders",
      {},
      null,
      [null],
      ["orders"],
      svc({ name: 1 }),
      svc({ version: 1.5 }),
      svc({ version: "1" }),
      svc({ actions: "create" }),
      svc({ actions: [1] }),
      svc({ actions: [long(257)] }),
      svc({ events: null }),
      svc({ events: [{}] }),
    ],
  ],
  ["hb", "inc", [MISSING, "", 7, long(65)]],
  ["hb", "seq", [MISSING, -5, "3", 1.5, null]],
  ["perr", "err", [MISSING, "x", { code: "PROTOCOL" }, null]],
];

function withField(
  base: Record<string, unknown>,
  field: string,
  value: unknown,
): Record<string, unknown> {
  const frame = { ...base };
  if (value === MISSING) delete frame[field];
  else frame[field] = value;
  return frame;
}

// The codec encodes whatever object it is given: malformed frames are built as plain objects.
const encodeRaw = (codec: Codec, value: unknown): Uint8Array => codec.encode(value as Envelope);

// ---- tests ---------------------------------------------------------------------------------------

for (const codec of CODECS) {
  describe(`${codec.name} codec`, () => {
    it("round-trips arbitrary valid envelopes of every kind", () => {
      fc.assert(
        fc.property(envelope, (e) => {
          if (codec === msgpackCodec) fc.pre(!hasProtoKey(e));
          const decoded = codec.decode(codec.encode(e), LIMIT);
          assert.deepEqual(decoded, normalise(e));
        }),
        { seed: 1, numRuns: 400 },
      );
    });

    it("accepts each table frame as valid", () => {
      for (const [kind, frame] of Object.entries(BASE)) {
        assert.deepEqual(codec.decode(encodeRaw(codec, frame), LIMIT), frame, kind);
      }
    });

    it("throws only PROTOCOL errors for arbitrary bytes", () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => decodesOrRefuses(codec, bytes)),
        { seed: 2, numRuns: 500 },
      );
    });

    it("throws only PROTOCOL errors for valid frames with bytes overwritten", () => {
      fc.assert(
        fc.property(
          envelope,
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 4,
          }),
          (e, edits) => {
            const bytes = codec.encode(e).slice();
            for (const [at, value] of edits) bytes[at % bytes.length] = value;
            decodesOrRefuses(codec, bytes);
          },
        ),
        { seed: 3, numRuns: 400 },
      );
    });

    it("throws only PROTOCOL errors for valid frames with a field replaced or removed", () => {
      const field = fc.constantFrom(
        "v",
        "k",
        "id",
        "from",
        "svc",
        "ver",
        "act",
        "dl",
        "p",
        "tc",
        "ts",
        "ik",
        "caller",
        "meta",
        "ok",
        "err",
        "name",
        "mode",
        "grp",
        "inc",
        "seq",
        "state",
        "services",
      );
      const value = fc.oneof(fc.constant(MISSING), fc.jsonValue({ maxDepth: 2 }));
      fc.assert(
        fc.property(envelope, field, value, (e, key, v) => {
          decodesOrRefuses(codec, encodeRaw(codec, withField({ ...e }, key, v)));
        }),
        { seed: 4, numRuns: 400 },
      );
    });

    it("refuses every truncation of a valid frame with PROTOCOL", () => {
      fc.assert(
        fc.property(envelope, (e) => {
          const bytes = codec.encode(e);
          const step = Math.max(1, Math.floor(bytes.length / 25));
          for (let k = 0; k < bytes.length; k += step) refusal(codec, bytes.subarray(0, k));
          refusal(codec, bytes.subarray(0, bytes.length - 1));
        }),
        { seed: 5, numRuns: 200 },
      );
    });

    it("refuses a frame over the size limit with its size and the limit", () => {
      const bytes = codec.encode(BASE["req"] as unknown as Envelope);
      assert.deepEqual(
        codec.decode(bytes, bytes.length),
        BASE["req"],
        "a frame at the limit is fine",
      );
      const err = refusal(codec, bytes, bytes.length - 1);
      assert.deepEqual(err.details, { size: bytes.length, limit: bytes.length - 1 });
      // Oversized garbage is refused for its size, before any parsing.
      const big = new Uint8Array(LIMIT + 1).fill(0xff);
      assert.deepEqual(refusal(codec, big).details, { size: LIMIT + 1, limit: LIMIT });
    });

    it("refuses an unknown wire version, naming it", () => {
      for (const base of Object.values(BASE)) {
        const err = refusal(codec, encodeRaw(codec, { ...base, v: 2 }));
        assert.match(err.message, /\bversion 2\b/);
        assert.deepEqual(err.details, { version: 2, supported: [WIRE_VERSION] });
      }
      for (const v of [MISSING, 0, "1", null, 1.5]) {
        const err = refusal(codec, encodeRaw(codec, withField(BASE["hb"]!, "v", v)));
        assert.match(err.message, /version/);
      }
    });

    it("refuses a missing or ill-typed required field of each kind", () => {
      for (const [kind, field, values] of BAD_FIELDS) {
        for (const value of values) {
          const frame = withField(BASE[kind]!, field, value);
          const what = `${kind}.${field} = ${value === MISSING ? "(missing)" : JSON.stringify(value)}`;
          const err = refusal(codec, encodeRaw(codec, frame));
          assert.ok(err.message.length > 0, what);
          if (kind === "req" && field !== "id" && field !== "from") {
            // The node answers the caller with the request id it could read.
            assert.equal(err.frameId, "r1", what);
            assert.equal(err.frameFrom, "a", what);
            assert.equal(err.frameKind, "req", what);
          }
        }
      }
    });

    it("refuses unknown kinds and frames that are not objects", () => {
      for (const k of [MISSING, "nope", 5, null, "REQ"]) {
        assert.match(
          refusal(codec, encodeRaw(codec, withField(BASE["leave"]!, "k", k))).message,
          /kind/,
        );
      }
      for (const value of [[], [BASE["hb"]], "hb", 1, null, true]) {
        refusal(codec, encodeRaw(codec, value));
      }
    });

    it("refuses deeply nested input with PROTOCOL rather than a crash", () => {
      const depth = 200_000;
      const bytes =
        codec === jsonCodec
          ? new TextEncoder().encode(`${"[".repeat(depth)}${"]".repeat(depth)}`)
          : new Uint8Array(depth + 1).fill(0x91).fill(0xc0, depth);
      refusal(codec, bytes);
    });
  });
}

describe("jsonCodec specifics", () => {
  it("refuses invalid UTF-8 and trailing garbage", () => {
    const good = jsonCodec.encode(BASE["hb"] as unknown as Envelope);
    refusal(jsonCodec, new Uint8Array([...good.subarray(0, 10), 0xff, 0xfe, ...good.subarray(10)]));
    refusal(jsonCodec, new Uint8Array([...good, 0x7b]));
  });

  it("decodes a heartbeat broadcast to many nodes once: one frozen envelope per frame", () => {
    const frame = jsonCodec.encode(BASE["hb"] as unknown as Envelope);
    const first = jsonCodec.decode(frame, LIMIT);
    assert.equal(jsonCodec.decode(frame, LIMIT), first);
    assert.ok(Object.isFrozen(first));
    // The size limit still holds for a receiver with a smaller one.
    refusal(jsonCodec, frame, frame.byteLength - 1);
    // The same bytes in another buffer decode afresh; frames with a payload are never shared.
    const copy = jsonCodec.decode(new Uint8Array(frame), LIMIT);
    assert.notEqual(copy, first);
    assert.deepEqual(copy, first);
    const evt = jsonCodec.encode({
      v: 1,
      k: "evt",
      from: "a",
      name: "x",
      mode: "emit",
      p: { n: 1 },
    });
    assert.notEqual(jsonCodec.decode(evt, LIMIT), jsonCodec.decode(evt, LIMIT));
  });

  it("carries a payload with a __proto__ key as data, without touching prototypes", () => {
    const frame = jsonCodec.decode(
      new TextEncoder().encode(
        '{"v":1,"k":"evt","from":"a","name":"x","mode":"emit","p":{"__proto__":{"polluted":1}}}',
      ),
      LIMIT,
    );
    assert.equal(({} as Record<string, unknown>)["polluted"], undefined);
    assert.ok(frame.k === "evt");
    assert.deepEqual(Object.keys(frame.p as object), ["__proto__"]);
  });
});

describe("msgpackCodec specifics", () => {
  it("keeps every optional field of a request, each alone (the writer's fast path has none)", () => {
    const base = {
      v: 1,
      k: "req",
      id: "1z",
      from: "a",
      svc: "orders",
      ver: 1,
      act: "get",
      dl: 100,
      p: 7,
    } as const;
    const optional = {
      tc: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      ts: "vendor=abc",
      ik: "key-1",
      caller: { node: "b", service: "cart" },
      meta: { tenant: "t1" },
    };
    for (const [key, value] of Object.entries(optional)) {
      const frame = { ...base, [key]: value } as unknown as Envelope;
      assert.deepEqual(msgpackCodec.decode(msgpackCodec.encode(frame), LIMIT), frame, key);
    }
  });

  it("refuses trailing bytes after a frame", () => {
    const good = msgpackCodec.encode(BASE["hb"] as unknown as Envelope);
    refusal(msgpackCodec, new Uint8Array([...good, 0x01]));
  });
});

describe("msgpackCodec and 64-bit integers", () => {
  it("refuses frames whose v or k is a 64-bit integer with PROTOCOL, not a TypeError", () => {
    const frames = [
      // { v: uint64 1 }
      new Uint8Array([0x81, 0xa1, 0x76, 0xcf, 0, 0, 0, 0, 0, 0, 0, 1]),
      // { v: int64 2 }
      new Uint8Array([0x81, 0xa1, 0x76, 0xd3, 0, 0, 0, 0, 0, 0, 0, 2]),
      // { v: 1, from: "a", k: uint64 5 }
      new Uint8Array([
        0x83, 0xa1, 0x76, 0x01, 0xa4, 0x66, 0x72, 0x6f, 0x6d, 0xa1, 0x61, 0xa1, 0x6b, 0xcf, 0, 0, 0,
        0, 0, 0, 0, 5,
      ]),
    ];
    for (const frame of frames) {
      assert.throws(
        () => msgpackCodec.decode(frame, 1 << 20),
        (err: unknown) => isKeelError(err) && err.code === "PROTOCOL",
      );
    }
  });
});

describe("msgpackCodec's fast reader", () => {
  // The codec reads common frames itself and leaves the rest to msgpackr: both must agree.
  const reference = new Unpackr({
    useRecords: false,
    moreTypes: false,
    mapsAsObjects: true,
    int64AsType: "number",
  });
  const packr = new Packr({
    useRecords: false,
    moreTypes: false,
    mapsAsObjects: true,
    int64AsType: "number",
  });
  const frameWith = (p: unknown) =>
    packr.pack({ v: 1, k: "evt", from: "a", name: "x", mode: "emit", p });

  it("decodes any payload exactly as msgpackr does", () => {
    const payload = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: "small" },
        fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
        fc.double(),
        fc.maxSafeInteger(),
        fc.string({ maxLength: 70 }),
        fc.string({ unit: "grapheme", maxLength: 10 }),
        fc.constantFrom(null, undefined, true, false, "", "__proto__"),
        fc.uint8Array({ maxLength: 4 }),
        fc.array(tie("value"), { maxLength: 5 }),
        fc.dictionary(fc.string({ maxLength: 40 }), tie("value"), { maxKeys: 5 }),
      ),
    })).value;
    fc.assert(
      fc.property(payload, (p) => {
        const frame = frameWith(p);
        assert.deepEqual(msgpackCodec.decode(frame, LIMIT), reference.unpack(frame));
      }),
      { numRuns: 2000 },
    );
  });

  it("decodes hand-made encodings as msgpackr does", () => {
    const fixstr = (t: string) => [0xa0 | t.length, ...new TextEncoder().encode(t)];
    // { v: 1, k: "evt", from: "a", name: "x", mode: "emit", p: <seq> }, as a fixmap.
    const prefix = [
      0x86,
      ...fixstr("v"),
      0x01,
      ...[
        ["k", "evt"],
        ["from", "a"],
        ["name", "x"],
        ["mode", "emit"],
      ].flatMap(([key, value]) => [...fixstr(key as string), ...fixstr(value as string)]),
      ...fixstr("p"),
    ];
    const seqs = [
      [0x00],
      [0x7f],
      [0xcc, 0xff],
      [0xcd, 0xff, 0xff],
      [0xce, 0xff, 0xff, 0xff, 0xff],
      [0xd0, 0x80],
      [0xd1, 0x80, 0x00],
      [0xd2, 0x80, 0x00, 0x00, 0x00],
      [0xe0],
      [0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18],
    ];
    for (const seq of seqs) {
      const frame = new Uint8Array([...prefix, ...seq]);
      assert.deepEqual(msgpackCodec.decode(frame, LIMIT), reference.unpack(frame));
    }
    // Truncated anywhere, or with a trailing byte: PROTOCOL, never anything else.
    const good = new Uint8Array([...prefix, 0x05]);
    for (let n = 0; n < good.length; n++) refusal(msgpackCodec, good.subarray(0, n));
    refusal(msgpackCodec, new Uint8Array([...good, 0xc0]));
    // A map whose stated size overruns the frame, and an array of a billion elements.
    refusal(msgpackCodec, new Uint8Array([0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 0x76, 0x01]));
    refusal(msgpackCodec, new Uint8Array([0xdd, 0x3b, 0x9a, 0xca, 0x00, 0x01]));
  });
});

describe("msgpackCodec's writer", () => {
  // Requests and replies are written without msgpackr: the bytes must mean what msgpackr's do.
  const options = {
    useRecords: false,
    moreTypes: false,
    mapsAsObjects: true,
    int64AsType: "number",
  } as const;
  const reference = new Unpackr(options);
  const packr = new Packr(options);
  const text = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: "grapheme", maxLength: 8 }),
  );
  const payload = fc.oneof(
    fc.double(),
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    text,
    fc.constantFrom(null, undefined, true, false, -0),
    fc.jsonValue({ maxDepth: 3 }),
    fc.uint8Array({ maxLength: 8 }),
  );
  const number = fc.oneof(fc.double(), fc.integer({ min: -(2 ** 40), max: 2 ** 40 }));
  /** Requests and successful replies carrying `p`, with `extra` fields on requests. */
  const requestOf = <P, X extends Record<string, fc.Arbitrary<unknown>>>(
    p: fc.Arbitrary<P>,
    extra: X,
  ) =>
    fc.record({
      v: fc.constant(1),
      k: fc.constant("req"),
      id: text,
      from: text,
      svc: text,
      ver: number,
      act: text,
      dl: number,
      p,
      ...extra,
    });
  const replyOf = <P>(p: fc.Arbitrary<P>) =>
    fc.record({
      v: fc.constant(1),
      k: fc.constant("res"),
      id: text,
      from: text,
      ok: fc.constant(true),
      p,
    });

  it("writes requests and replies that decode as msgpackr's own encoding does", () => {
    const request = requestOf(payload, {});
    const reply = replyOf(payload);
    fc.assert(
      fc.property(fc.oneof(request, reply), (e) => {
        const frame = msgpackCodec.encode(e as unknown as Envelope);
        assert.deepEqual(reference.unpack(frame), reference.unpack(packr.pack(e)));
        let decoded: Envelope;
        try {
          decoded = msgpackCodec.decode(frame, LIMIT);
        } catch (err) {
          assert.ok(isProtocol(err)); // empty names and the like fail the envelope checks
          return;
        }
        assert.deepEqual(decoded, reference.unpack(frame));
      }),
      { numRuns: 3000 },
    );
  });

  it("writes frames of every kind, with any payload, that decode as msgpackr's own encoding does", () => {
    // Plain data goes to the codec's own writer, the rest (binary, dates, lone surrogates,
    // BigInt, class instances, deep nesting) to msgpackr: either way the same envelope arrives.
    class Point {
      x = 1;
    }
    const deep = (n: number): unknown => (n === 0 ? 1 : [deep(n - 1)]);
    const odd = fc.constantFrom<unknown>(
      new Date(0),
      new Point(),
      new Map([["a", 1]]),
      "\ud800 lone",
      `${"\udc00".repeat(70)}`,
      { "\ud800": 1 },
      deep(70),
      Object.create(null),
    );
    const anyPayload = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: "small" },
        payload,
        odd,
        fc.string({ maxLength: 300 }),
        fc.string({ unit: "grapheme", maxLength: 40 }),
        fc.array(tie("value"), { maxLength: 20 }),
        fc.dictionary(fc.string({ maxLength: 40 }), tie("value"), { maxKeys: 20 }),
      ),
    })).value;
    const frames = fc.oneof(
      fc.record({
        v: fc.constant(1),
        k: fc.constant("evt"),
        from: text,
        name: text,
        mode: fc.constantFrom("emit", "broadcast"),
        p: anyPayload,
      }),
      fc.record({
        v: fc.constant(1),
        k: fc.constant("announce"),
        from: text,
        inc: text,
        seq: number,
        state: fc.constant("ready"),
        services: fc.array(
          fc.record({
            name: text,
            version: number,
            actions: fc.array(text),
            events: fc.array(text),
          }),
          { maxLength: 3 },
        ),
      }),
      fc.record({ v: fc.constant(1), k: fc.constant("hb"), from: text, inc: text, seq: number }),
      requestOf(anyPayload, { meta: fc.dictionary(text, text, { maxKeys: 3 }) }),
      replyOf(anyPayload),
    );
    fc.assert(
      fc.property(frames, (e) => {
        const frame = msgpackCodec.encode(e as unknown as Envelope);
        assert.deepEqual(reference.unpack(frame), reference.unpack(packr.pack(e)));
      }),
      { numRuns: 3000 },
    );
  });

  it("writes values bigger than its slab, and leaves a map of over 65535 keys to msgpackr", () => {
    const big = {
      v: 1,
      k: "evt",
      from: "a",
      name: "x",
      mode: "emit",
      p: Array.from({ length: 3000 }, (_, i) => ({ i, s: "é".repeat(i % 50) })),
    };
    for (let i = 0; i < 3; i++) {
      const frame = msgpackCodec.encode(big as unknown as Envelope);
      assert.deepEqual(reference.unpack(frame), big);
    }
    const wide = { v: 1, k: "evt", from: "a", name: "x", mode: "emit", p: {} as object };
    wide.p = Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i]));
    // msgpackr refuses such a map; the codec's writer must not quietly write it instead.
    assert.throws(() => packr.pack(wide));
    assert.throws(() => msgpackCodec.encode(wide as unknown as Envelope));
  });

  it("loads msgpackr only for what its own readers and writers leave to it", () => {
    // A fresh process: a node's own frames (announce, heartbeat, requests and replies of plain
    // data) are written and read without msgpackr; a binary payload loads it.
    const script = `
      import { createRequire } from "node:module";
      import { msgpackCodec } from ${JSON.stringify(new URL("../src/wire/msgpack.ts", import.meta.url).href)};
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes("msgpackr"));
      const frames = [
        { v: 1, k: "announce", from: "n-1", inc: "x1", seq: 3, state: "ready",
          services: [{ name: "orders", version: 1, actions: ["place"], events: [] }], max: 1048576 },
        { v: 1, k: "hb", from: "n-1", inc: "x1", seq: 4 },
        { v: 1, k: "req", id: "1z", from: "n-1", svc: "orders", ver: 1, act: "place", dl: 5000,
          p: { items: [{ sku: "a", qty: 2.5 }], note: null, gift: undefined } },
        { v: 1, k: "res", id: "1z", from: "n-2", ok: true, p: { id: "o-1", total: 12 } },
        { v: 1, k: "leave", from: "n-1" },
      ];
      for (const f of frames) msgpackCodec.decode(msgpackCodec.encode(f), 1 << 20);
      // Its writer takes any string; its reader leaves non-ASCII ones to msgpackr.
      msgpackCodec.encode({ v: 1, k: "evt", from: "n-1", name: "e", mode: "emit", p: "café ☕ 𝄞" });
      const before = loaded();
      msgpackCodec.encode({ v: 1, k: "evt", from: "n-1", name: "e", mode: "emit", p: new Uint8Array(2) });
      process.stdout.write(JSON.stringify({ before, after: loaded() }));
    `;
    const out = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), { before: false, after: true });
  });

  it("still fails its import, with a CONFIGURATION error, when msgpackr is not installed", () => {
    const script = `
      import { registerHooks } from "node:module";
      registerHooks({
        resolve(specifier, context, next) {
          if (specifier !== "msgpackr") return next(specifier, context);
          throw Object.assign(new Error("Cannot find module 'msgpackr'"), { code: "MODULE_NOT_FOUND" });
        },
      });
      try {
        await import(${JSON.stringify(new URL("../src/wire/msgpack.ts", import.meta.url).href)});
      } catch (err) {
        process.stdout.write(JSON.stringify({ code: err.code, message: err.message }));
      }
    `;
    const out = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
    });
    assert.equal(out.status, 0, out.stderr);
    const err = JSON.parse(out.stdout) as { code: string; message: string };
    assert.equal(err.code, "CONFIGURATION");
    assert.match(err.message, /needs the msgpackr package/);
  });

  it("keeps the frames it returned intact while it writes more", () => {
    const frames: Array<[Uint8Array, Uint8Array]> = [];
    for (let i = 0; i < 5000; i++) {
      const frame = msgpackCodec.encode({
        v: 1,
        k: "res",
        id: `r${i}`,
        from: "n",
        ok: true,
        p: { i, pad: "x".repeat(i % 300) },
      });
      frames.push([frame, frame.slice()]);
    }
    for (const [frame, copy] of frames) assert.deepEqual(frame, copy);
  });
});
