// The rendezvous server's page: send text or a small file and show a code
// (and a QR code of a link that opens this page with the code filled in), or
// type a code, with word completion, and receive. It uses this server's HTTP
// API on its own origin; the code and the data stay in the browser.
//
// A reload mid-way resumes: the exchange's state (with its secrets) is kept
// in this tab's sessionStorage while the page is away and removed when the
// exchange ends. The receive link carries the code in the URL's fragment,
// which browsers never send to a server; the page removes it from the
// address bar at once.

import { Initiator, MAX_DATA_BYTES, Receiver, load, qrCodeSvg, wordList } from "./wormhole-sync.js";

/** The CLI's application id, so `wormhole-sync send` and `receive` meet this page. */
const APPID = "wormhole-sync/cli";
/** How long a code waits for its receiver. */
const TIMEOUT_SECONDS = 3600;
/** Where a reload finds the exchange it interrupted. */
const SAVED = "wormhole-sync-exchange";

const $ = (id) => document.getElementById(id);

/** Every way an exchange can end badly, in plain words. */
const EXPLANATIONS = {
  WrongCodeError:
    "The codes did not match: the code typed on the receiving side is not the one the sender shows. Nothing was " +
    "revealed, and this code cannot be used again: the sender must get a new code.",
  ExchangeTimeoutError: "Nobody came in time, so the exchange gave up. Start again for a new code.",
  CrowdedError: "Two other people are already using this code. Ask the sender for a new one.",
  UnknownChannelError:
    "No exchange has this code's number: it may be mistyped, or it expired, or it was used. Check it, or ask the " +
    "sender for a new code.",
  ChannelGoneError: "This code has expired or was already used. Ask the sender for a new one.",
  PeerClosedError: "The other side stopped before the exchange was complete.",
  ServerUnreachableError: "This page could not reach its server. Check the network connection and start again.",
  ServerBusyError: "The server is busy right now. Wait a minute and start again.",
  ServerRefusedError: "The server refused the exchange.",
  BadCodeError: "That is not a code this page can use.",
  BadStateError: "The exchange this tab was in could not be resumed. Start again.",
  CancelledError: "Cancelled.",
  ProtocolError: "The other side or the server broke the protocol, so nothing was accepted.",
  UsageError: "This page cannot do that.",
};

/** Where the error's own message says more than the plain words (which server, why). */
const WITH_DETAILS = new Set(["ServerUnreachableError", "ServerRefusedError", "ServerBusyError", "ProtocolError", "BadStateError"]);

function explain(error) {
  const plain = EXPLANATIONS[error && error.name];
  if (!plain) return `Something went wrong: ${error}`;
  return WITH_DETAILS.has(error.name) ? `${plain} (${error.message})` : plain;
}

/** The server's address: where this page came from, without the fragment. */
function rendezvous() {
  return new URL(".", location.href).href.replace(/\/$/, "");
}

/** The verifier as the CLI shows it: its first 16 bytes in hex, in groups of four. */
function verifierText(bytes) {
  const hex = Array.from(bytes.slice(0, 16), (b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{8}/g).join(" ");
}

function show(id, visible = true) {
  $(id).hidden = !visible;
}

function status(text) {
  $("status").textContent = text;
}

// ---- Tabs ------------------------------------------------------------------

function selectTab(name) {
  for (const tab of ["send", "receive"]) {
    show(tab, tab === name);
    $(`tab-${tab}`).setAttribute("aria-pressed", String(tab === name));
  }
}

// ---- Sending ---------------------------------------------------------------

async function dataToSend() {
  const file = $("send-file").files[0];
  if (file) {
    if (file.size > MAX_DATA_BYTES) {
      throw new Error(`This file has ${file.size} bytes; an exchange carries at most ${MAX_DATA_BYTES}.`);
    }
    return new Uint8Array(await file.arrayBuffer());
  }
  const text = new TextEncoder().encode($("send-text").value);
  if (text.length === 0) throw new Error("Type a text or choose a file first.");
  if (text.length > MAX_DATA_BYTES) {
    throw new Error(`This text has ${text.length} bytes; an exchange carries at most ${MAX_DATA_BYTES}.`);
  }
  return text;
}

async function startSending(event) {
  event.preventDefault();
  let data;
  try {
    data = await dataToSend();
  } catch (error) {
    $("send-problem").textContent = error.message;
    return;
  }
  $("send-problem").textContent = "";
  run(new Initiator(APPID, data, { rendezvous: rendezvous(), timeout: TIMEOUT_SECONDS }), "initiator");
}

function showCode(code) {
  const link = `${rendezvous()}/#receive/${code}`;
  $("send-code").textContent = code;
  $("send-link").href = link;
  $("send-link").textContent = link;
  const svg = new DOMParser().parseFromString(qrCodeSvg(link), "image/svg+xml").documentElement;
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "QR code of the receive link");
  $("send-qr").replaceChildren(document.importNode(svg, true));
  show("send-code-box");
  status("Waiting for the receiver to type the code…");
}

