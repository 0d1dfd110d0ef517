import type { Packr } from "msgpackr";
import { lazyPeer } from "../peer.ts";
import { type Codec, decodeWith } from "./codec.ts";

/**
 * msgpackr is loaded on first need, not with this module: the codec writes and reads plain frames
 * itself, so an idle node never loads it (about 1 MB of its memory).
 */
const msgpackr = lazyPeer<typeof import("msgpackr")>(
  "msgpackr",
  "@keel/core/msgpack needs the msgpackr package (an optional peer dependency of @keel/core): npm install msgpackr",
);

/** The options of the codec's msgpackr instance, which the fast reader and writers match. */
const PACKR_OPTIONS = {
  useRecords: false,
  moreTypes: false,
  mapsAsObjects: true,
  // 64-bit integers decode as numbers, never BigInt (which JSON and the envelope checks refuse).
  int64AsType: "number",
} as const;

/** A msgpackr instance with the codec's options, loading msgpackr (synchronously) the first time. */
function loadPackr(): Packr {
  return new (msgpackr().Packr)(PACKR_OPTIONS);
}

/** Nesting depth the fast reader handles; deeper frames go to msgpackr. */
const MAX_FAST_DEPTH = 32;

/** Thrown (never escapes) when the fast reader meets something it leaves to msgpackr. */
const NOT_FAST: unique symbol = Symbol("not fast");
const EMPTY = new Uint8Array(0);

/** Strings up to this many bytes are cached by their bytes. */
const MAX_CACHED_STRING = 32;
const STRING_CACHE_SIZE = 1024;

/** Strings by their bytes: slot i holds `strings[i]`, whose bytes are at `bytes[i * 32]`. */
interface StringCache {
  readonly bytes: Uint8Array;
  readonly lengths: Uint8Array;
  readonly strings: Array<string | undefined>;
  /** Cached strings are internalized (keys: later property stores and compares are cheaper). */
  readonly intern: boolean;
}

function stringCache(intern: boolean): StringCache {
  return {
    bytes: new Uint8Array(STRING_CACHE_SIZE * MAX_CACHED_STRING),
    lengths: new Uint8Array(STRING_CACHE_SIZE),
    strings: new Array<string | undefined>(STRING_CACHE_SIZE).fill(undefined),
    intern,
  };
}

const keyCache = stringCache(true);
const valueCache = stringCache(false);

/** The ASCII string at buf[start, start + length), or NOT_FAST when a byte is not ASCII. */
function asciiString(buf: Uint8Array, start: number, length: number): string {
  const end = start + length;
  for (let i = start; i < end; i++) if ((buf[i] as number) >= 0x80) throw NOT_FAST;
  // fromCharCode over a handful of arguments is several times cheaper than growing a string.
  let s = "";
  let i = start;
  for (; i + 8 <= end; i += 8) {
    s += String.fromCharCode(
      buf[i] as number,
      buf[i + 1] as number,
      buf[i + 2] as number,
      buf[i + 3] as number,
      buf[i + 4] as number,
      buf[i + 5] as number,
      buf[i + 6] as number,
      buf[i + 7] as number,
    );
  }
  for (; i < end; i++) s += String.fromCharCode(buf[i] as number);
  return s;
}

/** A frame layout: its keys in the order the runtime writes them, and a literal that builds it. */
interface Layout {
  readonly keys: readonly string[];
  build(v: readonly unknown[]): Record<string, unknown>;
}

/**
 * The layouts of the frames a busy node decodes most (requests and replies without options,
 * heartbeats, cancels), by number of keys. Their key order is that of the literals in the runtime.
 */
