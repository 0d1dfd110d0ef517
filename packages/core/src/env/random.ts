import type { Random } from "./types.ts";

/** Seeds accepted by Keel's random streams. */
export type Seed = number | string;

/** FNV-1a then a murmur3 finaliser: spreads similar labels and seeds far apart. */
export function hash32(text: string, basis = 0x811c9dc5): number {
  let h = basis >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** sfc32: small, fast, passes PractRand to 2^40 bytes; 128 bits of state. */
class Sfc32 implements Random {
  readonly #seedKey: string;
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seedKey: string) {
    this.#seedKey = seedKey;
    const mix = splitmix32(hash32(seedKey));
    this.#a = mix();
    this.#b = mix();
    this.#c = mix();
    this.#d = mix() | 1;
    for (let i = 0; i < 12; i++) this.#u32();
  }

  #u32(): number {
    const a = this.#a;
    const b = this.#b;
    const c = this.#c;
    const d = this.#d;
    const t = (((a + b) | 0) + d) | 0;
    this.#d = (d + 1) | 0;
    this.#a = b ^ (b >>> 9);
    this.#b = (c + (c << 3)) | 0;
    const r = (c << 21) | (c >>> 11);
    this.#c = (r + t) | 0;
    return t >>> 0;
  }

  next(): number {
    return this.#u32() / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  split(label: string): Random {
    // Structured, so no root seed or other (parent, label) pair can spell the same key.
    return new Sfc32(JSON.stringify([this.#seedKey, label]));
  }

  hex(bytes: number): string {
    let out = "";
    for (let i = 0; i < bytes; i += 4) {
      const v = this.#u32();
      out += HEX[v & 0xff]! + HEX[(v >>> 8) & 0xff]! + HEX[(v >>> 16) & 0xff]! + HEX[v >>> 24]!;
    }
    return out.slice(0, bytes * 2);
  }

  id(): string {
    return this.hex(16);
  }
}

/** A deterministic random stream: the same seed gives the same draws on every machine. */
export function createRandom(seed: Seed): Random {
  return new Sfc32(String(seed));
}
