// wormhole-sync for browsers (and other JavaScript hosts with fetch and
// WebAssembly): the project's Rust core, compiled to WebAssembly, driven by
// fetch and setTimeout. Transcribe mode: the initiator gets a code from the
// rendezvous server; the receiver types it; each gets the other's data.
//
//   import { load, Initiator } from "./wormhole-sync.js";
//   await load();
//   const initiator = new Initiator("example.com/app", "initiator's data", { rendezvous: "https://rv.example" });
//   console.log("code:", await initiator.getCode());
//   console.log("their data:", new TextDecoder().decode(await initiator.getData()));
//
// Nothing here stores anything; serialize() hands the state (with its
// secrets: the code and the data) to the caller.

import init, { Exchange, qrCodeSvg as wasmQrCodeSvg, wordList as wasmWordList } from "./wormhole_sync_web.js";

/** The most data one side can send, in bytes. */
export const MAX_DATA_BYTES = 32 * 1024;

// An answer larger than this is not read (PROTOCOL.md 2.1).
const MAX_ANSWER_BYTES = 2 * 1024 * 1024;

let loaded = null;

/** Loads the WebAssembly module, once; `source` is its URL, bytes or a
 * compiled module (default: `wormhole_sync_web_bg.wasm` beside this file). */
export function load(source) {
  if (!loaded) {
    loaded = init(source === undefined ? undefined : { module_or_path: source });
  }
  return loaded;
}

/** The base class of every wormhole-sync error; `serverCode` is the
 * rendezvous server's error code where it refused. */
export class WormholeSyncError extends Error {
  constructor(message, serverCode) {
    super(message);
    this.name = new.target.name;
    this.serverCode = serverCode;
  }
}
/** The two sides used different codes; the channel is burned. */
export class WrongCodeError extends WormholeSyncError {}
/** The hard timeout passed before the exchange completed. */
export class ExchangeTimeoutError extends WormholeSyncError {}
/** Two other sides already used this code's channel. */
export class CrowdedError extends WormholeSyncError {}
/** No channel has the number at the start of the code. */
export class UnknownChannelError extends WormholeSyncError {}
/** The channel expired, was lost, or was burned by a failed attempt. */
export class ChannelGoneError extends WormholeSyncError {}
/** The other side closed, declined or vanished first. */
export class PeerClosedError extends WormholeSyncError {}
/** The rendezvous server could not be reached until the timeout. */
export class ServerUnreachableError extends WormholeSyncError {}
/** The rendezvous server refused (see `serverCode`). */
export class ServerRefusedError extends WormholeSyncError {}
/** The server kept refusing for now (rate limited, full): try later. */
export class ServerBusyError extends ServerRefusedError {}
/** A serialized state could not be restored. */
export class BadStateError extends WormholeSyncError {}
/** The invitation code is not well formed. */
export class BadCodeError extends WormholeSyncError {}
/** The exchange was stopped (`cancel()`, `close()`). */
export class CancelledError extends WormholeSyncError {}
/** An argument or a call the exchange does not allow. */
export class UsageError extends WormholeSyncError {}
/** The peer or the server broke the protocol. */
export class ProtocolError extends WormholeSyncError {}

const ERRORS = {
  WrongCodeError, ExchangeTimeoutError, CrowdedError, UnknownChannelError, ChannelGoneError, PeerClosedError,
  ServerUnreachableError, ServerRefusedError, ServerBusyError, BadStateError, BadCodeError, CancelledError,
  UsageError, ProtocolError,
};

/** The module's error as one of the classes above. */
function typed(error) {
  if (error instanceof WormholeSyncError) return error;
  const Class = ERRORS[error && error.name];
  return Class ? new Class(error.message, error.serverCode) : error;
}

function call(f) {
  try {
    return f();
  } catch (error) {
    throw typed(error);
  }
}

function bytes(data, what) {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new TypeError(`${what} must be a string, Uint8Array or ArrayBuffer`);
}

/** Reads at most MAX_ANSWER_BYTES of a response's body. */
async function readAnswer(response) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > MAX_ANSWER_BYTES) {
      reader.cancel();
      throw new Error("the answer is larger than a client reads");
    }
    chunks.push(value);
  }
  const body = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.length;
  }
  return body;
}

/** One side's driver: sends what the state machine asks for (a long-poll
 * and a control request may be in flight together), feeds back the answers,
 * wakes it at its deadlines and settles the waiters. */
class Side {
  constructor(exchange) {
    this.exchange = exchange;
    this.started = false;
    this.inFlight = new Map(); // request id -> AbortController
    this.timer = null;
    this.news = { code: undefined, verifier: undefined, data: undefined, error: undefined };
    this.finished = false;
    this.serialized = false;
    this.waiters = [];
  }

  start() {
    if (this.started) return;
    this.started = true;
    call(() => this.exchange.start(Date.now()));
    this.turn();
  }

  turn() {
    if (this.finished) return;
    const now = Date.now();
    const exchange = this.exchange;
    call(() => exchange.handleTimeout(now));
    for (let transmit; (transmit = call(() => exchange.pollTransmit(now))) !== undefined; ) this.send(transmit);
    for (let event; (event = exchange.pollEvent()) !== undefined; ) this.record(event);
    if (exchange.isFinished()) {
      this.halt();
    } else {
      const wake = exchange.pollTimeout();
      clearTimeout(this.timer);
      // setTimeout takes at most 2^31-1 ms (about 24 days); waking early only re-reads the deadline.
      if (wake !== undefined) this.timer = setTimeout(() => this.turn(), Math.min(Math.max(0, wake - Date.now()), 2 ** 31 - 1));
    }
    this.settle();
  }

