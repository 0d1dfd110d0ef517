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
    assert.equal(s.endpoints[0]?.num_requests, 0);
  });

  it("stops answering when the node stops", async () => {
    await b.node.stop({ graceMs: 0 });
    await discoveryB.stop();
    const pings = await all(client.ping());
    assert.deepEqual(pings.map((p) => p.id).sort(), ["node_2Ea-v1", "node_2Ea-v2"]);
  });
});
