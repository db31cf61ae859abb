// The WebAssembly module and its JavaScript driver in Node (which has fetch
// and WebAssembly, as browsers do), against the project's server on
// 127.0.0.1: exchanges between two JavaScript sides, with the CLI both
// ways, a wrong code, a saved state resumed, a timeout, bad arguments.
//
//   tools/build-web.sh && node --test web/tests/
//
// WORMHOLE_SYNC_WEB_PKG (default web/pkg), WORMHOLE_SYNC_SERVER and
// WORMHOLE_SYNC (default target/debug's) name what is tested;
// `cargo test --workspace` runs them too (cli/tests/web_package.rs).

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pkg = process.env.WORMHOLE_SYNC_WEB_PKG || path.join(root, "web", "pkg");
const cli = process.env.WORMHOLE_SYNC || path.join(root, "target", "debug", "wormhole-sync");
// The server binary, else the CLI's `serve` (the same server).
const serverBinary = process.env.WORMHOLE_SYNC_SERVER || path.join(root, "target", "debug", "wormhole-sync-server");
const serverCommand = existsSync(serverBinary) ? [serverBinary] : [cli, "serve"];
const APP = "example.com/web-tests";

const wormhole = await import(pathToFileURL(path.join(pkg, "wormhole-sync.js")).href);
await wormhole.load(await readFile(path.join(pkg, "wormhole_sync_web_bg.wasm")));
const { Initiator, Receiver } = wormhole;
const text = (bytes) => new TextDecoder().decode(bytes);

let server;
let url;

before(async () => {
  server = spawn(
    serverCommand[0],
    [...serverCommand.slice(1), "--listen", "127.0.0.1:0", "--memory", "--rate-limit-exempt-loopback", "--max-channels-per-address", "0"],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, NO_COLOR: "1" } },
  );
  url = await new Promise((resolve, reject) => {
    let seen = "";
    server.stdout.on("data", (chunk) => {
      seen += chunk;
      const found = seen.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (found) resolve(found[1]);
    });
    server.on("exit", (status) => reject(new Error(`the server exited (${status}) before listening`)));
  });
});

after(() => server.kill());

/** Runs the CLI; resolves with its exit status and output. `onErr` sees
 * its standard error as it comes. */
function runCli(args, onErr) {
  const child = spawn(cli, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WORMHOLE_SYNC_RENDEZVOUS: url } });
  let out = "";
  let err = "";
  child.stdout.on("data", (c) => (out += c));
  child.stderr.on("data", (c) => {
    err += c;
    if (onErr) onErr(err);
  });
  return new Promise((resolve) => child.on("exit", (status) => resolve({ status, out, err })));
}

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
  const received = runCli(["receive", "--appid", APP, await i.getCode(), "from the cli"]);
  assert.equal(text(await i.getData()), "from the cli");
  const { status, out } = await received;
  assert.equal(status, 0);
  assert.match(out, /from javascript/);

  let showCode;
  const shown = new Promise((resolve) => (showCode = resolve));
  const sent = runCli(["send", "--appid", APP, "from the cli"], (err) => {
    const found = err.match(/Invitation code: (\S+)/);
    if (found) showCode(found[1]);
  });
  const r = new Receiver(APP, await shown, "from javascript", { rendezvous: url });
  assert.equal(text(await r.getData()), "from the cli");
  const done = await sent;
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
