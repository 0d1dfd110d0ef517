import {
  createJsonLogger,
  createRealEnv,
  type Env,
  FrameQueue,
  type FrameSink,
  type InboundFrame,
  isKeelError,
  KeelError,
  type Logger,
  type Transport,
} from "@keel/core";
import {
  type Authenticator,
  connect,
  credsAuthenticator,
  type Msg,
  type NatsConnection,
  type NodeConnectionOptions,
  nkeyAuthenticator,
  type Status,
} from "@nats-io/transport-node";
import { broadcastSubject, checkCluster, DEFAULT_CLUSTER, nodeSubject } from "./subjects.ts";

/** Where the connection to NATS stands. */
export type NatsTransportStatus = "connected" | "reconnecting" | "disconnected";

/** TLS for the connection to NATS. Files are read when the transport connects. */
export interface NatsTlsOptions {
  /** PEM file of the CA that signed the server's certificate. */
  readonly caFile?: string;
  /** The CA as PEM text (instead of `caFile`). */
  readonly ca?: string;
  /** PEM file of this client's certificate, for servers that verify clients (mutual TLS). */
  readonly certFile?: string;
  readonly cert?: string;
  /** PEM file of this client's private key. */
  readonly keyFile?: string;
  readonly key?: string;
  /** TLS before the NATS greeting; the server must be set up for it (`handshake_first`). */
  readonly handshakeFirst?: boolean;
}

/** How the transport reconnects after losing its server. */
export interface NatsReconnectOptions {
  /** Wait before the second attempt, in ms (the first is immediate). Default 250. */
  readonly initialDelayMs?: number;
  /** Longest wait between attempts, in ms. Default 5000. */
  readonly maxDelayMs?: number;
  /** A random extra wait of up to this many ms, so a fleet does not reconnect in step. Default 250. */
  readonly jitterMs?: number;
}

/** Options for `createNatsTransport`. */
export interface NatsTransportOptions {
  /** The id of the node this transport carries; the same id the node is created with. */
  readonly nodeId: string;
  /** NATS server URLs, e.g. `"nats://10.0.0.5:4222"` (default `"127.0.0.1:4222"`). */
  readonly servers?: string | readonly string[];
  /** Subject prefix that separates clusters sharing one NATS (default `"keel"`). */
  readonly cluster?: string;
  /** Client name shown by the server's monitoring (default `keel:<nodeId>`). */
  readonly name?: string;
  /** User name, for servers with user/password authentication. */
  readonly user?: string;
  readonly pass?: string;
  /** Token, for servers with token authentication. */
  readonly token?: string;
  /** NKEY seed (`SU...`) of a user, for servers with NKEY authentication. */
  readonly nkeySeed?: string;
  /** Path of a `.creds` file (user JWT and NKEY seed), for servers in operator mode. */
  readonly credsFile?: string;
  /** Any other authenticator of the NATS client (`jwtAuthenticator`, a custom one). */
  readonly authenticator?: Authenticator | readonly Authenticator[];
  /** TLS; an empty object requires TLS with the system's CAs. */
  readonly tls?: NatsTlsOptions;
  /** Reconnection backoff, or `false` to give up at the first disconnect. */
  readonly reconnect?: NatsReconnectOptions | false;
  /** How long the first connection may take, in ms (default 5000). */
  readonly connectTimeoutMs?: number;
  /** How often the client pings its server, in ms; two missed pongs force a reconnect (default 10000). */
  readonly pingIntervalMs?: number;
  /** How long `close()` lets the connection drain before it closes it anyway, in ms (default 2000). */
  readonly closeTimeoutMs?: number;
  /** Clock, timers and randomness for backoff and timeouts (default: the real Env). */
  readonly env?: Env;
  /** Where the transport logs (default: JSON lines on stderr at `warn`). */
  readonly logger?: Logger;
  /**
   * Further options of the NATS client, applied under the transport's own: `servers`, `noEcho`,
   * reconnection, authentication and TLS always come from the options above.
   */
  readonly connectionOptions?: NodeConnectionOptions;
}