const LAYOUTS: ReadonlyArray<readonly Layout[]> = (() => {
  const layouts: Layout[] = [
    {
      keys: ["v", "k", "id", "from", "svc", "ver", "act", "dl", "p"],
      build: (v) => ({
        v: v[0],
        k: v[1],
        id: v[2],
        from: v[3],
        svc: v[4],
        ver: v[5],
        act: v[6],
        dl: v[7],
        p: v[8],
      }),
    },
    {
      keys: ["v", "k", "id", "from", "ok", "p"],
      build: (v) => ({ v: v[0], k: v[1], id: v[2], from: v[3], ok: v[4], p: v[5] }),
    },
    {
      keys: ["v", "k", "id", "from", "ok", "err"],
      build: (v) => ({ v: v[0], k: v[1], id: v[2], from: v[3], ok: v[4], err: v[5] }),
    },
    {
      keys: ["v", "k", "from", "inc", "seq"],
      build: (v) => ({ v: v[0], k: v[1], from: v[2], inc: v[3], seq: v[4] }),
    },
    {
      keys: ["v", "k", "id", "from"],
      build: (v) => ({ v: v[0], k: v[1], id: v[2], from: v[3] }),
    },
  ];
  const bySize: Layout[][] = Array.from({ length: 17 }, () => []);
  for (const layout of layouts) bySize[layout.keys.length]?.push(layout);
  return bySize;
})();

/**
 * A reader for the subset of MessagePack that frames are made of: maps with ASCII string keys,
 * arrays, ASCII strings, nil, booleans, integers up to 32 bits and float64. On that subset it
 * gives exactly what msgpackr gives with this codec's options (it is several times faster on a
 * small frame, which is most of what a node decodes); anything else (binary, extensions, 64-bit
 * integers, float32, other `undefined` encodings, non-ASCII strings, `__proto__` keys, non-string keys, deep nesting, truncated
 * frames, trailing bytes) makes it give up, and msgpackr decodes the whole frame as before.
 */
class FastReader {
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  #end = 0;
  /** The top-level map's keys and values, before its object is built. */
  readonly #keys: string[] = [];
  readonly #values: unknown[] = [];

  read(frame: Uint8Array): unknown {
    this.#buf = frame;
    this.#pos = 0;
    this.#end = frame.length;
    try {
      const value = this.#value(0);
      if (this.#pos !== this.#end) throw NOT_FAST;
      return value;
    } finally {
      this.#buf = EMPTY; // holds no frame between decodes
      this.#end = 0;
    }
  }

  #byte(): number {
    const pos = this.#pos;
    if (pos >= this.#end) throw NOT_FAST;
    this.#pos = pos + 1;
    return this.#buf[pos] as number;
  }

  #uint16(): number {
    const pos = this.#need(2);
    const buf = this.#buf;
    return ((buf[pos] as number) << 8) | (buf[pos + 1] as number);
  }

