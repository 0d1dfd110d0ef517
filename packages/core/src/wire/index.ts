export { checkEnvelope, ProtocolViolation } from "./check.ts";
export { type Codec, encodeChecked, jsonCodec } from "./codec.ts";
export {
  type AnnounceFrame,
  type CallerInfo,
  type CancelFrame,
  DEFAULT_MAX_FRAME_BYTES,
  type Envelope,
  type EnvelopeKind,
  type EventFrame,
  type HeartbeatFrame,
  type LeaveFrame,
  type ProtocolErrorFrame,
  type RequestFrame,
  type ResponseFrame,
  type ServiceAnnouncement,
  WIRE_VERSION,
} from "./envelope.ts";
