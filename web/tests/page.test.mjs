// The server's page in a real browser (headless Chromium driven by
// playwright-core), as a person uses it: page → CLI, CLI → page through the
// QR code's link, page → page in two browser contexts with word completion
// and a reply, a wrong code, a reload of the receive page mid-way. Each page
// is photographed into target/screenshots/ (WORMHOLE_SYNC_SCREENSHOTS).
//
// Needs playwright-core (resolved from WORMHOLE_SYNC_NODE_MODULES, else from
// here) and Chromium (WORMHOLE_SYNC_CHROMIUM, default /usr/bin/chromium);
// cli/tests/web_package.rs installs the one and checks for the other.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { root, runCli, runProgram, startServer } from "./support.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(process.env.WORMHOLE_SYNC_NODE_MODULES || here, "resolve-from-here.js"));
const { chromium } = require("playwright-core");
// A python with the package installed, for the tests with a Python side.
const python = process.env.WORMHOLE_SYNC_PYTHON;
const noPython = !python && "SKIPPED: no WORMHOLE_SYNC_PYTHON (a python with the wormhole_sync package)";
const pythonPeer = (args) => runProgram(python, [path.join(here, "python_peer.py"), url, ...args], url);
const screenshots = process.env.WORMHOLE_SYNC_SCREENSHOTS || path.join(root, "target", "screenshots");
mkdirSync(screenshots, { recursive: true });

let server;
let url;
let browser;