  #int32(): number {
    const pos = this.#need(4);
    const buf = this.#buf;
    return (
      ((buf[pos] as number) << 24) |
      ((buf[pos + 1] as number) << 16) |
      ((buf[pos + 2] as number) << 8) |
      (buf[pos + 3] as number)
    );
  }

  #need(n: number): number {
    const pos = this.#pos;
    if (pos + n > this.#end) throw NOT_FAST;
    this.#pos = pos + n;
    return pos;
  }

  #value(depth: number): unknown {
    const b = this.#byte();
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b >= 0xa0 && b <= 0xbf) return this.#str(b & 0x1f, valueCache);
    if (b <= 0x8f) return this.#map(b & 0x0f, depth);
    if (b <= 0x9f) return this.#array(b & 0x0f, depth);
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xcb: {
        const pos = this.#need(8);
        const buf = this.#buf;
        return new DataView(buf.buffer, buf.byteOffset + pos, 8).getFloat64(0);
      }
      case 0xcc:
        return this.#byte();
      case 0xcd:
        return this.#uint16();
      case 0xce:
        return this.#int32() >>> 0;
      case 0xd0:
        return (this.#byte() << 24) >> 24;
      case 0xd1:
        return (this.#uint16() << 16) >> 16;
      case 0xd2:
        return this.#int32();
      case 0xd4:
        // fixext 1 of type 0: msgpackr's `undefined`
        if (this.#byte() !== 0 || this.#byte() !== 0) throw NOT_FAST;
        return undefined;
      case 0xd9:
        return this.#str(this.#byte(), valueCache);
      case 0xda:
        return this.#str(this.#uint16(), valueCache);
      case 0xdb:
        return this.#str(this.#int32() >>> 0, valueCache);
      case 0xdc:
        return this.#array(this.#uint16(), depth);
      case 0xdd:
        return this.#array(this.#int32() >>> 0, depth);
      case 0xde:
        return this.#map(this.#uint16(), depth);
      case 0xdf:
        return this.#map(this.#int32() >>> 0, depth);
      default:
        throw NOT_FAST;
    }
  }

  /**
   * An ASCII string of `length` bytes; any other byte gives up. Short strings (keys, node, service
   * and action names, kinds) come from a cache by their bytes: building a string from bytes costs
   * far more than comparing them. Keys are cached internalized, as property names are.
   */
  #str(length: number, cache: StringCache): string {
    const start = this.#need(length);
    const buf = this.#buf;
    if (length === 0) return "";
    if (length > MAX_CACHED_STRING) return asciiString(buf, start, length);
    const slot =
      (length * 31 +
        (buf[start] as number) * 7 +
        (buf[start + length - 1] as number) * 3 +
        (buf[start + (length >> 1)] as number)) &
      (STRING_CACHE_SIZE - 1);
    const bytes = cache.bytes;
    const at = slot * MAX_CACHED_STRING;
    if (cache.lengths[slot] === length) {
      let i = 0;
      while (i < length && bytes[at + i] === buf[start + i]) i++;
      if (i === length) return cache.strings[slot] as string;
    }
    let s = asciiString(buf, start, length);
    if (cache.intern) s = Object.keys({ [s]: 0 })[0] as string;
    for (let i = 0; i < length; i++) bytes[at + i] = buf[start + i] as number;
    cache.lengths[slot] = length;
    cache.strings[slot] = s;
    return s;
  }

  /**
   * A request id: unique per request, so it is read without the string cache (where it would only
   * push out the names that do repeat).
   */
  #id(): unknown {
    const pos = this.#pos;
    const b = pos < this.#end ? (this.#buf[pos] as number) : 0;
    if (b < 0xa0 || b > 0xbf) return this.#value(1);
    this.#pos = pos + 1;
    const length = b & 0x1f;
    return asciiString(this.#buf, this.#need(length), length);
  }

  #key(): string {
    const b = this.#byte();
    let key: string;
    if (b >= 0xa0 && b <= 0xbf) key = this.#str(b & 0x1f, keyCache);
    else if (b === 0xd9) key = this.#str(this.#byte(), keyCache);
    else throw NOT_FAST;
    // msgpackr renames this key (its prototype-pollution guard): leave the frame to it.
    if (key === "__proto__") throw NOT_FAST;
    return key;
  }

  #map(size: number, depth: number): Record<string, unknown> {
    if (depth === 0 && size < LAYOUTS.length) return this.#envelope(size);
    if (depth >= MAX_FAST_DEPTH) throw NOT_FAST;
    const object: Record<string, unknown> = {};
    for (let i = 0; i < size; i++) {
      const key = this.#key();
      object[key] = this.#value(depth + 1);
    }
    return object;
  }

  /**
   * The top-level map: when its keys are those of a known frame layout, in that order, the object
   * is built by an object literal, which is several times cheaper than adding properties one by
   * one and gives every such frame one shape (the runtime reads them at monomorphic sites).
   */
  #envelope(size: number): Record<string, unknown> {
    const keys = this.#keys;
    const values = this.#values;
    for (let i = 0; i < size; i++) {
      const key = this.#key();
      keys[i] = key;
      values[i] = key === "id" ? this.#id() : this.#value(1);
    }
    let object: Record<string, unknown> | undefined;
    const candidates = LAYOUTS[size] as readonly Layout[];
    for (let c = 0; c < candidates.length && object === undefined; c++) {
      const layout = candidates[c] as Layout;
      let i = 0;
      while (i < size && keys[i] === layout.keys[i]) i++;
      if (i === size) object = layout.build(values);
    }
    if (object === undefined) {
      object = {};
      for (let i = 0; i < size; i++) object[keys[i] as string] = values[i];
    }
    for (let i = 0; i < size; i++) values[i] = undefined; // holds no payload between decodes
    return object;
  }

  #array(length: number, depth: number): unknown[] {
    if (depth >= MAX_FAST_DEPTH) throw NOT_FAST;
    // Each element takes at least one byte: a bogus length cannot allocate much.
    if (length > this.#end - this.#pos) throw NOT_FAST;
    const array = new Array<unknown>(length);
    for (let i = 0; i < length; i++) array[i] = this.#value(depth + 1);
    return array;
  }
}

