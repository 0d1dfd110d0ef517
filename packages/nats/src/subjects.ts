import { KeelError } from "@keel/core";

/** The subject prefix when none is given. */
export const DEFAULT_CLUSTER = "keel";

/** Bytes kept as they are in a token: ASCII letters, digits and `-`. */
function isSafe(byte: number): boolean {
  return (
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    byte === 0x2d // -
  );
}

const SAFE_TOKEN = /^[A-Za-z0-9-]+$/;
const HEX = "0123456789ABCDEF";

/**
 * Maps a node id to one NATS subject token: ASCII letters, digits and `-` stay, every other byte
 * of its UTF-8 form becomes `_` and two upper-case hex digits (`.` → `_2E`, `:` → `_3A`,
 * `_` → `_5F`). The mapping is injective, so two node ids never share a subject, and its output
 * is also a valid `$SRV` id.
 * @example
 * subjectToken("orders-1") // "orders-1"
 * subjectToken("eu.west:7") // "eu_2Ewest_3A7"
 */
export function subjectToken(id: string): string {
  if (SAFE_TOKEN.test(id)) return id;
  if (id.length === 0) throw new KeelError("CONFIGURATION", "a node id cannot be empty");
  // A lone surrogate has no UTF-8 form: two such ids would share a token.
  if (!id.isWellFormed())
    throw new KeelError("CONFIGURATION", "a node id must be well-formed Unicode");
  let out = "";
  for (const byte of Buffer.from(id, "utf8")) {
    out += isSafe(byte)
      ? String.fromCharCode(byte)
      : `_${HEX[byte >> 4] as string}${HEX[byte & 0xf] as string}`;
  }
  return out;
}

const CLUSTER = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** Checks a cluster prefix: dot-separated tokens of letters, digits, `_` and `-`. */
export function checkCluster(cluster: string): string {
  if (typeof cluster !== "string" || cluster.length > 128 || !CLUSTER.test(cluster)) {
    throw new KeelError(
      "CONFIGURATION",
      `NATS cluster prefix '${String(cluster)}' must be dot-separated tokens of letters, digits, '_' and '-'`,
    );
  }
  return cluster;
}

/** The subject a node receives its directed frames on: `<cluster>.node.<token>`. */
export function nodeSubject(cluster: string, nodeId: string): string {
  return `${cluster}.node.${subjectToken(nodeId)}`;
}

/** The subject every node of a cluster receives broadcasts on: `<cluster>.all`. */
export function broadcastSubject(cluster: string): string {
  return `${cluster}.all`;
}
