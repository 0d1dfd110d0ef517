import { Packr } from "msgpackr";
import { type Codec, decodeWith } from "./codec.ts";

/** Creates the MessagePack codec (msgpackr, standard MessagePack without records). */
export function createMsgpackCodec(): Codec {
  const packr = new Packr({
    useRecords: false,
    moreTypes: false,
    mapsAsObjects: true,
    // 64-bit integers decode as numbers, never BigInt (which JSON and the envelope checks refuse).
    int64AsType: "number",
  });
  return {
    name: "msgpack",
    encode(envelope) {
      return packr.pack(envelope);
    },
    decode(frame, maxBytes) {
      return decodeWith("MessagePack", frame, maxBytes, (f) => packr.unpack(f));
    },
  };
}

/** The MessagePack codec: compact and fast; the default across processes. */
export const msgpackCodec: Codec = createMsgpackCodec();