const key = (k: string) =>
  new Uint8Array([0xa0 | k.length, ...Array.from(k, (c) => c.charCodeAt(0))]);
const concat = (...parts: Array<number[] | Uint8Array>) =>
  new Uint8Array(parts.flatMap((x) => [...x]));
/** `{ v: 1, k: "req", id:` (a fixmap of 9 keys), and the other keys of a request. */
const REQ_HEAD = concat([0x89], key("v"), [1], key("k"), key("req"), key("id"));
/** `{ v: 1, k: "res", id:` (a fixmap of 6 keys). */
const RES_HEAD = concat([0x86], key("v"), [1], key("k"), key("res"), key("id"));
const KEY_FROM = key("from");
const KEY_SVC = key("svc");
const KEY_VER = key("ver");
const KEY_ACT = key("act");
const KEY_DL = key("dl");
const KEY_P = key("p");
const KEY_OK_TRUE = concat(key("ok"), [0xc3]);

/** Size of the slabs frames are written into (a frame is a view of one, as with msgpackr). */
const SLAB_BYTES = 16 * 1024;
/** A frame starts on a fresh slab when less than this is left (it still grows a slab if it must). */
const MAX_HEAD_BYTES = 512;
/** Nesting depth the plain writer handles; deeper values go to msgpackr. */
const MAX_WRITE_DEPTH = 64;

/**
 * Writes frames without msgpackr, into slabs that frames are views of (as with msgpackr).
 *
 * - **Plain data** (`plain`): objects whose constructor is `Object` (their own enumerable keys, as
 *   msgpackr writes them), arrays, strings, numbers, booleans, null and `undefined` (fixext 1 of
 *   type 0), encoded as msgpackr encodes them with this codec's options; only the header sizes of
 *   strings and maps may differ, which decode alike. Anything else anywhere in the value (binary,
 *   dates, maps, sets, BigInt, class instances, strings with lone surrogates, maps of over 65535
 *   keys, deep nesting) makes it give up, and msgpackr writes the whole value. Every frame a node
 *   sends on its own (announces, heartbeats, leaves) is plain data, so an idle node never loads
 *   msgpackr.
 * - **The two frames of every call** (`envelope`: a request without options, a successful reply):
 *   a fixmap of the keys in the runtime's order, with the node, service and action names cached
 *   as encoded strings, and the payload written in place (by msgpackr, and copied in, only when it
 *   is not plain data). Standard MessagePack, which msgpackr and the fast reader decode to the
 *   same envelope.
 */
class Writer {
  readonly #packr: () => Packr;
  #buf = Buffer.allocUnsafe(SLAB_BYTES);
  /** Where the frame being written starts. */
  #start = 0;
  #pos = 0;
  readonly #names = new Map<string, Uint8Array>();

  constructor(packr: () => Packr) {
    this.#packr = packr;
  }

  /** `value` as MessagePack, or undefined to leave it to msgpackr. */
  plain(value: unknown): Uint8Array | undefined {
    this.#begin();
    return this.#end(this.#value(value, 0));
  }

