import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { defineService } from "@keel/core";
import { type ServiceClient, Svcm } from "@nats-io/services";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import {
  type DiscoveryServer,
  type SrvInfoResponse,
  type SrvPingResponse,
  type SrvStatsResponse,
  serveDiscovery,
} from "../src/index.ts";
import { type NatsServer, startNatsServer } from "./nats-server.ts";
import { echo, type NatsNode, natsNode, stopAll } from "./support.ts";

const echo2 = defineService("echo", { version: 2 }).action("say", {
  input: z.object({ text: z.string() }),
  output: z.object({ text: z.string() }),
  handler: ({ text }) => ({ text }),
});

async function all<T>(it: Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of await it) out.push(x);
  return out;
}

describe("$SRV discovery: NATS service tooling sees Keel nodes", { timeout: 60_000 }, () => {
  let server: NatsServer;
  let a: NatsNode;
  let b: NatsNode;
  let discoveryA: DiscoveryServer;
  let discoveryB: DiscoveryServer;
  let peer: NatsConnection;
  let client: ServiceClient;

  before(async () => {
    server = await startNatsServer();
    a = natsNode(server.url, "node.a", [echo, echo2]);
    b = natsNode(server.url, "b", [echo]);
    await a.node.start();
    await b.node.start();
    discoveryA = serveDiscovery(a.transport.connection(), {
      node: a.node,
      services: [echo, echo2],
      metadata: { team: "payments" },
    });
    discoveryB = serveDiscovery(b.transport.connection(), { node: b.node, services: [echo] });
    peer = await connect({ servers: server.url });
    // The peer that discovers: @nats-io/services' own client, with short waits to keep the test
    // quick. @nats-io/services 3.0.0-25 (the newest) is typed against nats-core 3.0.0-50 and
    // transport-node 3.4 against nats-core 3.4.0: the same connection, two declarations.
    // @ts-expect-error the two nats-core copies' NatsConnection types differ (see above)
    const svcm = new Svcm(peer);
    client = svcm.client({ strategy: "stall", maxWait: 1000, stall: 200 });
  });
  after(async () => {
    await peer?.close();
    await stopAll([a, b].filter((n) => n !== undefined));
    await server?.[Symbol.asyncDispose]();
  });

  it("answers PING for every hosted service@version", async () => {
    const pings = (await all(client.ping())) as unknown[] as SrvPingResponse[];
    const seen = pings.map((p) => `${p.name} ${p.version} ${p.id}`).sort();
    assert.deepEqual(seen, ["echo 1.0.0 b-v1", "echo 1.0.0 node_2Ea-v1", "echo 2.0.0 node_2Ea-v2"]);
    for (const p of pings) assert.equal(p.type, "io.nats.micro.v1.ping_response");
    const mine = pings.find((p) => p.id === "node_2Ea-v2");
    assert.deepEqual(mine?.metadata, {
      team: "payments",
      "keel.node": "node.a",
      "keel.service": "echo@2",
      "keel.cluster": "keel",
      "keel.events": "",
    });
    assert.deepEqual(
      discoveryA.instances.map((i) => i.id),
      ["node_2Ea-v1", "node_2Ea-v2"],
    );
  });

  it("answers INFO with one endpoint per action, on the node's subject", async () => {
    const infos = (await all(client.info("echo", "node_2Ea-v1"))) as unknown[] as SrvInfoResponse[];
    assert.equal(infos.length, 1);
    const info = infos[0]!;
    assert.equal(info.type, "io.nats.micro.v1.info_response");
    assert.equal(info.name, "echo");
    assert.equal(info.version, "1.0.0");
    assert.match(info.description, /echo@1 on node node\.a/);
    assert.deepEqual(
      info.endpoints.map((e) => [e.name, e.subject, e.metadata["keel.idempotent"]]),
      [
        ["say", "keel.node.node_2Ea", "true"],
        ["fail", "keel.node.node_2Ea", "false"],
      ],
    );
    assert.equal(info.endpoints[0]?.metadata["description"], "Echoes the text back");
  });

  it("answers by name: every instance of that service", async () => {
    const byName = await all(client.info("echo"));
    assert.equal(byName.length, 3);
    // a name nobody hosts: the client's own "no responders"
    await assert.rejects(all(client.ping("nope")), /no responders/);
  });

  it("answers STATS with the node's state and totals", async () => {
    await b.node.call(echo, "say", { text: "x" }, { timeoutMs: 2000 });
    const stats = (await all(client.stats("echo", "b-v1"))) as unknown[] as SrvStatsResponse[];
    assert.equal(stats.length, 1);
    const s = stats[0]!;
    assert.equal(s.type, "io.nats.micro.v1.stats_response");
    assert.ok(!Number.isNaN(Date.parse(s.started)));
    assert.deepEqual(
      s.endpoints.map((e) => e.name),
      ["say", "fail"],
    );
    const data = s.endpoints[0]?.data as { node: string; state: string; nodeStats: object };
    assert.equal(data.node, "b");
    assert.equal(data.state, "ready");
  });

  it("counts each action's requests, errors and processing time in STATS", async () => {
    const statsOf = async (name: string, id: string) => {
      const list = (await all(client.stats(name, id))) as unknown[] as SrvStatsResponse[];
      assert.equal(list.length, 1);
      return new Map(list[0]!.endpoints.map((e) => [e.name, e]));
    };
    // echo@2 runs on node.a only: b's calls reach it over NATS; one has input its schema refuses.
    for (let i = 0; i < 5; i++) await b.node.call(echo2, "say", { text: `t${i}` });
    await assert.rejects(
      b.node.call(echo2, "say", { text: 7 } as unknown as { text: string }),
      (err: Error & { code?: string }) => err.code === "INVALID_ARGUMENT",
    );
    const v2 = (await statsOf("echo", "node_2Ea-v2")).get("say")!;
    assert.equal(v2.num_requests, 6);
    assert.equal(v2.num_errors, 1);
    assert.match(v2.last_error ?? "", /^INVALID_ARGUMENT: input of echo\.say/);
    assert.ok(v2.processing_time > 0, "processing time is counted, in ns");
    assert.equal(v2.average_processing_time, Math.round(v2.processing_time / 6));

    // echo@1 runs on both nodes: the two instances' counts add up to what a (a caller) sent.
    const before = [await statsOf("echo", "node_2Ea-v1"), await statsOf("echo", "b-v1")];
    const sum = (maps: Map<string, SrvStatsResponse["endpoints"][number]>[], action: string) =>
      maps.reduce(
        (acc, m) => ({
          requests: acc.requests + (m.get(action)?.num_requests ?? 0),
          errors: acc.errors + (m.get(action)?.num_errors ?? 0),
        }),
        { requests: 0, errors: 0 },
      );
    for (let i = 0; i < 4; i++) await a.node.call(echo, "say", { text: "x" });
    for (let i = 0; i < 3; i++) await assert.rejects(a.node.call(echo, "fail", {}));
    const after = [await statsOf("echo", "node_2Ea-v1"), await statsOf("echo", "b-v1")];
    const say = [sum(before, "say"), sum(after, "say")];
    const fail = [sum(before, "fail"), sum(after, "fail")];
    assert.deepEqual(
      { requests: say[1]!.requests - say[0]!.requests, errors: say[1]!.errors - say[0]!.errors },
      { requests: 4, errors: 0 },
    );
    assert.deepEqual(
      {
        requests: fail[1]!.requests - fail[0]!.requests,
        errors: fail[1]!.errors - fail[0]!.errors,
      },
      { requests: 3, errors: 3 },
    );
  });

  it("stops answering when the node stops", async () => {
    await b.node.stop({ graceMs: 0 });
    await discoveryB.stop();
    const pings = await all(client.ping());
    assert.deepEqual(pings.map((p) => p.id).sort(), ["node_2Ea-v1", "node_2Ea-v2"]);
  });
});