/** Counters of what the transport did with frames. */
export interface NatsTransportStats {
  framesSent: number;
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  /** Frames larger than the server's `max_payload`, dropped before sending. */
  droppedOversized: number;
  /** Frames dropped because the connection was down (reconnecting) or closed. */
  droppedDisconnected: number;
  /** Frames the NATS client refused for another reason. */
  publishErrors: number;
  /** Successful reconnections. */
  reconnects: number;
}

/** The NATS transport: the Transport port plus the connection's status. */
export interface NatsTransport extends Transport {
  /** Where the connection stands now. */
  readonly status: NatsTransportStatus;
  /** Listens to status changes; dispose the result to stop listening. */
  onStatus(listener: (status: NatsTransportStatus) => void): Disposable;
  /** Hands each inbound frame to `onFrame` as it arrives (see `Transport.listen`); after `connect()`. */
  listen(onFrame: FrameSink): Promise<void>;
  readonly stats: Readonly<NatsTransportStats>;
  /** The subject this node receives directed frames on. */
  readonly nodeSubject: string;
  /** The subject broadcasts go to. */
  readonly broadcastSubject: string;
  /** Largest frame the server accepts (its `max_payload`), once connected. */
  readonly maxPayload: number | undefined;
  /** The live NATS connection, e.g. for `serveDiscovery`; throws FAILED_PRECONDITION before `connect()`. */
  connection(): NatsConnection;
}

const DEFAULTS = {
  servers: "127.0.0.1:4222",
  initialDelayMs: 250,
  maxDelayMs: 5000,
  jitterMs: 250,
  connectTimeoutMs: 5000,
  pingIntervalMs: 10_000,
  closeTimeoutMs: 2000,
} as const;

/** Subject cache bound: a node talks to at most this many peers before the cache starts over. */
const MAX_CACHED_SUBJECTS = 4096;
/** At most one warning per kind of dropped frame in this many ms. */
const DROP_LOG_INTERVAL_MS = 10_000;

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new KeelError(
      "CONFIGURATION",
      `NATS transport option '${name}' must be a number >= 0, got ${value}`,
    );
  }
  return value;
}

/** A NATS client error as a KeelError with a code a caller can act on. */
function connectError(err: unknown, servers: string | readonly string[]): KeelError {
  if (isKeelError(err)) return err;
  const name = err instanceof Error ? err.name : "";
  const message = err instanceof Error ? err.message : String(err);
  const details = { servers: typeof servers === "string" ? [servers] : [...servers] };
  if (name === "AuthorizationError" || name === "UserAuthenticationExpiredError") {
    return new KeelError("UNAUTHENTICATED", `NATS refused the credentials: ${message}`, {
      cause: err,
      details,
    });
  }
  if (name === "InvalidArgumentError") {
    return new KeelError("CONFIGURATION", `NATS connection options: ${message}`, {
      cause: err,
      details,
    });
  }
  return new KeelError("UNAVAILABLE", `cannot connect to NATS: ${message}`, {
    cause: err,
    details,
  });
}

/** A subject and its `PUB <subject> ` command prefix, encoded once. */
interface Subject {
  readonly name: string;
  readonly pub: Uint8Array;
}

const encoder = new TextEncoder();

function subjectOf(name: string): Subject {
  return { name, pub: encoder.encode(`PUB ${name} `) };
}

/**
 * The part of the NATS client's protocol handler that takes pre-encoded commands (what its own
 * `publish()` calls). Not in the client's typed API, so it is looked for, and without it the
 * transport publishes frame by frame.
 */
interface ClientWire {
  sendCommand(command: Uint8Array): void;
  readonly noMorePublishing: boolean;
  outMsgs: number;
  outBytes: number;
}

function clientWire(nc: NatsConnection): ClientWire | undefined {
  const protocol = (nc as { protocol?: Partial<ClientWire> }).protocol;
  return typeof protocol?.sendCommand === "function" &&
    typeof protocol.noMorePublishing === "boolean" &&
    typeof protocol.outMsgs === "number" &&
    typeof protocol.outBytes === "number"
    ? (protocol as ClientWire)
    : undefined;
}