  /** A request without options or a successful reply, or undefined for any other frame. */
  envelope(e: Record<string, unknown> | null): Uint8Array | undefined {
    if (typeof e !== "object" || e === null || e["v"] !== 1 || typeof e["id"] !== "string")
      return undefined;
    const k = e["k"];
    if (k === "req") {
      if (
        e["tc"] !== undefined ||
        e["ts"] !== undefined ||
        e["ik"] !== undefined ||
        e["caller"] !== undefined ||
        e["meta"] !== undefined ||
        typeof e["ver"] !== "number" ||
        typeof e["dl"] !== "number"
      )
        return undefined;
      const from = this.#name(e["from"]);
      const svc = this.#name(e["svc"]);
      const act = this.#name(e["act"]);
      if (from === undefined || svc === undefined || act === undefined) return undefined;
      this.#begin();
      this.#bytes(REQ_HEAD);
      if (!this.#string(e["id"])) return this.#end(false);
      this.#bytes(KEY_FROM);
      this.#bytes(from);
      this.#bytes(KEY_SVC);
      this.#bytes(svc);
      this.#bytes(KEY_VER);
      this.#number(e["ver"]);
      this.#bytes(KEY_ACT);
      this.#bytes(act);
      this.#bytes(KEY_DL);
      this.#number(e["dl"]);
    } else if (k === "res" && e["ok"] === true && e["err"] === undefined) {
      const from = this.#name(e["from"]);
      if (from === undefined) return undefined;
      this.#begin();
      this.#bytes(RES_HEAD);
      if (!this.#string(e["id"])) return this.#end(false);
      this.#bytes(KEY_FROM);
      this.#bytes(from);
      this.#bytes(KEY_OK_TRUE);
    } else {
      return undefined;
    }
    this.#bytes(KEY_P);
    const at = this.#pos;
    if (!this.#value(e["p"], 0)) {
      this.#pos = at;
      this.#bytes(this.#packr().pack(e["p"]));
    }
    return this.#end(true);
  }

  /** Starts a frame, on a fresh slab when this one is nearly used up. */
  #begin(): void {
    if (this.#pos > this.#buf.length - MAX_HEAD_BYTES) {
      this.#buf = Buffer.allocUnsafe(SLAB_BYTES);
      this.#pos = 0;
    }
    this.#start = this.#pos;
  }

  /** The frame written since `#begin` (kept: the next one goes after it), or undefined. */
  #end(ok: boolean): Uint8Array | undefined {
    if (!ok) {
      this.#pos = this.#start;
      return undefined;
    }
    return this.#buf.subarray(this.#start, this.#pos);
  }

  /** A name (node, service, action) as an encoded string, from the cache. */
  #name(value: unknown): Uint8Array | undefined {
    if (typeof value !== "string") return undefined;
    let bytes = this.#names.get(value);
    if (bytes === undefined) {
      if (value.length > 64) return undefined;
      this.#begin();
      const encoded = this.#end(this.#string(value));
      if (encoded === undefined) return undefined; // a lone surrogate: the frame goes to msgpackr
      this.#pos = this.#start; // a copy is kept, not the slab's bytes
      if (this.#names.size >= 1024) this.#names.clear();
      bytes = new Uint8Array(encoded);
      this.#names.set(value, bytes);
    }
    return bytes;
  }

  /** Makes room for `n` more bytes, moving the frame written so far to a bigger slab if needed. */
  #room(n: number): Buffer {
    const buf = this.#buf;
    if (this.#pos + n <= buf.length) return buf;
    const used = this.#pos - this.#start;
    const next = Buffer.allocUnsafe(Math.max(SLAB_BYTES, (used + n) * 2));
    buf.copy(next, 0, this.#start, this.#pos);
    this.#buf = next;
    this.#start = 0;
    this.#pos = used;
    return next;
  }

  #bytes(bytes: Uint8Array): void {
    const n = bytes.length;
    const buf = this.#room(n);
    const pos = this.#pos;
    // Names and keys are a few bytes: a loop beats TypedArray.set on those.
    if (n <= 64) for (let i = 0; i < n; i++) buf[pos + i] = bytes[i] as number;
    else buf.set(bytes, pos);
    this.#pos = pos + n;
  }

