// Times the server's page in headless Chromium on loopback (BENCHMARKS.md,
// "In the browser"). The page marks its own moments (performance.mark:
// wormhole-sync:ready, :start, :code, :end), so Playwright's own round trips
// are not counted:
// - load → ready: navigation start to the module compiled and the page usable,
//   in a fresh browser context each time (nothing cached);
// - submit → code: the send form submitted to the code shown;
// - an exchange's latency page → CLI, CLI → page and CLI → CLI: from the
//   receiving side's start (code in hand) until both sides are done.
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

/** Milliseconds since the epoch, as precise as performance.now(). */
const now = () => performance.timeOrigin + performance.now();

async function freshPage(fragment = "") {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${url}/${fragment}`);
  await page.waitForSelector("#loading", { state: "hidden" });
  return { page, context };
}

/** The page's mark `name`, in epoch milliseconds (and since navigation start). */
async function mark(page, name) {
  await page.waitForFunction((n) => performance.getEntriesByName(n).length > 0, `wormhole-sync:${name}`);
  return page.evaluate((n) => {
    const at = performance.getEntriesByName(n)[0].startTime;
    return { epoch: performance.timeOrigin + at, sinceLoad: at };
  }, `wormhole-sync:${name}`);
}

async function loadToReady() {
  const { page, context } = await freshPage();
  const { sinceLoad } = await mark(page, "ready");
  await context.close();
  return sinceLoad;
}

async function submitToCode() {
  const { page, context } = await freshPage();
  await page.fill("#send-text", "x");
  await page.click("#send-button");
  const took = (await mark(page, "code")).epoch - (await mark(page, "start")).epoch;
  await context.close();
  return took;
}

async function pageToCli() {
  const { page, context } = await freshPage();
  await page.fill("#send-text", "from the page");
  await page.click("#send-button");
  await page.waitForSelector("#send-code:not(:empty)");
  const code = await page.textContent("#send-code");
  const started = now();
  const receiver = runCli(url, ["receive", "-q", code]).exit.then(now);
  const [cliDone, pageDone] = await Promise.all([receiver, mark(page, "end")]);
  await context.close();
  return Math.max(cliDone, pageDone.epoch) - started;
}

async function cliToPage() {
  const sender = runCli(url, ["send", "-q", "from the CLI"]);
  const sent = sender.exit.then(now);
  const code = await sender.code;
  const { page, context } = await freshPage("#receive");
  await page.fill("#receive-code", code);
  await page.click("#receive-button");
  const [started, pageDone, cliDone] = await Promise.all([mark(page, "start"), mark(page, "end"), sent]);
  await context.close();
  return Math.max(cliDone, pageDone.epoch) - started.epoch;
}

async function cliToCli() {
  const sender = runCli(url, ["send", "-q", "from the CLI"]);
  const code = await sender.code;
  const started = now();
  await Promise.all([runCli(url, ["receive", "-q", code]).exit, sender.exit]);
  return now() - started;
}

/** Two sides in one page that already ran an exchange (the module's code compiled and warm). */
async function warmInPage() {
  const { page, context } = await freshPage();
  const times = await page.evaluate(async (count) => {
    const { Initiator, Receiver } = await import("./page/wormhole-sync.js");
    const rendezvous = location.origin;
    const took = [];
    for (let n = 0; n < count; n++) {
      const initiator = new Initiator("bench", "x", { rendezvous });
      const code = await initiator.getCode();
      const started = performance.now();
      const receiver = new Receiver("bench", code, "y", { rendezvous });
      await Promise.all([initiator.getData(), receiver.getData()]);
      took.push(performance.now() - started);
    }
    return took;
  }, 5);
  await context.close();
  return times[times.length - 1];
}

function summary(name, times) {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
  console.log(`${name.padEnd(20)} min ${at(0)} ms  median ${at(0.5)} ms  max ${at(1)} ms  (${runs} runs)`);
}

for (const [name, measure] of [
  ["load → ready", loadToReady],
  ["submit → code", submitToCode],
  ["page → CLI", pageToCli],
  ["CLI → page", cliToPage],
  ["CLI → CLI", cliToCli],
  ["page ↔ page, warm", warmInPage],
]) {
  await measure(); // warm-up
  const times = [];
  for (let i = 0; i < runs; i++) times.push(await measure());
  summary(name, times);
}

await browser.close();
server.kill();
