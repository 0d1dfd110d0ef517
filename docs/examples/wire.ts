/**
 * The wire: a versioned envelope, two codecs (JSON and MessagePack), a frame size limit (which
 * each node announces, so a caller refuses a request too big for its receiver), strict decoding
 * that turns anything malformed into a PROTOCOL error, and what happens when two nodes do not
 * share a codec.
 *
 * Run from the repository root: npx node docs/examples/wire.ts
 * (MessagePack needs the optional peer dependency `msgpackr`.)
 */
import {
  type Codec,
  createInProcessNetwork,
  createNode,
  createVirtualEnv,
  DEFAULT_MAX_FRAME_BYTES,
  defineService,
  type Envelope,
  encodeChecked,
  hasCode,
  jsonCodec,
  type RequestFrame,
  silentLogger,
  WIRE_VERSION,
} from "@keel/core";
import { msgpackCodec } from "@keel/core/msgpack";
import { z } from "zod";

// --- 1. The same request envelope in both codecs. ---------------------------------------------
const request: RequestFrame = {
  v: WIRE_VERSION,
  k: "req",
  id: "1a",
  from: "web-1",
  svc: "orders",
  ver: 1,
  act: "get",
  dl: 2_500, // the remaining budget in ms, never an absolute time
  p: { orderId: "o-42", lines: [1, 2, 3] },
  ik: "order-o-42",
  meta: { tenant: "acme" },
};
for (const codec of [jsonCodec, msgpackCodec]) {
  const bytes = codec.encode(request);
  const back = codec.decode(bytes, DEFAULT_MAX_FRAME_BYTES);
  console.log(
    `1. ${codec.name.padEnd(7)} ${bytes.byteLength} bytes, round trip ok: ${back.k === "req" && back.dl === 2_500}`,
  );
}

// A BigInt in a payload: JSON cannot encode it at all; MessagePack sends a 64-bit integer, which
// arrives as a number (rounded beyond 2^53), never as a BigInt.
const withBigInt = { ...request, p: { orderId: "o-42", cents: 12_345n } } as unknown as Envelope;
try {
  encodeChecked(jsonCodec, withBigInt, DEFAULT_MAX_FRAME_BYTES);
  throw new Error("expected INVALID_ARGUMENT");
} catch (err) {
  if (!hasCode(err, "INVALID_ARGUMENT")) throw err;
  console.log(`1. json    BigInt payload: ${err.code}: ${err.message}`);
}
const unpacked = msgpackCodec.decode(msgpackCodec.encode(withBigInt), DEFAULT_MAX_FRAME_BYTES);
const cents = unpacked.k === "req" ? (unpacked.p as { cents: unknown }).cents : undefined;
console.log(`1. msgpack BigInt payload: arrives as ${typeof cents} ${String(cents)}`);
if (cents !== 12_345) throw new Error("msgpack: 64-bit integers decode as numbers");

// --- 2. Strict decoding: every problem is a PROTOCOL KeelError with a clear message. ----------
const refuse = (
  label: string,
  codec: Codec,
  frame: Uint8Array,
  limit = DEFAULT_MAX_FRAME_BYTES,
) => {
  try {
    codec.decode(frame, limit);
  } catch (err) {
    if (!hasCode(err, "PROTOCOL")) throw err;
    const details = err.details === undefined ? "" : ` ${JSON.stringify(err.details)}`;
    console.log(`2. ${label.padEnd(20)} PROTOCOL: ${err.message}${details}`);
    return;
  }
  throw new Error(`${label}: expected a PROTOCOL error`);
};
const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
refuse("not JSON", jsonCodec, new TextEncoder().encode("{oops"));
refuse("unknown version", jsonCodec, json({ ...request, v: 2 }));
refuse("bad field", jsonCodec, json({ ...request, dl: "soon" }));
refuse("unknown kind", jsonCodec, json({ v: 1, k: "gossip", from: "x" }));
refuse("over the limit", jsonCodec, jsonCodec.encode(request), 64);
refuse("MessagePack as JSON", jsonCodec, msgpackCodec.encode(request));

// --- 3. A cluster on MessagePack: every node of a network must use the same codec. -----------
const env = createVirtualEnv({ seed: 9 });
const network = createInProcessNetwork({ env });
const echo = defineService("echo").action("say", {
  input: z.object({ text: z.string() }),
  output: z.object({ text: z.string(), bytes: z.number() }),
  handler: ({ text }) => ({ text, bytes: text.length }),
});
const common = { env, codec: msgpackCodec, logger: silentLogger };
const a = createNode({ ...common, id: "a", transport: network.transport("a"), services: [echo] });
const b = createNode({ ...common, id: "b", transport: network.transport("b") });
await a.start();
await b.start();
await b.waitForEndpoints(echo);
const reply = await b.call(echo, "say", { text: "über MessagePack" });
console.log(
  `3. msgpack cluster: ${JSON.stringify(reply)} | protocol errors: ${a.stats.protocolErrors + b.stats.protocolErrors}`,
);
if (reply.text !== "über MessagePack" || a.stats.protocolErrors + b.stats.protocolErrors !== 0) {
  throw new Error("msgpack cluster");
}

// --- 4. Frame limits are announced: a request too big for its receiver fails at the caller. --
await a.stop(); // from here on, echo is served by `small` only
const small = createNode({
  ...common,
  id: "small",
  transport: network.transport("small"),
  services: [echo],
  maxFrameBytes: 1_024, // b keeps the default 1 MiB
});
await small.start();
await b.waitForEndpoints(echo);
console.log(`4. b knows small accepts ${b.registry.node("small")?.maxFrameBytes} bytes`);
let refused: unknown;
try {
  await b.call(echo, "say", { text: "x".repeat(2_000) });
} catch (err) {
  refused = err;
}
// Refused by b before sending (remote: false), with small's limit: not a timeout at b, not a
// frame that small has to refuse unread.
if (!hasCode(refused, "PROTOCOL") || refused.remote || refused.details?.["limit"] !== 1_024) {
  throw new Error("expected a PROTOCOL error at the caller with the receiver's limit");
}
console.log(`   2 kB to small: PROTOCOL: ${refused.message} ${JSON.stringify(refused.details)}`);
if (small.stats.protocolErrors !== 0) throw new Error("nothing oversized reached small");
await small.stop();
await b.stop();

// --- 5. Codecs are not negotiated: a JSON node and a MessagePack node never meet. -----------
const mixed = createInProcessNetwork({ env });
const j = createNode({ env, logger: silentLogger, id: "j", transport: mixed.transport("j") });
const m = createNode({ ...common, id: "m", transport: mixed.transport("m") });
await j.start();
await m.start();
await env.advance(3_000);
const frames = mixed.stats.sent;
console.log(
  `5. json + msgpack, 3 s: j knows [${j.registry.nodes()}], m knows [${m.registry.nodes()}];`,
  `${frames} frames, protocol errors j=${j.stats.protocolErrors} m=${m.stats.protocolErrors}`,
);
// Each refuses the other's frames and answers with at most one perr per peer per second, so the
// traffic stays that of heartbeats (about 5 a second each) instead of a perr ping-pong.
if (j.registry.nodes().length !== 1 || m.registry.nodes().length !== 1) {
  throw new Error("nodes on different codecs cannot discover each other");
}
if (frames > 50 || j.stats.protocolErrors === 0) throw new Error("perr traffic is bounded");
await m.stop();
await j.stop();
console.log("\nok");
