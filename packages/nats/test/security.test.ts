import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isKeelError, silentLogger } from "@keel/core";
import { nkeys } from "@nats-io/transport-node";
import { createNatsTransport, type NatsTransportOptions } from "../src/index.ts";
import { startNatsServer } from "./nats-server.ts";
import { echo, natsNode, stopAll } from "./support.ts";

function openssl(dir: string, args: readonly string[]): void {
  const run = spawnSync("openssl", args, { cwd: dir, encoding: "utf8", timeout: 30_000 });
  if (run.error !== undefined) {
    throw new Error(
      `openssl not found (${run.error.message}): install it: apt-get install openssl`,
    );
  }
  if (run.status !== 0) throw new Error(`openssl ${args.join(" ")} failed:\n${run.stderr}`);
}

interface Pki {
  readonly dir: string;
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (P-256). */
function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "keel-tls-"));
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(dir, [
    "req",
    "-x509",
    ...key,
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=keel-test-ca",
  ]);
  writeFileSync(
    join(dir, "server.ext"),
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  writeFileSync(join(dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
  for (const [name, subject] of [
    ["server", "/CN=127.0.0.1"],
    ["client", "/CN=keel-node"],
  ] as const) {
    openssl(dir, [
      "req",
      ...key,
      "-keyout",
      `${name}-key.pem`,
      "-out",
      `${name}.csr`,
      "-subj",
      subject,
    ]);
    openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca-key.pem",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-extfile",
      `${name}.ext`,
    ]);
  }
  return {
    dir,
    ca: join(dir, "ca.pem"),
    serverCert: join(dir, "server.pem"),
    serverKey: join(dir, "server-key.pem"),
    clientCert: join(dir, "client.pem"),
    clientKey: join(dir, "client-key.pem"),
  };
}

/** Connects a bare transport and closes it; returns the error if it could not connect. */
async function tryConnect(options: NatsTransportOptions): Promise<unknown> {
  const t = createNatsTransport({ connectTimeoutMs: 3000, reconnect: false, ...options });
  try {
    await t.connect();
    return undefined;
  } catch (err) {
    return err;
  } finally {
    await t.close();
  }
}

describe("NATS security options", { timeout: 60_000 }, () => {
  let pki: Pki;
  before(() => {
    pki = makePki();
  });
  after(() => {
    if (pki !== undefined) rmSync(pki.dir, { recursive: true, force: true });
  });

  it("TLS: nodes connect with the CA file and make a call; without it the server is not trusted", async () => {
    await using server = await startNatsServer({
      jetstream: false,
      tls: { cert: pki.serverCert, key: pki.serverKey },
    });
    const tls = { caFile: pki.ca };
    const a = natsNode(server.url, "a", [echo], { transport: { tls } });
    const b = natsNode(server.url, "b", [], { transport: { tls } });
    try {
      await a.node.start();
      await b.node.start();
      await b.node.waitForEndpoints(echo, 1, 5000);
      const out = await b.node.call(echo, "say", { text: "secret" }, { timeoutMs: 2000 });
      assert.deepEqual(out, { text: "secret", node: "a" });
    } finally {
      await stopAll([a, b]);
    }
    const err = await tryConnect({ nodeId: "c", servers: server.url, logger: silentLogger });
    assert.ok(isKeelError(err), "an untrusted server certificate fails the connection");
    assert.equal(err.code, "UNAVAILABLE");
  });

  it("mutual TLS: a client certificate is required and accepted", async () => {
    await using server = await startNatsServer({
      jetstream: false,
      tls: { cert: pki.serverCert, key: pki.serverKey, verifyCa: pki.ca },
    });
    const ok = await tryConnect({
      nodeId: "m",
      servers: server.url,
      tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey },
      logger: silentLogger,
    });
    assert.equal(ok, undefined);
    const refused = await tryConnect({
      nodeId: "m",
      servers: server.url,
      tls: { caFile: pki.ca },
      logger: silentLogger,
    });
    assert.ok(isKeelError(refused), "no client certificate, no connection");
  });

  it("user and password; wrong ones are UNAUTHENTICATED", async () => {
    await using server = await startNatsServer({ jetstream: false, user: "keel", pass: "s3cret" });
    const base = { nodeId: "u", servers: server.url, logger: silentLogger };
    assert.equal(await tryConnect({ ...base, user: "keel", pass: "s3cret" }), undefined);
    const err = await tryConnect({ ...base, user: "keel", pass: "wrong" });
    assert.ok(isKeelError(err));
    assert.equal(err.code, "UNAUTHENTICATED");
  });

  it("token", async () => {
    await using server = await startNatsServer({ jetstream: false, token: "t0ken" });
    const base = { nodeId: "t", servers: server.url, logger: silentLogger };
    assert.equal(await tryConnect({ ...base, token: "t0ken" }), undefined);
    const err = await tryConnect({ ...base, token: "nope" });
    assert.ok(isKeelError(err));
    assert.equal(err.code, "UNAUTHENTICATED");
  });

  it("NKEY seed", async () => {
    const user = nkeys.createUser();
    const seed = new TextDecoder().decode(user.getSeed());
    await using server = await startNatsServer({
      jetstream: false,
      config: `authorization { users = [ { nkey: "${user.getPublicKey()}" } ] }\n`,
    });
    const base = { nodeId: "k", servers: server.url, logger: silentLogger };
    assert.equal(await tryConnect({ ...base, nkeySeed: seed }), undefined);
    const other = new TextDecoder().decode(nkeys.createUser().getSeed());
    const err = await tryConnect({ ...base, nkeySeed: other });
    assert.ok(isKeelError(err));
    assert.equal(err.code, "UNAUTHENTICATED");
  });

  it("a user who may not subscribe to the node's subjects gets PERMISSION_DENIED at connect", async () => {
    await using server = await startNatsServer({
      jetstream: false,
      config:
        'authorization { users = [ { user: "limited", password: "p", permissions: { subscribe: { deny: ["keel.all"] } } } ] }\n',
    });
    const err = await tryConnect({
      nodeId: "x",
      servers: server.url,
      user: "limited",
      pass: "p",
      logger: silentLogger,
    });
    assert.ok(isKeelError(err));
    assert.equal(err.code, "PERMISSION_DENIED");
    assert.match(err.message, /keel\.all/);
  });

  it("a credentials file that cannot be read is a CONFIGURATION error", async () => {
    const err = await tryConnect({
      nodeId: "c",
      servers: "127.0.0.1:1",
      credsFile: join(pki.dir, "missing.creds"),
      logger: silentLogger,
    });
    assert.ok(isKeelError(err));
    assert.equal(err.code, "CONFIGURATION");
  });
});