  record(event) {
    if (event.type === "code") this.news.code = event.code;
    else if (event.type === "verifier") this.news.verifier = event.verifier;
    else if (event.type === "data") this.news.data = event.data;
    else if (event.type === "failed") this.news.error = typed(event.error);
  }

  send(transmit) {
    const controller = new AbortController();
    this.inFlight.set(transmit.id, controller);
    const timer = setTimeout(() => controller.abort(), transmit.timeoutMs);
    fetch(transmit.url, {
      method: transmit.method,
      headers: { "content-type": "application/json" },
      body: transmit.body,
      signal: controller.signal,
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    })
      .then(async (response) => {
        const body = await readAnswer(response);
        call(() => this.exchange.handleResponse(Date.now(), transmit.id, response.status, body));
      })
      .catch((error) => {
        if (this.finished) return;
        // fetch says "fetch failed" or the like; the cause (connection refused, ...) is in error.cause.
        const cause = error && error.cause && error.cause.message ? `: ${error.cause.message}` : "";
        const why = error && error.name === "AbortError" ? "no answer in time" : `${(error && error.message) || error}${cause}`;
        call(() => this.exchange.handleTransportError(Date.now(), transmit.id, why, false));
      })
      .finally(() => {
        clearTimeout(timer);
        this.inFlight.delete(transmit.id);
        this.turn();
      });
  }

  /** Resolves with `pick(news)` once it is known, or rejects with the
   * exchange's error. */
  wait(pick) {
    this.start();
    return new Promise((resolve, reject) => {
      this.waiters.push({ pick, resolve, reject });
      this.settle();
    });
  }

  settle() {
    this.waiters = this.waiters.filter(({ pick, resolve, reject }) => {
      const value = pick(this.news, this.finished);
      if (value !== undefined) {
        resolve(value);
        return false;
      }
      if (this.news.error) {
        reject(this.news.error);
        return false;
      }
      return true;
    });
  }

  /** Stops driving: no more requests, timers or answers. */
  halt() {
    this.finished = true;
    clearTimeout(this.timer);
    for (const controller of this.inFlight.values()) controller.abort();
    this.inFlight.clear();
  }

  cancel() {
    if (!this.started || this.finished || this.serialized) {
      // A serialized exchange is left as it is on the server: its saved state resumes it.
      if (this.started) this.halt();
      this.news.error = this.news.error || new CancelledError("the exchange was cancelled");
      this.settle();
      return;
    }
    call(() => this.exchange.cancel(Date.now()));
    this.turn();
  }
}

function options(given) {
  const o = given || {};
  const schedule = o.schedule === undefined ? undefined : Float64Array.from(o.schedule.flat());
  return [o.rendezvous, schedule, o.timeout, o.codeWords];
}

function seed() {
  return crypto.getRandomValues(new Uint8Array(32));
}

class Base {
  /** The 32-byte verifier, once the keys are agreed. */
  getVerifier() {
    return this.side.wait((news) => news.verifier);
  }

  /** The peer's data, once the exchange completed and its channel is closed. */
  getData() {
    return this.side.wait((news, finished) => (finished ? news.data : undefined));
  }

  /** The whole state as printable JSON bytes, at any point. It contains
   * secrets (the code and the data). From then on, `cancel()` and `close()`
   * stop this object but leave the channel open for the saved state. */
  serialize() {
    this.side.serialized = true;
    return this.side.exchange.serialize();
  }

  /** Stops the exchange: waiters reject with `CancelledError`; the channel
   * is closed (unless the state was serialized). */
  cancel() {
    this.side.cancel();
  }

  /** Stops the exchange; resolves once its channel is closed. */
  async close() {
    this.side.cancel();
    await this.side.wait((_, finished) => (finished ? true : undefined)).catch(() => undefined);
  }

  static restore(Class, role, saved) {
    const exchange = call(() => Exchange.fromSerialized(bytes(saved, "the saved state")));
    if (exchange.role !== role) {
      exchange.free();
      throw new BadStateError("this state belongs to the other side");
    }
    const side = Object.create(Class.prototype);
    side.side = new Side(exchange);
    return side;
  }
}

/** The side that goes first: it gets a channel and shows the code. Options:
 * `rendezvous` (the server's URL), `schedule` ([[when, interval], ...]
 * seconds from the first start), `timeout` (seconds), `codeWords`. */
export class Initiator extends Base {
  constructor(appid, data, opts) {
    super();
    const exchange = call(() => new Exchange("initiator", appid, bytes(data, "data"), seed(), undefined, ...options(opts)));
    this.side = new Side(exchange);
  }

  /** The invitation code, once the server allocated a channel. */
  getCode() {
    return this.side.wait((news) => news.code);
  }

  /** Restores an initiator from `serialize()`'s output. */
  static fromSerialized(saved) {
    return Base.restore(Initiator, "initiator", saved);
  }
}

/** The side that types the code. Options as for `Initiator`. */
export class Receiver extends Base {
  constructor(appid, code, data, opts) {
    super();
    if (typeof code !== "string") throw new TypeError("code must be a string like 7-guitarist-revenge");
    const { codeWords, ...rest } = opts || {};
    const exchange = call(() => new Exchange("receiver", appid, bytes(data, "data"), seed(), code, ...options(rest)));
    this.side = new Side(exchange);
  }

  /** Restores a receiver from `serialize()`'s output. */
  static fromSerialized(saved) {
    return Base.restore(Receiver, "receiver", saved);
  }
}

/** The 256 words a code's word at `position` (0 for the first) is one of. */
export function wordList(position) {
  return wasmWordList(position);
}

/** A QR code of `text` (a link, say) as an SVG document's text. */
export function qrCodeSvg(text) {
  return call(() => wasmQrCodeSvg(text));
}
