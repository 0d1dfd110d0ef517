import type { Random, TimerHandle } from "../env/index.ts";
import {
  type AnnounceFrame,
  type HeartbeatFrame,
  type LeaveFrame,
  type ServiceAnnouncement,
  WIRE_VERSION,
} from "../wire/index.ts";
import type { Calls } from "./calls.ts";
import { type NodeShared, remember } from "./node-shared.ts";
import type { NodeDownReason, NodeRecord } from "./registry.ts";

/**
 * Membership: announces what this node hosts, beats its heart, notices peers that fall silent,
 * restart or leave, and keeps the registry in step.
 */
export class Discovery {
  readonly #n: NodeShared;
  readonly #calls: Calls;
  readonly #random: Random;
  readonly #announcement: readonly ServiceAnnouncement[];
  /** Incarnations that said goodbye, by node id. */
  readonly #departed = new Map<string, string>();
  #seq = 0;
  #incarnation = "";
  #heartbeat: TimerHandle | undefined;

  constructor(shared: NodeShared, calls: Calls, random: Random) {
    this.#n = shared;
    this.#calls = calls;
    this.#random = random;
    this.#announcement = [...shared.hosted.values()].map((h) => ({
      name: h.def.name,
      version: h.def.version,
      actions: [...h.actions.keys()],
      events: [...h.subscriptions.keys()],
    }));
  }

  /** Joins: registers this node, tells the cluster, and starts the heartbeat. */
  join(): void {
    const n = this.#n;
    // From the Env's shared stream: a per-node split would repeat across restarts of the same id.
    this.#incarnation = n.env.random.hex(8);
    n.registry.upsert(this.#self("ready"), n.env.clock.now());
    n.broadcast(this.#announce(true));
    this.#scheduleHeartbeat();
  }

  /** Tells the cluster this node takes no new work. */
  announceDraining(): void {
    const n = this.#n;
    this.#seq++;
    n.registry.upsert(this.#self("draining"), n.env.clock.now());
    n.broadcast(this.#announce(false));
  }

  /** Says goodbye. */
  leave(): void {
    this.#n.broadcast({ v: WIRE_VERSION, k: "leave", from: this.#n.id });
  }

  /** Stops the heartbeat. */
  stop(): void {
    if (this.#heartbeat !== undefined) this.#n.env.timers.cancel(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  onAnnounce(frame: AnnounceFrame, known: NodeRecord | undefined, now: number): void {
    const n = this.#n;
    if (this.#departed.get(frame.from) === frame.inc) return;
    if (known !== undefined && known.incarnation !== frame.inc) this.#gone(frame.from, "restarted");
    const isNew = n.registry.upsert(
      {
        id: frame.from,
        local: false,
        incarnation: frame.inc,
        maxFrameBytes: frame.max,
        seq: frame.seq,
        state: frame.state,
        services: frame.services,
      },
      now,
    );
    if ((isNew || frame.reply === true) && n.state !== "stopped")
      n.sendTo(frame.from, this.#announce(false));
  }

  onHeartbeat(frame: HeartbeatFrame, known: NodeRecord | undefined): void {
    if (this.#departed.get(frame.from) === frame.inc) return;
    // A stranger, a restarted node, or news we missed: ask for its announce.
    if (known !== undefined && known.incarnation !== frame.inc) {
      this.#gone(frame.from, "restarted");
      this.#n.sendTo(frame.from, this.#announce(true));
    } else if (known === undefined || known.seq < frame.seq) {
      this.#n.sendTo(frame.from, this.#announce(true));
    }
  }

  onLeave(frame: LeaveFrame, known: NodeRecord | undefined): void {
    // Remember which life said goodbye: its frames still in flight must not bring it back.
    if (known !== undefined) remember(this.#departed, frame.from, known.incarnation);
    this.#gone(frame.from, "left");
  }

  #self(state: "ready" | "draining") {
    const n = this.#n;
    return {
      id: n.id,
      local: true,
      incarnation: this.#incarnation,
      maxFrameBytes: n.maxFrameBytes,
      seq: this.#seq,
      state,
      services: this.#announcement,
    };
  }

  #announce(reply: boolean): AnnounceFrame {
    const n = this.#n;
    return {
      v: WIRE_VERSION,
      k: "announce",
      from: n.id,
      inc: this.#incarnation,
      max: n.maxFrameBytes,
      seq: this.#seq,
      state: n.state === "draining" ? "draining" : "ready",
      services: this.#announcement,
      reply,
    };
  }

  #scheduleHeartbeat(): void {
    // +-10 % jitter keeps a fleet's heartbeats from lining up.
    const delay = this.#n.heartbeatMs * (0.9 + 0.2 * this.#random.next());
    this.#heartbeat = this.#n.env.timers.schedule(() => this.#beat(), delay);
  }

  #beat(): void {
    const n = this.#n;
    if (n.state !== "ready" && n.state !== "draining") return;
    n.broadcast({ v: WIRE_VERSION, k: "hb", from: n.id, inc: this.#incarnation, seq: this.#seq });
    const silentSince = n.env.clock.now() - n.failureTimeoutMs;
    for (const node of n.registry.silentSince(silentSince)) this.#gone(node, "failed");
    this.#scheduleHeartbeat();
  }

  #gone(node: string, reason: NodeDownReason): void {
    if (!this.#n.registry.remove(node, reason)) return;
    if (reason === "failed")
      this.#n.log.warn({ peer: node }, "peer failed: no frame within the failure timeout");
    this.#calls.peerGone(node, reason);
  }
}
