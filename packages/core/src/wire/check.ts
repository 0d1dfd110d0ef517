import { KeelError } from "../errors/index.ts";
import { type Envelope, WIRE_VERSION } from "./envelope.ts";

/** A frame that failed to decode; `id`/`from` are set when they could be read, to answer the sender. */
export class ProtocolViolation extends KeelError {
  readonly frameId: string | undefined;
  readonly frameFrom: string | undefined;
  readonly frameKind: string | undefined;

  constructor(
    message: string,
    raw: Record<string, unknown> | undefined,
    details?: Record<string, unknown>,
  ) {
    super("PROTOCOL", message, { noStack: true, ...(details === undefined ? {} : { details }) });
    const str = (key: string) =>
      typeof raw?.[key] === "string" ? (raw[key] as string) : undefined;
    this.frameId = str("id");
    this.frameFrom = str("from");
    this.frameKind = str("k");
  }
}

type Raw = Record<string, unknown>;

const MAX_ID_LENGTH = 256;
const MAX_NAME_LENGTH = 256;
/** W3C asks to propagate at least 512 characters of `tracestate`; Keel sends at most that. */
const MAX_TRACESTATE_LENGTH = 512;

/** A short, safe rendering of an untrusted value for an error message (BigInt-proof, capped). */
function describe(value: unknown): string {
  let text: string;
  if (typeof value === "bigint") text = `${value}n`;
  else if (value === undefined) text = "undefined";
  else {
    try {
      text = JSON.stringify(value) ?? String(value);
    } catch {
      text = typeof value;
    }
  }
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}

function fail(raw: Raw, message: string): never {
  throw new ProtocolViolation(message, raw);
}

function str(raw: Raw, key: string, max = MAX_NAME_LENGTH): void {
  const v = raw[key];
  if (typeof v !== "string" || v.length === 0 || v.length > max) {
    fail(raw, `field '${key}' must be a non-empty string of at most ${max} characters`);
  }
}

function optStr(raw: Raw, key: string, max = 4096): void {
  const v = raw[key];
  if (v !== undefined && (typeof v !== "string" || v.length > max)) {
    fail(raw, `field '${key}' must be a string of at most ${max} characters`);
  }
}

function num(raw: Raw, key: string): void {
  const v = raw[key];
  if (typeof v !== "number" || !Number.isFinite(v))
    fail(raw, `field '${key}' must be a finite number`);
}

function int(raw: Raw, key: string, min: number): void {
  const v = raw[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    fail(raw, `field '${key}' must be an integer >= ${min}`);
  }
}

function isRecord(v: unknown): v is Raw {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkWireError(raw: Raw, v: unknown): void {
  if (!isRecord(v) || typeof v["code"] !== "string" || typeof v["message"] !== "string") {
    fail(raw, "field 'err' must be an error with a code and a message");
  }
}

function checkStringList(raw: Raw, v: unknown, what: string): void {
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string" || x.length > MAX_NAME_LENGTH)) {
    fail(raw, `${what} must be a list of strings`);
  }
}

/**
 * Checks that a decoded value is a well-formed envelope of this wire version.
 * Throws a ProtocolViolation (a PROTOCOL KeelError) otherwise; never anything else.
 */
export function checkEnvelope(value: unknown): Envelope {
  if (!isRecord(value)) throw new ProtocolViolation("frame is not an object", undefined);
  const raw = value;
  if (raw["v"] !== WIRE_VERSION) {
    throw new ProtocolViolation(
      `unsupported wire version ${describe(raw["v"])} (this node speaks ${WIRE_VERSION})`,
      raw,
      { version: typeof raw["v"] === "number" ? raw["v"] : null, supported: [WIRE_VERSION] },
    );
  }
  str(raw, "from");
  switch (raw["k"]) {
    case "req": {
      str(raw, "id", MAX_ID_LENGTH);
      str(raw, "svc");
      int(raw, "ver", 0);
      str(raw, "act");
      num(raw, "dl");
      optStr(raw, "tc", 512);
      optStr(raw, "ts", MAX_TRACESTATE_LENGTH);
      optStr(raw, "ik", 512);
      const caller = raw["caller"];
      if (caller !== undefined && (!isRecord(caller) || typeof caller["node"] !== "string")) {
        fail(raw, "field 'caller' must name a node");
      }
      const meta = raw["meta"];
      if (
        meta !== undefined &&
        (!isRecord(meta) || Object.values(meta).some((m) => typeof m !== "string"))
      ) {
        fail(raw, "field 'meta' must map strings to strings");
      }
      break;
    }
    case "res":
      str(raw, "id", MAX_ID_LENGTH);
      if (raw["ok"] === true) {
        // A missing payload is `undefined` (JSON drops undefined fields).
      } else if (raw["ok"] === false) {
        checkWireError(raw, raw["err"]);
      } else {
        fail(raw, "field 'ok' must be a boolean");
      }
      break;
    case "cancel":
      str(raw, "id", MAX_ID_LENGTH);
      break;
    case "evt":
      str(raw, "name");
      if (raw["mode"] !== "emit" && raw["mode"] !== "broadcast")
        fail(raw, "field 'mode' must be emit or broadcast");
      optStr(raw, "grp", MAX_NAME_LENGTH);
      optStr(raw, "tc", 512);
      optStr(raw, "ts", MAX_TRACESTATE_LENGTH);
      break;
    case "announce": {
      str(raw, "inc", 64);
      int(raw, "seq", 0);
      if (raw["max"] !== undefined) int(raw, "max", 1);
      if (raw["state"] !== "ready" && raw["state"] !== "draining")
        fail(raw, "field 'state' must be ready or draining");
      const services = raw["services"];
      if (!Array.isArray(services)) fail(raw, "field 'services' must be a list");
      for (const s of services) {
        if (!isRecord(s) || typeof s["name"] !== "string" || !Number.isInteger(s["version"])) {
          fail(raw, "each service must have a name and an integer version");
        }
        checkStringList(raw, s["actions"], "a service's actions");
        checkStringList(raw, s["events"], "a service's events");
      }
      break;
    }
    case "hb":
      str(raw, "inc", 64);
      int(raw, "seq", 0);
      break;
    case "leave":
      break;
    case "perr":
      checkWireError(raw, raw["err"]);
      break;
    default:
      fail(raw, `unknown frame kind ${describe(raw["k"])}`);
  }
  return raw as unknown as Envelope;
}
