/**
 * The wire: a versioned envelope, two codecs (JSON and MessagePack), a frame size limit and strict
 * decoding that turns anything malformed into a PROTOCOL error.
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
await b.stop();
await a.stop();
console.log("\nok");
