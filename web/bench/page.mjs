// Times the server's page in headless Chromium on loopback (BENCHMARKS.md,
// "In the browser"): page load to a code shown (a fresh browser context each
// time: nothing cached), and an exchange's latency page → CLI, CLI → page
// and CLI → CLI, each from the moment the receiving side starts (code in
// hand) until both sides are done.
//
//   cargo build --release && npm install --prefix /tmp/pw playwright-core@1.65.2
//   WORMHOLE_SYNC=target/release/wormhole-sync WORMHOLE_SYNC_SERVER=target/release/wormhole-sync-server \
//     WORMHOLE_SYNC_NODE_MODULES=/tmp/pw node web/bench/page.mjs [runs]

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { runCli, startServer } from "../tests/support.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(process.env.WORMHOLE_SYNC_NODE_MODULES || here, "resolve-from-here.js"));
const { chromium } = require("playwright-core");
const runs = Number(process.argv[2] || 20);

const { server, url } = await startServer();
const browser = await chromium.launch({
  executablePath: process.env.WORMHOLE_SYNC_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-background-networking"],
});

async function freshPage(fragment = "") {
  const context = await browser.newContext();
  const page = await context.newPage();
  const started = performance.now();
  await page.goto(`${url}/${fragment}`);
  await page.waitForSelector("#loading", { state: "hidden" });
  return { page, context, started };
}

const done = (page) => page.waitForSelector("#again-button:not([hidden])");

async function loadToCode() {
  const { page, context, started } = await freshPage();
  await page.fill("#send-text", "x");
  await page.click("#send-button");
  await page.waitForSelector("#send-code:not(:empty)");
  const took = performance.now() - started;
  await context.close();
  return took;
}

async function pageToCli() {
  const { page, context } = await freshPage();
  await page.fill("#send-text", "from the page");
  await page.click("#send-button");
  await page.waitForSelector("#send-code:not(:empty)");
  const code = await page.textContent("#send-code");
  const started = performance.now();
  await Promise.all([runCli(url, ["receive", "-q", code]).exit, done(page)]);
  const took = performance.now() - started;
  await context.close();
  return took;
}

async function cliToPage() {
  const sender = runCli(url, ["send", "-q", "from the CLI"]);
  const code = await sender.code;
  const { page, context } = await freshPage("#receive");
  await page.fill("#receive-code", code);
  const started = performance.now();
  await page.click("#receive-button");
  await Promise.all([sender.exit, done(page)]);
  const took = performance.now() - started;
  await context.close();
  return took;
}

async function cliToCli() {
  const sender = runCli(url, ["send", "-q", "from the CLI"]);
  const code = await sender.code;
  const started = performance.now();
  await Promise.all([runCli(url, ["receive", "-q", code]).exit, sender.exit]);
  return performance.now() - started;
}

function summary(name, times) {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
  console.log(`${name.padEnd(22)} min ${at(0)} ms  median ${at(0.5)} ms  max ${at(1)} ms  (${runs} runs)`);
}

for (const [name, measure] of [
  ["page load → code", loadToCode],
  ["page → CLI", pageToCli],
  ["CLI → page", cliToPage],
  ["CLI → CLI", cliToCli],
]) {
  await measure(); // warm-up
  const times = [];
  for (let i = 0; i < runs; i++) times.push(await measure());
  summary(name, times);
}

await browser.close();
server.kill();
