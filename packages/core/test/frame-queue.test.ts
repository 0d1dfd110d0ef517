import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FrameQueue, hasCode } from "../src/index.ts";

const bytes = (n: number) => new Uint8Array([n]);

describe("FrameQueue", () => {
  it("iterates frames in order and ends when closed", async () => {
    const q = new FrameQueue();
    q.push({ frame: bytes(1) });
    q.deliver(bytes(2), "b");
    const seen: Array<[number, string | undefined]> = [];
    const done = (async () => {
      for await (const f of q) seen.push([f.frame[0]!, f.from]);
    })();
    await null;
    q.deliver(bytes(3));
    for (let i = 0; i < 5; i++) await null; // the consumer takes it
    q.close();
    await done;
    assert.deepEqual(seen, [
      [1, undefined],
      [2, "b"],
      [3, undefined],
    ]);
  });

  it("listen: queued frames first, on a microtask, then each frame as it is delivered", async () => {
    const q = new FrameQueue();
    q.deliver(bytes(1), "a");
    q.push({ frame: bytes(2) });
    const seen: Array<[number, string | undefined]> = [];
    const ended = q.listen((frame, from) => seen.push([frame[0]!, from]));
    assert.equal(seen.length, 0, "nothing is delivered from inside listen()");
    q.deliver(bytes(3)); // before the microtask: queued behind the first two
    await null;
    assert.deepEqual(seen, [
      [1, "a"],
      [2, undefined],
      [3, undefined],
    ]);
    q.deliver(bytes(4), "c");
    assert.deepEqual(seen.at(-1), [4, "c"], "delivered at once, synchronously");
    q.close();
    await ended;
    q.deliver(bytes(5));
    assert.equal(seen.length, 4, "nothing after close");
  });

  it("close drops the frames nobody has taken yet", async () => {
    const q = new FrameQueue();
    q.deliver(bytes(1));
    q.close();
    const seen: number[] = [];
    for await (const f of q) seen.push(f.frame[0]!);
    assert.deepEqual(seen, []);
  });

  it("listen on a closed queue resolves at once; a second consumer is refused", async () => {
    const closed = new FrameQueue();
    closed.close();
    await closed.listen(() => assert.fail("no frames"));
    const q = new FrameQueue();
    const ended = q.listen(() => {});
    assert.throws(
      () => q.listen(() => {}),
      (err: unknown) => hasCode(err, "FAILED_PRECONDITION"),
    );
    q.close();
    await ended;
  });
});
