import { KeelError } from "../errors/index.ts";
import { checkEnvelope, ProtocolViolation } from "./check.ts";
import type { Envelope } from "./envelope.ts";

/** Turns envelopes into bytes and back. `decode` throws only PROTOCOL KeelErrors. */
export interface Codec {
  readonly name: string;
  encode(envelope: Envelope): Uint8Array;
  /** Decodes and strictly checks one frame; frames over `maxBytes` are refused before parsing. */
  decode(frame: Uint8Array, maxBytes: number): Envelope;
}

/** Refuses an oversized frame before any parsing. */
export function checkSize(frame: Uint8Array, maxBytes: number): void {
  if (frame.byteLength > maxBytes) {
    throw new ProtocolViolation(
      `frame of ${frame.byteLength} bytes exceeds the limit of ${maxBytes}`,
      undefined,
      {
        size: frame.byteLength,
        limit: maxBytes,
      },
    );
  }
}

/** Wraps a parser so that whatever it throws becomes a PROTOCOL error. */
export function decodeWith(
  codec: string,
  frame: Uint8Array,
  maxBytes: number,
  parse: (f: Uint8Array) => unknown,
): Envelope {
  checkSize(frame, maxBytes);
  let value: unknown;
  try {
    value = parse(frame);
  } catch (cause) {
    throw new ProtocolViolation(`frame is not valid ${codec}`, undefined, {
      reason: cause instanceof Error ? cause.message : String(cause),
    });
  }
  return checkEnvelope(value);
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Heartbeats decoded already, by frame: on the in-process network a broadcast hands the same bytes
 * to every node, and heartbeats are most of a quiet cluster's traffic. A heartbeat has no payload
 * and is only read, so every receiver can share one frozen envelope.
 */
const decodedHeartbeats = new WeakMap<Uint8Array, Envelope>();

/** The JSON codec: readable, and the default on the in-process network. */
export const jsonCodec: Codec = {
  name: "json",
  encode(envelope) {
    // Buffer.from is several times cheaper than TextEncoder on fresh strings.
    return Buffer.from(JSON.stringify(envelope), "utf8");
  },
  decode(frame, maxBytes) {
    const known = decodedHeartbeats.get(frame);
    if (known !== undefined) {
      checkSize(frame, maxBytes);
      return known;
    }
    const envelope = decodeWith("JSON", frame, maxBytes, (f) => JSON.parse(decoder.decode(f)));
    if (envelope.k === "hb") decodedHeartbeats.set(frame, Object.freeze(envelope));
    return envelope;
  },
};

/** Encodes an envelope and refuses it when it is over the limit, before it reaches the wire. */
export function encodeChecked(codec: Codec, envelope: Envelope, maxBytes: number): Uint8Array {
  let frame: Uint8Array;
  try {
    frame = codec.encode(envelope);
  } catch (cause) {
    throw new KeelError("INVALID_ARGUMENT", `payload cannot be encoded with ${codec.name}`, {
      cause,
    });
  }
  if (frame.byteLength > maxBytes) {
    throw new KeelError(
      "PROTOCOL",
      `frame of ${frame.byteLength} bytes exceeds the limit of ${maxBytes}`,
      {
        details: { size: frame.byteLength, limit: maxBytes },
      },
    );
  }
  return frame;
}
