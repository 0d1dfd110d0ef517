import type { WireError } from "../errors/index.ts";

/** The wire format version this build speaks. Frames of any other version are refused. */
export const WIRE_VERSION = 1;

/** Default upper bound for one encoded frame: 1 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;

/** Who issued a call: the node, and the service whose handler made it (if any). */
export interface CallerInfo {
  readonly node: string;
  readonly service?: string;
}

/** A service a node hosts, as announced to the cluster. */
export interface ServiceAnnouncement {
  readonly name: string;
  readonly version: number;
  readonly actions: readonly string[];
  /** Event names this service subscribes to. */
  readonly events: readonly string[];
}

/** A request for `service@version.action`. */
export interface RequestFrame {
  readonly v: 1;
  readonly k: "req";
  /** Request id, unique per sending node. */
  readonly id: string;
  readonly from: string;
  readonly svc: string;
  readonly ver: number;
  readonly act: string;
  /** Remaining budget in milliseconds when the frame was sent; never an absolute time. */
  readonly dl: number;
  readonly p: unknown;
  /** W3C trace context (`traceparent`), when tracing is on. */
  readonly tc?: string;
  /** The W3C `tracestate` that goes with `tc`, when it is not empty. */
  readonly ts?: string;
  readonly ik?: string;
  readonly caller?: CallerInfo;
  readonly meta?: Readonly<Record<string, string>>;
}

/** A reply to a request: either a payload or an error. */
export type ResponseFrame =
  | {
      readonly v: 1;
      readonly k: "res";
      readonly id: string;
      readonly from: string;
      readonly ok: true;
      readonly p: unknown;
    }
  | {
      readonly v: 1;
      readonly k: "res";
      readonly id: string;
      readonly from: string;
      readonly ok: false;
      readonly err: WireError;
    };

/** The caller gave up on request `id`: the callee should stop working on it. */
export interface CancelFrame {
  readonly v: 1;
  readonly k: "cancel";
  readonly id: string;
  readonly from: string;
}

/** An event: `emit` reaches one node per subscribing service, `broadcast` every subscriber. */
export interface EventFrame {
  readonly v: 1;
  readonly k: "evt";
  readonly from: string;
  readonly name: string;
  readonly mode: "emit" | "broadcast";
  /** For `emit`: the subscribing service this copy is for. */
  readonly grp?: string;
  readonly p: unknown;
  readonly tc?: string;
  readonly ts?: string;
}

/** A node tells the cluster what it hosts (and, on reply, to whom). */
export interface AnnounceFrame {
  readonly v: 1;
  readonly k: "announce";
  readonly from: string;
  /** Changes every time the node starts: tells a restarted node from its earlier life. */
  readonly inc: string;
  /** Bumped on every change to what the node announces. */
  readonly seq: number;
  readonly state: "ready" | "draining";
  readonly services: readonly ServiceAnnouncement[];
  /** Largest frame this node accepts, so senders refuse bigger ones before sending. */
  readonly max?: number;
  /** True when the receiver should answer with its own announce. */
  readonly reply?: boolean;
}

/** A heartbeat: the node is alive; `seq` lets a receiver notice a missed announce. */
export interface HeartbeatFrame {
  readonly v: 1;
  readonly k: "hb";
  readonly from: string;
  /** The sender's incarnation, as in its announce. */
  readonly inc: string;
  readonly seq: number;
}

/** The node is leaving the cluster on purpose. */
export interface LeaveFrame {
  readonly v: 1;
  readonly k: "leave";
  readonly from: string;
}

/** Tells a sender its frame could not be understood. Never answered. */
export interface ProtocolErrorFrame {
  readonly v: 1;
  readonly k: "perr";
  readonly from: string;
  readonly err: WireError;
}

/** Every frame kind of wire version 1. */
export type Envelope =
  | RequestFrame
  | ResponseFrame
  | CancelFrame
  | EventFrame
  | AnnounceFrame
  | HeartbeatFrame
  | LeaveFrame
  | ProtocolErrorFrame;

/** The kind tag of an envelope. */
export type EnvelopeKind = Envelope["k"];
