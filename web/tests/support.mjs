// What the browser package's tests share: the paths of what is tested, a
// rendezvous server of the project's on 127.0.0.1, and the CLI.
//
// WORMHOLE_SYNC_WEB_PKG (default web/pkg), WORMHOLE_SYNC_SERVER and
// WORMHOLE_SYNC (default target/debug's) name what is tested.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const pkg = process.env.WORMHOLE_SYNC_WEB_PKG || path.join(root, "web", "pkg");
export const cli = process.env.WORMHOLE_SYNC || path.join(root, "target", "debug", "wormhole-sync");
// The server binary, else the CLI's `serve` (the same server).
const serverBinary = process.env.WORMHOLE_SYNC_SERVER || path.join(root, "target", "debug", "wormhole-sync-server");
const serverCommand = existsSync(serverBinary) ? [serverBinary] : [cli, "serve"];

/** Starts a server in memory on an OS-chosen port; resolves with it and its URL. */
export async function startServer() {
  const server = spawn(
    serverCommand[0],
    [...serverCommand.slice(1), "--listen", "127.0.0.1:0", "--memory", "--rate-limit-exempt-loopback", "--max-channels-per-address", "0"],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, NO_COLOR: "1" } },
  );
  const url = await new Promise((resolve, reject) => {
    let seen = "";
    server.stdout.on("data", (chunk) => {
      seen += chunk;
      const found = seen.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (found) resolve(found[1]);
    });
    server.on("exit", (status) => reject(new Error(`the server exited (${status}) before listening`)));
  });
  // Keep draining its log, so that it never blocks writing.
  server.stdout.resume();
  return { server, url };
}

/** Runs the CLI against `url`: `exit` resolves with its status and output;
 * `code` with the invitation code it shows, if it shows one. */
export function runCli(url, args) {
  return runProgram(cli, args, url);
}

/** Runs `program` as `runCli` runs the CLI. */
export function runProgram(program, args, url) {
  const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, WORMHOLE_SYNC_RENDEZVOUS: url } });
  let out = "";
  let err = "";
  let showCode;
  const code = new Promise((resolve) => (showCode = resolve));
  child.stdout.on("data", (c) => (out += c));
  child.stderr.on("data", (c) => {
    err += c;
    const found = err.match(/Invitation code: (\S+)/);
    if (found) showCode(found[1]);
  });
  const exit = new Promise((resolve) => child.on("exit", (status) => resolve({ status, out, err })));
  return { child, code, exit };
}