before(async () => {
  ({ server, url } = await startServer());
  browser = await chromium.launch({
    executablePath: process.env.WORMHOLE_SYNC_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

/** A page in a fresh browser context (its own storage), failing the test on
 * any script error or Content-Security-Policy violation. */
async function openPage(fragment = "") {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(String(error)));
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.problems = problems;
  await page.goto(`${url}/${fragment}`);
  await page.waitForSelector("#loading", { state: "hidden" });
  return page;
}

function noProblems(page) {
  assert.deepEqual(page.problems, [], "the page reported errors");
}

async function sendFromPage(page, text) {
  await page.fill("#send-text", text);
  await page.click("#send-button");
  await page.waitForSelector("#send-code:not(:empty)");
  return page.textContent("#send-code");
}

async function finished(page) {
  await page.waitForSelector("#again-button:not([hidden])", { timeout: 20000 });
}

test("page → CLI: the page shows a code, a QR code and a link; the CLI receives", async () => {
  const page = await openPage();
  const code = await sendFromPage(page, "a Wi-Fi password from the page");
  assert.match(code, /^\d+-[a-z]+-[a-z]+$/);
  assert.equal(await page.getAttribute("#send-link", "href"), `${url}/#receive/${code}`);
  assert.equal(await page.locator("#send-qr svg").count(), 1);
  await page.screenshot({ path: path.join(screenshots, "send-code.png"), fullPage: true });

  const cli = await runCli(url, ["receive", code, "thanks from the CLI"]).exit;
  assert.equal(cli.status, 0, cli.err);
  assert.equal(cli.out.trim(), "a Wi-Fi password from the page");
  await finished(page);
  assert.match(await page.textContent("#status"), /Delivered/);
  assert.equal(await page.textContent("#result-text"), "thanks from the CLI");
  assert.match(await page.textContent("#verifier"), /^[0-9a-f]{8}( [0-9a-f]{8}){3}$/);
  await page.screenshot({ path: path.join(screenshots, "send-delivered.png"), fullPage: true });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  noProblems(page);
});

test("CLI → page: the link fills in the code, which leaves the address bar", async () => {
  const sender = runCli(url, ["send", "an API key from the CLI"]);
  const code = await sender.code;
  const page = await openPage(`#receive/${code}`);
  assert.equal(await page.evaluate(() => location.hash), "#receive");
  assert.equal(await page.inputValue("#receive-code"), code);
  await page.screenshot({ path: path.join(screenshots, "receive-code.png"), fullPage: true });
  await page.click("#receive-button");
  await finished(page);
  assert.equal(await page.textContent("#result-text"), "an API key from the CLI");
  const done = await sender.exit;
  assert.equal(done.status, 0, done.err);
  assert.ok(done.err.includes(await page.textContent("#verifier")) || !done.err.includes("Verifier"), done.err);
  await page.screenshot({ path: path.join(screenshots, "receive-done.png"), fullPage: true });
  noProblems(page);
});

test("page ↔ the Python package, both ways", { skip: noPython }, async () => {
  const page = await openPage();
  const code = await sendFromPage(page, "from the page to Python");
  const received = await pythonPeer(["receive", code, "from Python to the page"]).exit;
  assert.equal(received.status, 0, received.err);
  assert.equal(received.out, "from the page to Python");
  await finished(page);
  assert.equal(await page.textContent("#result-text"), "from Python to the page");

  const sender = pythonPeer(["send", "from Python"]);
  const receiving = await openPage(`#receive/${await sender.code}`);
  await receiving.click("summary");
  await receiving.fill("#receive-reply", "back to Python");
  await receiving.click("#receive-button");
  await finished(receiving);
  assert.equal(await receiving.textContent("#result-text"), "from Python");
  const sent = await sender.exit;
  assert.equal(sent.status, 0, sent.err);
  assert.equal(sent.out, "back to Python");
  noProblems(page);
  noProblems(receiving);
});

test("a file within the limit is sent; a larger one is refused, with its size", async () => {
  const page = await openPage();
  const bytes = Buffer.from([0, 1, 2, 255, 254, 0x80, 10, 13]);
  await page.setInputFiles("#send-file", { name: "key.bin", mimeType: "application/octet-stream", buffer: Buffer.alloc(40000) });
  await page.click("#send-button");
  assert.match(await page.textContent("#send-problem"), /40000 bytes; an exchange carries at most 32768/);
  await page.setInputFiles("#send-file", { name: "key.bin", mimeType: "application/octet-stream", buffer: bytes });
  await page.click("#send-button");
  await page.waitForSelector("#send-code:not(:empty)");
  const code = await page.textContent("#send-code");

  const receiver = await openPage(`#receive/${code}`);
  await receiver.click("#receive-button");
  await finished(receiver);
  assert.match(await receiver.textContent("#result-title"), /A file of 8 bytes/);
  const download = receiver.waitForEvent("download");
  await receiver.click("#save-link");
  const saved = await (await download).createReadStream();
  const chunks = [];
  for await (const chunk of saved) chunks.push(chunk);
  assert.deepEqual(Buffer.concat(chunks), bytes);
  await finished(page);
  noProblems(page);
  noProblems(receiver);
});

test("Cancel stops the exchange and closes its channel: a late receiver is told", async () => {
  const page = await openPage();
  const code = await sendFromPage(page, "never delivered");
  await page.click("#cancel-button");
  await finished(page);
  assert.equal(await page.textContent("#failure"), "Cancelled.");
  // The CLI that comes late learns that the sender stopped (exit 9), rather than waiting.
  const late = await runCli(url, ["receive", code]).exit;
  assert.equal(late.status, 9, late.err);
  assert.match(late.err, /the other side gave up waiting \(lonely\) or was stopped/);
  noProblems(page);
});

test("a code whose number has no exchange is said so", async () => {
  const page = await openPage("#receive/987654-guitarist-revenge");
  await page.click("#receive-button");
  await finished(page);
  assert.match(await page.textContent("#failure"), /No exchange has this code's number/);
});

test("page → page in two browser contexts, typed with word completion, with a reply", async () => {
  const sender = await openPage();
  const code = await sendFromPage(sender, "an invitation, page to page");
  const [number, first, second] = code.split("-");

  const receiver = await openPage();
  await receiver.click("#tab-receive");
  // The first word's first letters and Tab: completed as far as it is unambiguous.
  await receiver.locator("#receive-code").pressSequentially(`${number}-${first.slice(0, 2)}`);
  const suggested = await receiver.$$eval("#receive-words option", (options) => options.map((o) => o.value));
  assert.ok(suggested.includes(`${number}-${first}`), suggested.join());
  await receiver.locator("#receive-code").fill(`${number}-${first}-`);
  await receiver.locator("#receive-code").pressSequentially(second);
  assert.equal(await receiver.inputValue("#receive-code"), code);
  await receiver.click("summary");
  await receiver.fill("#receive-reply", "a reply from the receiving page");
  await receiver.click("#receive-button");
  await Promise.all([finished(sender), finished(receiver)]);
  assert.equal(await receiver.textContent("#result-text"), "an invitation, page to page");
  assert.equal(await sender.textContent("#result-text"), "a reply from the receiving page");
  assert.equal(await sender.textContent("#verifier"), await receiver.textContent("#verifier"));
  noProblems(sender);
  noProblems(receiver);
});

test("a mistyped word is named with suggestions; Tab completes", async () => {
  const page = await openPage("#receive");
  await page.locator("#receive-code").pressSequentially("7-guitarst-");
  assert.match(await page.textContent("#receive-hint"), /Word 1, “guitarst”, is not a code word\. Did you mean guitarist/);
  await page.fill("#receive-code", "7-guitari");
  await page.locator("#receive-code").press("Tab");
  assert.equal(await page.inputValue("#receive-code"), "7-guitarist-");
  await page.screenshot({ path: path.join(screenshots, "receive-typing.png"), fullPage: true });
  noProblems(page);
});

test("a wrong code fails on both pages, in plain words", async () => {
  const sender = await openPage();
  const code = await sendFromPage(sender, "not for a guesser");
  const [number, first] = code.split("-");
  const wrong = first === "adroitness" ? "adviser" : "adroitness";
  const guesser = await openPage(`#receive/${number}-${wrong}-${code.split("-")[2]}`);
  await guesser.click("#receive-button");
  await Promise.all([finished(sender), finished(guesser)]);
  for (const page of [sender, guesser]) {
    assert.match(await page.textContent("#failure"), /The codes did not match/);
    assert.equal(await page.isVisible("#result"), false);
  }
  await guesser.screenshot({ path: path.join(screenshots, "wrong-code.png"), fullPage: true });
});

test("a reload of the receive page mid-way resumes the exchange", async () => {
  const sender = runCli(url, ["send", "survives a reload"]);
  const code = await sender.code;
  // The sender stops: the receive page joins the channel and waits for the sender mid-way.
  sender.child.kill("SIGSTOP");
  try {
    const page = await openPage(`#receive/${code}`);
    // Mid-way: joined and posting its first message (whether the server answers at once or holds
    // the request until the sender's next message depends on how far the sender got).
    const posting = page.waitForRequest((r) => r.url().endsWith("/v1/post"));
    await page.click("#receive-button");
    await posting;
    await new Promise((resolve) => setTimeout(resolve, 300));
    await page.reload();
    await page.waitForSelector("#loading", { state: "hidden" });
    // Resumed from the saved state: no code to type again.
    assert.equal(await page.isVisible("#receive-form"), false);
    assert.match(await page.textContent("#status"), /Resuming|Receiving/);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "taken out of storage while it runs");
    sender.child.kill("SIGCONT");
    await finished(page);
    assert.equal(await page.textContent("#result-text"), "survives a reload");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    noProblems(page);
  } finally {
    sender.child.kill("SIGCONT");
  }
  const done = await sender.exit;
  assert.equal(done.status, 0, done.err);
});
