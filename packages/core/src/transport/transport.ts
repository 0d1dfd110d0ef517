import { KeelError } from "../errors/index.ts";

/** One frame as received, with the sending node when the transport knows it. */
export interface InboundFrame {
  readonly frame: Uint8Array;
  /** The sending node, when the transport can tell (the in-process network can). */
  readonly from?: string;
}

/** Where a transport's connection stands (for transports that have one, like NATS). */
export type TransportStatus = "connected" | "reconnecting" | "disconnected";

/**
 * The narrow port every transport implements (in-process network, NATS). Sending is best effort:
 * the runtime, not the transport, owns timeouts, retries and failure detection.
 */
export interface Transport extends AsyncIterable<InboundFrame> {
  /** Largest frame the transport itself carries, known once connected (NATS: max_payload). */
  readonly maxFrameBytes?: number | undefined;
  /** Connection status changes, for transports that have a connection. */
  onStatus?(listener: (status: TransportStatus) => void): Disposable;
  /** The node this transport belongs to. */
  readonly nodeId: string;
  /** Joins the network; frames flow after this resolves. */
  connect(): Promise<void>;
  /** Sends a frame to one node. */
  send(to: string, frame: Uint8Array): void;
  /** Sends a frame to every other node on the network. */
  broadcast(frame: Uint8Array): void;
  /**
   * True when `broadcast` costs one send whatever the number of receivers (NATS: one publish the
   * server fans out). The runtime then sends a broadcast event once, not once per subscribing node.
   */
  readonly fanOut?: boolean;
  /** Leaves the network; the inbound iteration ends. */
  close(): Promise<void>;
  /**
   * Optional, instead of iterating: the transport calls `onFrame` for each inbound frame as it
   * arrives (never from inside `send` or `broadcast`), which spares the promise and the objects
   * the iteration costs per frame. Called at most once, after `connect()`; frames that arrived
   * before are delivered first, on a microtask. The promise resolves when the inbound stream
   * ends, as the iteration would.
   */
  listen?(onFrame: FrameSink): Promise<void>;
}

/**
 * Takes one inbound frame, with its sending node when the transport knows it. It must not throw:
 * transports call it from their read loop (the node's own sink catches everything).
 */
export type FrameSink = (frame: Uint8Array, from: string | undefined) => void;

/** An unbounded FIFO of frames exposed as a single-consumer async iterable. */
export class FrameQueue implements AsyncIterable<InboundFrame> {
  #items: InboundFrame[] = [];
  #head = 0;
  #waiter: ((result: IteratorResult<InboundFrame>) => void) | undefined;
  #closed = false;
  /** Set by `listen`: frames go straight to it. */
  #sink: FrameSink | undefined;
  #ended: (() => void) | undefined;

  get closed(): boolean {
    return this.#closed;
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Queues a frame, or hands it to the listener at once. */
  deliver(frame: Uint8Array, from?: string): void {
    if (this.#closed) return;
    const sink = this.#sink;
    if (sink === undefined) this.push(from === undefined ? { frame } : { frame, from });
    else sink(frame, from);
  }

  /**
   * Hands every frame to `sink` from now on, those queued first (on a microtask, so the caller
   * finishes what it is doing before the first one). Resolves when the queue closes. The queue
   * has one consumer: iterate it or listen to it, not both.
   */
  listen(sink: FrameSink): Promise<void> {
    if (this.#ended !== undefined || this.#waiter !== undefined) {
      throw new KeelError("FAILED_PRECONDITION", "a frame queue has one consumer");
    }
    return new Promise((resolve) => {
      this.#ended = resolve;
      if (this.#closed) {
        this.#ended = undefined;
        resolve();
        return;
      }
      queueMicrotask(() => {
        let item = this.#take();
        while (item !== undefined && !this.#closed) {
          sink(item.frame, item.from);
          item = this.#take();
        }
        if (!this.#closed) this.#sink = sink;
      });
    });
  }

  push(item: InboundFrame): void {
    if (this.#closed) return;
    const sink = this.#sink;
    if (sink !== undefined) {
      sink(item.frame, item.from);
      return;
    }
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#waiter = undefined;
      waiter({ value: item, done: false });
      return;
    }
    this.#items.push(item);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#items = [];
    this.#head = 0;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.({ value: undefined, done: true });
    this.#sink = undefined;
    const ended = this.#ended;
    this.#ended = undefined;
    ended?.();
  }

  #take(): InboundFrame | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  [Symbol.asyncIterator](): AsyncIterator<InboundFrame> {
    return {
      next: () => {
        const item = this.#take();
        if (item !== undefined) return Promise.resolve({ value: item, done: false });
        if (this.#closed) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          this.#waiter = resolve;
        });
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