/** Number of decimal digits of a non-negative integer. */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Writes `n` in decimal ASCII at `at`; returns the position after it. */
function writeDecimal(out: Uint8Array, at: number, n: number): number {
  const end = at + digits(n);
  let i = end;
  do {
    out[--i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
  return end;
}

/**
 * A Transport over NATS (`@nats-io/transport-node`). Directed frames go to
 * `<cluster>.node.<node token>`, broadcasts to `<cluster>.all`; both are plain publishes with no
 * headers, and each node has exactly two subscriptions. Sending is best effort: frames sent while
 * the connection is down are dropped and counted, and the runtime's deadlines, failover and
 * heartbeats deal with the loss.
 */
class NatsTransportImpl implements NatsTransport {
  readonly nodeId: string;
  readonly nodeSubject: string;
  readonly broadcastSubject: string;
  /** A broadcast is one publish to `<cluster>.all`; the server fans it out. */
  readonly fanOut = true;
  readonly stats: NatsTransportStats = {
    framesSent: 0,
    bytesSent: 0,
    framesReceived: 0,
    bytesReceived: 0,
    droppedOversized: 0,
    droppedDisconnected: 0,
    publishErrors: 0,
    reconnects: 0,
  };
  readonly #options: NatsTransportOptions;
  readonly #cluster: string;
  readonly #servers: string | readonly string[];
  readonly #env: Env;
  readonly #log: Logger;
  readonly #reconnect: Required<NatsReconnectOptions> | false;
  readonly #subjects = new Map<string, Subject>();
  readonly #broadcast: Subject;
  readonly #listeners = new Set<(status: NatsTransportStatus) => void>();
  readonly #lastDropLog = new Map<string, number>();
  /** Set while connected or reconnecting; the hot path reads it directly. */
  #nc: NatsConnection | undefined;
  #queue: FrameQueue | undefined;
  #status: NatsTransportStatus = "disconnected";
  #maxPayload = Number.POSITIVE_INFINITY;
  #connecting = false;
  #closing: Promise<void> | undefined;
  /** The client's protocol handler when it can take pre-encoded commands (see #flush). */
  #wire: ClientWire | undefined;
  /** Frames waiting for the next flush: subjects and frames side by side, reused. */
  #outCount = 0;
  readonly #outSubjects: Subject[] = [];
  readonly #outFrames: Array<Uint8Array | undefined> = [];
  /** When the current outage started, for the backoff. */
  #downSince: number | undefined;

  constructor(options: NatsTransportOptions) {
    if (typeof options.nodeId !== "string" || options.nodeId.length === 0) {
      throw new KeelError("CONFIGURATION", "createNatsTransport needs a nodeId");
    }
    this.nodeId = options.nodeId;
    this.#options = options;
    this.#cluster = checkCluster(options.cluster ?? DEFAULT_CLUSTER);
    this.nodeSubject = nodeSubject(this.#cluster, options.nodeId);
    this.broadcastSubject = broadcastSubject(this.#cluster);
    this.#broadcast = subjectOf(this.broadcastSubject);
    this.#servers = options.servers ?? DEFAULTS.servers;
    this.#env = options.env ?? createRealEnv();
    this.#log = (options.logger ?? createJsonLogger({ clock: this.#env.clock })).child({
      node: options.nodeId,
      transport: "nats",
    });
    const r = options.reconnect;
    this.#reconnect =
      r === false
        ? false
        : {
            initialDelayMs: nonNegative(
              "initialDelayMs",
              r?.initialDelayMs,
              DEFAULTS.initialDelayMs,
            ),
            maxDelayMs: nonNegative("maxDelayMs", r?.maxDelayMs, DEFAULTS.maxDelayMs),
            jitterMs: nonNegative("jitterMs", r?.jitterMs, DEFAULTS.jitterMs),
          };
    nonNegative("connectTimeoutMs", options.connectTimeoutMs, 0);
    nonNegative("pingIntervalMs", options.pingIntervalMs, 0);
    nonNegative("closeTimeoutMs", options.closeTimeoutMs, 0);
  }

  get status(): NatsTransportStatus {
    return this.#status;
  }

  get maxPayload(): number | undefined {
    return Number.isFinite(this.#maxPayload) ? this.#maxPayload : undefined;
  }

  /** The server's max_payload, for the node's frame limit (the Transport port's name for it). */
  get maxFrameBytes(): number | undefined {
    return this.maxPayload;
  }

  connection(): NatsConnection {
    if (this.#nc === undefined) {
      throw new KeelError(
        "FAILED_PRECONDITION",
        `NATS transport of '${this.nodeId}' is not connected`,
      );
    }
    return this.#nc;
  }

  onStatus(listener: (status: NatsTransportStatus) => void): Disposable {
    this.#listeners.add(listener);
    return {
      [Symbol.dispose]: () => {
        this.#listeners.delete(listener);
      },
    };
  }

  // ---- connecting ------------------------------------------------------------------------------

  async connect(): Promise<void> {
    if (this.#nc !== undefined || this.#connecting) {
      throw new KeelError(
        "FAILED_PRECONDITION",
        `NATS transport of '${this.nodeId}' is already connected`,
      );
    }
    this.#connecting = true;
    try {
      const options = await this.#connectionOptions();
      let nc: NatsConnection;
      try {
        nc = await connect(options);
      } catch (err) {
        throw connectError(err, this.#servers);
      } finally {
        this.#downSince = undefined;
      }
      // Listen at once: a disconnect during the rest of the setup must not go unseen.
      const statuses = nc.status();
      const queue = new FrameQueue();
      const onMessage = (err: Error | null, msg: Msg) => {
        if (err !== null) {
          this.#log.error({ err }, "NATS subscription failed");
          return;
        }
        const frame = msg.data;
        this.stats.framesReceived++;
        this.stats.bytesReceived += frame.byteLength;
        try {
          queue.deliver(frame);
        } catch (err) {
          // A listener runs inside the client's read loop: a throw would end the connection's reads.
          this.#log.error({ err }, "a frame listener threw");
        }
      };
      const subs = [
        nc.subscribe(this.nodeSubject, { callback: onMessage }),
        nc.subscribe(this.broadcastSubject, { callback: onMessage }),
      ];
      try {
        // The server has the subscriptions (or refused them) before the node announces itself.
        await nc.flush();
      } catch (err) {
        await nc.close().catch(() => {});
        throw connectError(err, this.#servers);
      }
      const refused = subs.find((s) => s.isClosed());
      if (refused !== undefined) {
        await nc.close().catch(() => {});
        throw new KeelError(
          "PERMISSION_DENIED",
          `NATS refused the subscription to '${refused.getSubject()}': the user needs subscribe permission on ${this.nodeSubject} and ${this.broadcastSubject}`,
        );
      }
      this.#nc = nc;
      this.#wire = clientWire(nc);
      this.#queue = queue;
      this.#closing = undefined;
      this.#maxPayload = nc.info?.max_payload ?? Number.POSITIVE_INFINITY;
      this.#setStatus("connected");
      void this.#watch(nc, statuses, queue);
    } finally {
      this.#connecting = false;
    }
  }

  async #connectionOptions(): Promise<NodeConnectionOptions> {
    const o = this.#options;
    const authenticators: Authenticator[] =
      o.authenticator === undefined
        ? []
        : typeof o.authenticator === "function"
          ? [o.authenticator]
          : [...o.authenticator];
    if (o.nkeySeed !== undefined) {
      authenticators.push(nkeyAuthenticator(new TextEncoder().encode(o.nkeySeed)));
    }
    if (o.credsFile !== undefined) {
      let creds: Uint8Array;
      try {
        // Imported here: only a node with a credentials file needs node:fs/promises.
        const { readFile } = await import("node:fs/promises");
        creds = await readFile(o.credsFile);
      } catch (err) {
        throw new KeelError("CONFIGURATION", `cannot read NATS credentials file '${o.credsFile}'`, {
          cause: err,
        });
      }
      authenticators.push(credsAuthenticator(creds));
    }
    const reconnect = this.#reconnect;
    const options: NodeConnectionOptions = {
      ...o.connectionOptions,
      servers: typeof this.#servers === "string" ? this.#servers : [...this.#servers],
      name: o.name ?? `keel:${this.nodeId}`,
      // A node never needs its own broadcasts back; the server filters them for free.
      noEcho: true,
      noAsyncTraces: true,
      timeout: o.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      pingInterval: o.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
      maxPingOut: 2,
      reconnect: reconnect !== false,
      maxReconnectAttempts: reconnect === false ? 0 : -1,
      waitOnFirstConnect: false,
      ...(reconnect === false ? {} : { reconnectDelayHandler: () => this.#backoff(reconnect) }),
      ...(o.user === undefined ? {} : { user: o.user }),
      ...(o.pass === undefined ? {} : { pass: o.pass }),
      ...(o.token === undefined ? {} : { token: o.token }),
      ...(authenticators.length === 0 ? {} : { authenticator: authenticators }),
      ...(o.tls === undefined ? {} : { tls: { ...o.tls } }),
    };
    return options;
  }

  /**
   * The wait before the next reconnection attempt: half the time the outage has lasted, within
   * [initial, max], plus jitter. Waits grow by about 1.5x per attempt, whatever the number of
   * servers, and the first attempt after a disconnect is immediate (the client's own rule).
   */
  #backoff(r: Required<NatsReconnectOptions>): number {
    const now = this.#env.clock.now();
    this.#downSince ??= now;
    const base = Math.min(r.maxDelayMs, Math.max(r.initialDelayMs, (now - this.#downSince) / 2));
    return base + this.#env.random.next() * r.jitterMs;
  }

  /** Follows the client's status until the connection closes for good. */
  async #watch(
    nc: NatsConnection,
    statuses: AsyncIterable<Status>,
    queue: FrameQueue,
  ): Promise<void> {
    try {
      for await (const s of statuses) this.#onClientStatus(nc, s);
    } catch (err) {
      this.#log.error({ err }, "NATS status stream failed");
    }
    await nc.closed().then((err) => {
      if (this.#closing === undefined && this.#nc === nc) {
        // Nobody asked for this: reconnection gave up (or was off), or the server refused us.
        this.#log.error(
          { err },
          "NATS connection closed for good; the node receives no more frames",
        );
      }
    });
    queue.close();
    // After close() and a new connect(), this old connection has no say any more.
    if (this.#nc === nc) {
      this.#nc = undefined;
      this.#wire = undefined;
      this.#setStatus("disconnected");
    }
  }

  #onClientStatus(nc: NatsConnection, s: Status): void {
    switch (s.type) {
      case "disconnect":
      case "staleConnection":
      case "reconnecting":
        if (this.#status === "connected") {
          this.#log.warn({ server: "server" in s ? s.server : undefined }, "lost the NATS server");
        }
        this.#setStatus(this.#reconnect === false ? "disconnected" : "reconnecting");
        break;
      case "reconnect":
        this.#downSince = undefined;
        this.#maxPayload = nc.info?.max_payload ?? this.#maxPayload;
        this.stats.reconnects++;
        this.#log.info({ server: s.server }, "reconnected to NATS");
        this.#setStatus("connected");
        break;
      case "error":
        this.#log.warn({ err: s.error }, "NATS reported an error");
        break;
      case "ldm":
        this.#log.info({ server: s.server }, "NATS server entering lame duck mode");
        break;
      case "slowConsumer":
        this.#log.warn({ pending: s.pending }, "NATS slow consumer");
        break;
      default:
        break;
    }
  }

  #setStatus(status: NatsTransportStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    for (const listener of [...this.#listeners]) {
      try {
        listener(status);
      } catch (err) {
        this.#log.error({ err }, "a NATS status listener threw");
      }
    }
  }

  // ---- frames ----------------------------------------------------------------------------------

  send(to: string, frame: Uint8Array): void {
    if (to === this.nodeId) {
      // noEcho would filter a frame to ourselves: deliver it here, as the server would.
      // On a microtask: a listener is never called from inside send().
      const queue = this.#queue;
      if (queue !== undefined && this.#nc !== undefined) queueMicrotask(() => queue.deliver(frame));
      return;
    }
    let subject = this.#subjects.get(to);
    if (subject === undefined) {
      if (this.#subjects.size >= MAX_CACHED_SUBJECTS) this.#subjects.clear();
      subject = subjectOf(nodeSubject(this.#cluster, to));
      this.#subjects.set(to, subject);
    }
    this.#publish(subject, frame);
  }

  broadcast(frame: Uint8Array): void {
    this.#publish(this.#broadcast, frame);
  }

  #publish(subject: Subject, frame: Uint8Array): void {
    const nc = this.#nc;
    if (nc === undefined || this.#status !== "connected" || this.#closing !== undefined) {
      this.stats.droppedDisconnected++;
      this.#dropped("disconnected", subject.name, frame);
      return;
    }
    if (frame.byteLength > this.#maxPayload) {
      this.stats.droppedOversized++;
      this.#dropped("oversized", subject.name, frame);
      return;
    }
    // Batched: frames sent while the runtime works through a burst of inbound frames leave in
    // one socket write (see #flush).
    const n = this.#outCount++;
    this.#outSubjects[n] = subject;
    this.#outFrames[n] = frame;
    if (n === 0) process.nextTick(this.#flush);
  }

  /**
   * Hands the frames sent since the last flush to the client in one go. The client writes its
   * buffer on a microtask after the first publish; the runtime handles a burst of inbound frames
   * one by one (in the subscription callback, and the callers' continuations on microtasks), so
   * publishing at once would cost one write per reply. A tick runs after the whole microtask
   * chain, so a burst of N replies becomes one write. No timer is involved.
   *
   * When the client takes pre-encoded commands, the burst goes to it as one buffer of `PUB`
   * commands, written with the subjects' cached bytes: `publish()` encodes a command line per
   * frame and queues three buffers that its writer then copies into one, which cost about four
   * times what the frame's bytes do. The commands are those `publish()` writes, byte for byte.
   */
  readonly #flush = (): void => {
    const count = this.#outCount;
    const subjects = this.#outSubjects;
    const frames = this.#outFrames;
    this.#outCount = 0;
    const nc = this.#nc;
    // Closed since the frames were accepted: dropping them here spares an Error per frame.
    if (nc === undefined || nc.isClosed()) {
      for (let i = 0; i < count; i++) frames[i] = undefined;
      this.stats.droppedDisconnected += count;
      return;
    }
    const wire = this.#wire;
    if (wire !== undefined && !wire.noMorePublishing && this.#flushEncoded(wire, count)) return;
    for (let i = 0; i < count; i++) {
      const subject = (subjects[i] as Subject).name;
      const frame = frames[i] as Uint8Array;
      frames[i] = undefined; // the client holds its own reference until written
      try {
        nc.publish(subject, frame);
      } catch (err) {
        this.stats.publishErrors++;
        try {
          this.#dropped("refused", subject, frame, err);
        } catch {
          // a throwing logger must not take the process down from a tick
        }
        continue;
      }
      this.stats.framesSent++;
      this.stats.bytesSent += frame.byteLength;
    }
  };

  /** Writes `PUB <subject> <size>\r\n<frame>\r\n` per frame into one buffer for the client. */
  #flushEncoded(wire: ClientWire, count: number): boolean {
    const subjects = this.#outSubjects;
    const frames = this.#outFrames;
    let size = 0;
    let payload = 0;
    for (let i = 0; i < count; i++) {
      const n = (frames[i] as Uint8Array).byteLength;
      payload += n;
      size += (subjects[i] as Subject).pub.byteLength + digits(n) + n + 4;
    }
    const out = Buffer.allocUnsafe(size);
    let at = 0;
    for (let i = 0; i < count; i++) {
      const pub = (subjects[i] as Subject).pub;
      const frame = frames[i] as Uint8Array;
      frames[i] = undefined;
      out.set(pub, at);
      at += pub.byteLength;
      at = writeDecimal(out, at, frame.byteLength);
      out[at++] = 13;
      out[at++] = 10;
      out.set(frame, at);
      at += frame.byteLength;
      out[at++] = 13;
      out[at++] = 10;
    }
    try {
      wire.sendCommand(out);
    } catch (err) {
      this.stats.publishErrors += count;
      try {
        this.#dropped("refused", `${count} frames`, out, err);
      } catch {
        // a throwing logger must not take the process down from a tick
      }
      return true;
    }
    // What publish() counts, for the connection's own stats().
    wire.outMsgs += count;
    wire.outBytes += payload;
    this.stats.framesSent += count;
    this.stats.bytesSent += payload;
    return true;
  }

  /** Logs a dropped frame, at most once per kind per interval (counters keep the totals). */
  #dropped(kind: string, subject: string, frame: Uint8Array, cause?: unknown): void {
    const now = this.#env.clock.now();
    const last = this.#lastDropLog.get(kind);
    if (last !== undefined && now - last < DROP_LOG_INTERVAL_MS) return;
    this.#lastDropLog.set(kind, now);
    if (kind === "oversized") {
      const err = new KeelError(
        "PROTOCOL",
        `frame of ${frame.byteLength} bytes exceeds the NATS server's max_payload of ${this.#maxPayload}`,
        { noStack: true, details: { size: frame.byteLength, limit: this.#maxPayload } },
      );
      this.#log.warn(
        { err, subject, dropped: this.stats.droppedOversized },
        "dropped an oversized frame",
      );
    } else if (kind === "disconnected") {
      // Routine during an outage: the status listeners already know.
      this.#log.debug(
        { subject, status: this.#status, dropped: this.stats.droppedDisconnected },
        "dropped a frame while not connected",
      );
    } else {
      this.#log.warn(
        { err: cause, subject, dropped: this.stats.publishErrors },
        "NATS refused a frame",
      );
    }
  }

  // ---- closing ---------------------------------------------------------------------------------

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const nc = this.#nc;
    const queue = this.#queue;
    if (nc === undefined) {
      queue?.close();
      this.#setStatus("disconnected");
      return;
    }
    const timeoutMs = this.#options.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs;
    if (this.#status === "connected" && !nc.isClosed()) {
      // Drain: frames already in flight to us are delivered, frames we sent are flushed.
      const timers = this.#env.timers;
      let timer: ReturnType<Env["timers"]["schedule"]> | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = timers.schedule(() => resolve("timeout"), timeoutMs);
      });
      const drained = nc.drain().then(
        () => "drained" as const,
        (err: unknown) => {
          this.#log.debug({ err }, "NATS drain failed; closing");
          return "failed" as const;
        },
      );
      const outcome = await Promise.race([drained, timedOut]);
      if (timer !== undefined) timers.cancel(timer);
      if (outcome === "timeout") this.#log.warn({ timeoutMs }, "NATS drain timed out; closing");
    }
    if (!nc.isClosed()) await nc.close().catch(() => {});
    await nc.closed();
    if (this.#nc === nc) {
      this.#nc = undefined;
      this.#wire = undefined;
    }
    queue?.close();
    this.#setStatus("disconnected");
  }

  /** Frames as they arrive, straight from the client's subscription callback. */
  listen(onFrame: FrameSink): Promise<void> {
    if (this.#queue === undefined) {
      throw new KeelError("CONFIGURATION", `NATS transport of '${this.nodeId}' is not connected`);
    }
    return this.#queue.listen(onFrame);
  }

  [Symbol.asyncIterator](): AsyncIterator<InboundFrame> {
    if (this.#queue === undefined) {
      throw new KeelError("CONFIGURATION", `NATS transport of '${this.nodeId}' is not connected`);
    }
    return this.#queue[Symbol.asyncIterator]();
  }
}

/**
 * Creates a Transport that carries a node's frames over NATS.
 * @example
 * const transport = createNatsTransport({ nodeId: "orders-1", servers: "nats://10.0.0.5:4222" });
 * const node = createNode({ id: "orders-1", transport, codec: msgpackCodec, services: [orders] });
 * await node.start();
 */
export function createNatsTransport(options: NatsTransportOptions): NatsTransport {
  return new NatsTransportImpl(options);
}
