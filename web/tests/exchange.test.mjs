// The WebAssembly module and its JavaScript driver in Node (which has fetch
// and WebAssembly, as browsers do), against the project's server on
// 127.0.0.1: exchanges between two JavaScript sides, with the CLI both
// ways, a wrong code, a saved state resumed, a timeout, bad arguments.
//
//   tools/build-web.sh && node --test web/tests/
//
// support.mjs says what is tested; `cargo test --workspace` runs them too
// (cli/tests/web_package.rs).

import { readFile } from "node:fs/promises";
import net from "node:net";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { pkg, runCli, startServer } from "./support.mjs";

const APP = "example.com/web-tests";

const wormhole = await import(pathToFileURL(path.join(pkg, "wormhole-sync.js")).href);
await wormhole.load(await readFile(path.join(pkg, "wormhole_sync_web_bg.wasm")));
const { Initiator, Receiver } = wormhole;
const text = (bytes) => new TextDecoder().decode(bytes);

let server;
let url;

before(async () => {
  ({ server, url } = await startServer());
});

after(() => server.kill());

test("two JavaScript sides exchange data and agree on the verifier", async () => {
  const i = new Initiator(APP, "initiator's data", { rendezvous: url });
  const r = new Receiver(APP, await i.getCode(), "receiver's data", { rendezvous: url });
  const [mine, theirs] = await Promise.all([i.getData(), r.getData()]);
  assert.equal(text(mine), "receiver's data");
  assert.equal(text(theirs), "initiator's data");
  assert.deepEqual(await i.getVerifier(), await r.getVerifier());
  assert.equal((await i.getVerifier()).length, 32);
});

test("JavaScript and the CLI exchange both ways", async () => {
  const i = new Initiator(APP, "from javascript", { rendezvous: url });
  const received = runCli(url, ["receive", "--appid", APP, await i.getCode(), "from the cli"]).exit;
  assert.equal(text(await i.getData()), "from the cli");
  const { status, out } = await received;
  assert.equal(status, 0);
  assert.match(out, /from javascript/);

  const sent = runCli(url, ["send", "--appid", APP, "from the cli"]);
  const r = new Receiver(APP, await sent.code, "from javascript", { rendezvous: url });
  assert.equal(text(await r.getData()), "from the cli");
  const done = await sent.exit;
  assert.equal(done.status, 0, done.err);
  assert.match(done.out, /from javascript/);
});

test("a wrong code fails on both sides", async () => {
  const i = new Initiator(APP, "one", { rendezvous: url, timeout: 30 });
  const [number, words] = (await i.getCode()).split(/-(.*)/s);
  let other = words;
  while (other === words) {
    const o = new Initiator(APP + "/other", "-", { rendezvous: url });
    other = (await o.getCode()).split(/-(.*)/s)[1];
    await o.close();
  }
  const r = new Receiver(APP, `${number}-${other}`, "two", { rendezvous: url, timeout: 30 });
  const outcomes = await Promise.allSettled([i.getData(), r.getData()]);
  const names = outcomes.map((o) => o.status === "rejected" && o.reason.name);
  assert.ok(names.includes("WrongCodeError"), names.join());
  for (const o of outcomes) assert.ok(o.reason instanceof wormhole.WormholeSyncError, String(o.reason));
});

test("a state saved mid-exchange resumes, and roles are checked", async () => {
  const i = new Initiator(APP, "initiator's data", { rendezvous: url });
  const code = await i.getCode();
  const saved = i.serialize();
  // Stopping a serialized side leaves its channel to the saved state.
  i.cancel();
  await assert.rejects(i.getData(), wormhole.CancelledError);
  assert.throws(() => Receiver.fromSerialized(saved), wormhole.BadStateError);
  const resumed = Initiator.fromSerialized(saved);
  const r = new Receiver(APP, code, "receiver's data", { rendezvous: url });
  const [mine, theirs] = await Promise.all([resumed.getData(), r.getData()]);
  assert.equal(text(mine), "receiver's data");
  assert.equal(text(theirs), "initiator's data");
});

test("the timeout rejects every waiter with a timeout error", async () => {
  const i = new Initiator(APP, "alone", { rendezvous: url, schedule: [[0, 0.1]], timeout: 1 });
  await i.getCode();
  const started = Date.now();
  const waits = await Promise.allSettled([i.getData(), i.getVerifier()]);
  for (const w of waits) assert.ok(w.reason instanceof wormhole.ExchangeTimeoutError, String(w.reason));
  assert.ok(Date.now() - started < 5000);
});

test("an unreachable server is said so, with why", async () => {
  // A port nothing listens on (and not one fetch refuses to use).
  const closed = await new Promise((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  const i = new Initiator(APP, "x", { rendezvous: `http://127.0.0.1:${closed}`, schedule: [[0, 0.1]], timeout: 1 });
  await assert.rejects(i.getCode(), (e) => {
    assert.ok(e instanceof wormhole.ServerUnreachableError, String(e));
    assert.match(e.message, /could not reach the rendezvous server: .*ECONNREFUSED/);
    return true;
  });
});

test("bad arguments are clear errors", () => {
  assert.throws(() => new Initiator(APP, 42), TypeError);
  assert.throws(() => new Receiver(APP, "not a code", "x"), wormhole.BadCodeError);
  assert.throws(() => new Receiver(APP, 7, "x"), TypeError);
  assert.throws(() => new Initiator(APP, "x", { codeWords: 99 }), wormhole.UsageError);
  assert.throws(() => new Initiator(APP, "x".repeat(100000)), wormhole.UsageError);
  assert.throws(() => Initiator.fromSerialized("{not a state"), wormhole.BadStateError);
  assert.equal(wormhole.wordList(0).length, 256);
});