  #value(v: unknown, depth: number): boolean {
    switch (typeof v) {
      case "string":
        return this.#string(v);
      case "number":
        this.#number(v);
        return true;
      case "boolean":
        this.#room(1)[this.#pos++] = v ? 0xc3 : 0xc2;
        return true;
      case "undefined": {
        // msgpackr's `undefined`: fixext 1 of type 0
        const buf = this.#room(3);
        buf[this.#pos] = 0xd4;
        buf[this.#pos + 1] = 0;
        buf[this.#pos + 2] = 0;
        this.#pos += 3;
        return true;
      }
      case "object": {
        if (v === null) {
          this.#room(1)[this.#pos++] = 0xc0;
          return true;
        }
        if (depth >= MAX_WRITE_DEPTH) return false;
        // msgpackr's own test: by constructor (a class instance or a Map is not plain data).
        const c = (v as { constructor?: unknown }).constructor;
        if (c === Object) return this.#map(v as Record<string, unknown>, depth);
        if (c === Array) return this.#array(v as readonly unknown[], depth);
        return false;
      }
      default:
        return false;
    }
  }

  #map(o: Record<string, unknown>, depth: number): boolean {
    const keys = Object.keys(o);
    const n = keys.length;
    if (n > 0xffff) return false; // msgpackr refuses these: so it still does
    this.#header(n, 0x80, 0xde);
    for (let i = 0; i < n; i++) {
      const k = keys[i] as string;
      if (!this.#string(k) || !this.#value(o[k], depth + 1)) return false;
    }
    return true;
  }

  #array(a: readonly unknown[], depth: number): boolean {
    const n = a.length;
    this.#header(n, 0x90, 0xdc);
    for (let i = 0; i < n; i++) if (!this.#value(a[i], depth + 1)) return false;
    return true;
  }

  /** A map or array header: fix (under 16), 16-bit or 32-bit size. */
  #header(n: number, fix: number, size16: number): void {
    const buf = this.#room(5);
    const pos = this.#pos;
    if (n < 16) {
      buf[pos] = fix | n;
      this.#pos = pos + 1;
    } else if (n <= 0xffff) {
      buf[pos] = size16;
      buf.writeUInt16BE(n, pos + 1);
      this.#pos = pos + 3;
    } else {
      buf[pos] = size16 + 1;
      buf.writeUInt32BE(n, pos + 1);
      this.#pos = pos + 5;
    }
  }

  /** A string as UTF-8; false for one with a lone surrogate (msgpackr writes those its own way). */
  #string(s: string): boolean {
    const n = s.length;
    if (n >= 64) {
      if (!s.isWellFormed()) return false;
      const bytes = Buffer.byteLength(s, "utf8");
      const buf = this.#room(5 + bytes);
      let pos = this.#pos;
      if (bytes <= 0xff) {
        buf[pos++] = 0xd9;
        buf[pos++] = bytes;
      } else if (bytes <= 0xffff) {
        buf[pos] = 0xda;
        buf.writeUInt16BE(bytes, pos + 1);
        pos += 3;
      } else {
        buf[pos] = 0xdb;
        buf.writeUInt32BE(bytes, pos + 1);
        pos += 5;
      }
      this.#pos = pos + buf.write(s, pos, "utf8");
      return true;
    }
    // Short strings (keys, names): encoded by hand behind a one-byte header when they can be,
    // moved one byte on for a str8 header when their UTF-8 turns out to be 32 bytes or more.
    const buf = this.#room(2 + n * 3);
    const head = this.#pos;
    const body = head + (n < 32 ? 1 : 2);
    let pos = body;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) {
        buf[pos++] = c;
      } else if (c < 0x800) {
        buf[pos++] = 0xc0 | (c >> 6);
        buf[pos++] = 0x80 | (c & 0x3f);
      } else if ((c & 0xf800) !== 0xd800) {
        buf[pos++] = 0xe0 | (c >> 12);
        buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
        buf[pos++] = 0x80 | (c & 0x3f);
      } else {
        const d = s.charCodeAt(i + 1); // NaN past the end
        if ((c & 0xfc00) !== 0xd800 || (d & 0xfc00) !== 0xdc00) return false;
        const cp = 0x10000 + ((c & 0x3ff) << 10) + (d & 0x3ff);
        i++;
        buf[pos++] = 0xf0 | (cp >> 18);
        buf[pos++] = 0x80 | ((cp >> 12) & 0x3f);
        buf[pos++] = 0x80 | ((cp >> 6) & 0x3f);
        buf[pos++] = 0x80 | (cp & 0x3f);
      }
    }
    const length = pos - body;
    if (length < 32) {
      if (body !== head + 1) buf.copyWithin(head + 1, body, pos);
      buf[head] = 0xa0 | length;
      this.#pos = head + 1 + length;
    } else {
      if (body !== head + 2) buf.copyWithin(head + 2, body, pos);
      buf[head] = 0xd9;
      buf[head + 1] = length;
      this.#pos = head + 2 + length;
    }
    return true;
  }

  /** A number as msgpackr writes it: the smallest integer format up to 32 bits, else float64. */
  #number(v: number): void {
    const buf = this.#room(9);
    const pos = this.#pos;
    if (v >>> 0 === v) {
      if (v < 0x80) {
        buf[pos] = v;
        this.#pos = pos + 1;
      } else if (v < 0x100) {
        buf[pos] = 0xcc;
        buf[pos + 1] = v;
        this.#pos = pos + 2;
      } else if (v < 0x10000) {
        buf[pos] = 0xcd;
        buf.writeUInt16BE(v, pos + 1);
        this.#pos = pos + 3;
      } else {
        buf[pos] = 0xce;
        buf.writeUInt32BE(v, pos + 1);
        this.#pos = pos + 5;
      }
    } else if (v >> 0 === v) {
      if (v >= -0x20) {
        buf[pos] = v & 0xff;
        this.#pos = pos + 1;
      } else if (v >= -0x80) {
        buf[pos] = 0xd0;
        buf[pos + 1] = v & 0xff;
        this.#pos = pos + 2;
      } else if (v >= -0x8000) {
        buf[pos] = 0xd1;
        buf.writeInt16BE(v, pos + 1);
        this.#pos = pos + 3;
      } else {
        buf[pos] = 0xd2;
        buf.writeInt32BE(v, pos + 1);
        this.#pos = pos + 5;
      }
    } else {
      buf[pos] = 0xcb;
      buf.writeDoubleBE(v, pos + 1);
      this.#pos = pos + 9;
    }
  }
}

/**
 * Creates the MessagePack codec (standard MessagePack without records): its own readers and
 * writers for plain frames, msgpackr (loaded on first need) for everything else.
 */
export function createMsgpackCodec(): Codec {
  let packr: Packr | undefined;
  const msgpackr = () => (packr ??= loadPackr());
  const fast = new FastReader();
  const writer = new Writer(msgpackr);
  const parse = (f: Uint8Array): unknown => {
    try {
      return fast.read(f);
    } catch (err) {
      if (err !== NOT_FAST) throw err;
    }
    return msgpackr().unpack(f);
  };
  return {
    name: "msgpack",
    encode(envelope) {
      const e = envelope as unknown as Record<string, unknown> | null;
      return writer.envelope(e) ?? writer.plain(e) ?? msgpackr().pack(envelope);
    },
    decode(frame, maxBytes) {
      return decodeWith("MessagePack", frame, maxBytes, parse);
    },
  };
}

/** The MessagePack codec: compact and fast; the default across processes. */
export const msgpackCodec: Codec = createMsgpackCodec();