// ---- Receiving -------------------------------------------------------------

/** The code's parts: its number, its whole words, and the word being typed. */
function codeParts(value) {
  const parts = value.trim().toLowerCase().split("-");
  return { number: parts[0], words: parts.slice(1, -1), typing: parts.length > 1 ? parts[parts.length - 1] : null };
}

/** The list words closest to `word`, for "did you mean". */
function closest(word, position) {
  const distance = (a, b) => {
    let row = Array.from({ length: b.length + 1 }, (_, i) => i);
    for (let i = 1; i <= a.length; i++) {
      const next = [i];
      for (let j = 1; j <= b.length; j++) {
        next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
      row = next;
    }
    return row[b.length];
  };
  return wordList(position)
    .map((candidate) => [distance(word, candidate), candidate])
    .sort((x, y) => x[0] - y[0])
    .slice(0, 3)
    .map(([, candidate]) => candidate);
}

/** Completes the word being typed, names a word that is not in the list. */
function suggestWords() {
  const { number, words, typing } = codeParts($("receive-code").value);
  const hint = $("receive-hint");
  hint.textContent = "";
  $("receive-words").replaceChildren();
  if (number && !/^\d+$/.test(number)) {
    hint.textContent = "A code starts with a number, like 7-guitarist-revenge.";
    return;
  }
  for (const [index, word] of words.entries()) {
    if (!wordList(index).includes(word)) {
      hint.textContent = `Word ${index + 1}, “${word}”, is not a code word. Did you mean ${closest(word, index).join(", ")}?`;
      return;
    }
  }
  if (typing === null) return;
  const prefix = [number, ...words].join("-");
  for (const word of candidates(words.length, typing).slice(0, 12)) {
    const option = document.createElement("option");
    option.value = `${prefix}-${word}`;
    $("receive-words").append(option);
  }
}

function candidates(position, typing) {
  return wordList(position).filter((word) => word.startsWith(typing));
}

/** Tab completes the word being typed as far as it is unambiguous. */
function completeOnTab(event) {
  if (event.key !== "Tab" || event.shiftKey) return;
  const input = $("receive-code");
  const { number, words, typing } = codeParts(input.value);
  if (!typing) return;
  const found = candidates(words.length, typing);
  if (found.length === 0) return;
  let common = found[0];
  for (const word of found) while (!word.startsWith(common)) common = common.slice(0, -1);
  if (common.length <= typing.length && found.length > 1) return;
  // A whole word of the usual two-word code gets its dash, as the CLI does.
  const dash = found.length === 1 && words.length === 0 ? "-" : "";
  const completed = `${[number, ...words, common].join("-")}${dash}`;
  if (completed === input.value) return; // nothing to complete: Tab moves on
  event.preventDefault();
  input.value = completed;
  suggestWords();
}

function startReceiving(event) {
  event.preventDefault();
  const code = $("receive-code").value.trim().toLowerCase();
  const reply = new TextEncoder().encode($("receive-reply").value);
  if (reply.length > MAX_DATA_BYTES) {
    $("receive-hint").textContent = `The reply has ${reply.length} bytes; an exchange carries at most ${MAX_DATA_BYTES}.`;
    return;
  }
  let receiver;
  try {
    receiver = new Receiver(APPID, code, reply, { rendezvous: rendezvous(), timeout: TIMEOUT_SECONDS });
  } catch (error) {
    $("receive-hint").textContent = error.name === "BadCodeError" ? `${error.message}.` : explain(error);
    return;
  }
  run(receiver, "receiver");
}

// ---- One exchange, either side ----------------------------------------------

let current = null;

function saveForReload() {
  if (current) sessionStorage.setItem(SAVED, JSON.stringify({ role: current.role, state: toBase64(current.side.serialize()) }));
}

function toBase64(bytes) {
  return btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function showResult(data, role) {
  if (data.length === 0) return;
  let text = null;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    // Not text: offered as a file only.
  }
  $("result-title").textContent =
    role === "initiator" ? "They sent back:" : text === null ? `A file of ${data.length} bytes:` : "The data:";
  $("result-text").textContent = text === null ? "" : text;
  show("result-text", text !== null);
  show("copy-button", text !== null && Boolean(navigator.clipboard));
  const save = $("save-link");
  save.href = URL.createObjectURL(new Blob([data], { type: "application/octet-stream" }));
  save.download = text === null ? "received.bin" : "received.txt";
  show("result");
}

async function run(side, role, resumed = false) {
  // Marks for the DevTools timeline and web/bench/page.mjs: when the exchange started, showed a code, ended.
  performance.mark("wormhole-sync:start");
  current = { side, role };
  for (const id of ["tabs", "send-form", "receive-form"]) show(id, false);
  show("send", role === "initiator");
  show("receive", false);
  show("progress");
  show("cancel-button");
  status(resumed ? "Resuming the exchange…" : role === "initiator" ? "Getting a code…" : "Joining the exchange…");
  try {
    if (role === "initiator") {
      showCode(await side.getCode());
      performance.mark("wormhole-sync:code");
    }
    const verifier = await side.getVerifier();
    $("verifier").textContent = verifierText(verifier);
    show("verifier-box");
    status(role === "initiator" ? "The receiver is here; sending…" : "Receiving…");
    const data = await side.getData();
    status(role === "initiator" ? "Delivered: the receiver has the data." : "Received.");
    showResult(data, role);
  } catch (error) {
    status("");
    // A verifier of a failed exchange means nothing (after a wrong code, the two differ).
    show("verifier-box", false);
    $("failure").textContent = explain(error);
    show("failure");
  } finally {
    current = null;
    sessionStorage.removeItem(SAVED);
    show("cancel-button", false);
    show("again-button");
    performance.mark("wormhole-sync:end");
  }
}

function resumeAfterReload() {
  const saved = sessionStorage.getItem(SAVED);
  if (!saved) return false;
  sessionStorage.removeItem(SAVED);
  try {
    const { role, state } = JSON.parse(saved);
    const Class = role === "initiator" ? Initiator : Receiver;
    run(Class.fromSerialized(fromBase64(state)), role, true);
  } catch (error) {
    show("progress");
    $("failure").textContent = explain(error);
    show("failure");
    show("again-button");
  }
  return true;
}

async function main() {
  await load();
  $("tab-send").addEventListener("click", () => selectTab("send"));
  $("tab-receive").addEventListener("click", () => selectTab("receive"));
  $("send-form").addEventListener("submit", startSending);
  $("receive-form").addEventListener("submit", startReceiving);
  $("receive-code").addEventListener("input", suggestWords);
  $("receive-code").addEventListener("keydown", completeOnTab);
  $("cancel-button").addEventListener("click", () => current && current.side.cancel());
  $("again-button").addEventListener("click", () => location.assign(new URL(".", location.href).href));
  $("copy-button").addEventListener("click", () => navigator.clipboard.writeText($("result-text").textContent));
  // Leaving mid-way (a reload, say) keeps the state for the next load of this tab.
  addEventListener("pagehide", saveForReload);
  show("loading", false);
  performance.mark("wormhole-sync:ready");

  if (resumeAfterReload()) return;
  // #receive/CODE: the sender's link. The code leaves the address bar (and history) at once.
  const [view, code] = location.hash.slice(1).split("/");
  if (code) history.replaceState(null, "", `${location.pathname}${location.search}#receive`);
  if (view === "receive") {
    selectTab("receive");
    if (code) {
      $("receive-code").value = decodeURIComponent(code);
      suggestWords();
      $("receive-button").focus();
    } else {
      $("receive-code").focus();
    }
  } else {
    selectTab("send");
  }
}

main().catch((error) => {
  $("loading").textContent = `This page could not start: ${error}`;
  $("loading").className = "failed";
});
