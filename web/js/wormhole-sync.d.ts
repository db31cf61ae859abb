// Types of wormhole-sync.js: the wormhole-sync core in WebAssembly, driven by fetch and setTimeout.

/** Loads the WebAssembly module, once: its URL, bytes or compiled module
 * (default: wormhole_sync_web_bg.wasm beside the script). */
export function load(source?: string | URL | Request | BufferSource | WebAssembly.Module): Promise<unknown>;

export interface Options {
  /** The rendezvous server's base URL, e.g. "https://rendezvous.example". */
  rendezvous?: string;
  /** Sorted [when, interval] pairs of seconds from the first start. */
  schedule?: Array<[number, number]>;
  /** The hard timeout in seconds, counted from the first start. */
  timeout?: number;
}

export type Data = string | Uint8Array | ArrayBuffer;

declare class Side {
  /** The 32-byte verifier, once the keys are agreed. */
  getVerifier(): Promise<Uint8Array>;
  /** The peer's data, once the exchange completed and its channel is closed. */
  getData(): Promise<Uint8Array>;
  /** The whole state as printable JSON bytes. It contains secrets. From then
   * on, cancel() and close() leave the channel open for the saved state. */
  serialize(): Uint8Array;
  /** Stops the exchange: waiters reject with CancelledError; the channel is
   * closed unless the state was serialized. */
  cancel(): void;
  /** Stops the exchange; resolves once its channel is closed (or, after
   * serialize(), once this object stopped). */
  close(): Promise<void>;
}

export class Initiator extends Side {
  constructor(appid: string, data: Data, options?: Options & { codeWords?: number });
  /** The invitation code, once the server allocated a channel. */
  getCode(): Promise<string>;
  static fromSerialized(saved: Data): Initiator;
}

export class Receiver extends Side {
  constructor(appid: string, code: string, data: Data, options?: Options);
  static fromSerialized(saved: Data): Receiver;
}

/** The 256 words a code's word at `position` (0 for the first) is one of. */
export function wordList(position: number): string[];

export class WormholeSyncError extends Error {
  /** The rendezvous server's error code, where it refused. */
  serverCode?: string;
}
export class WrongCodeError extends WormholeSyncError {}
export class ExchangeTimeoutError extends WormholeSyncError {}
export class CrowdedError extends WormholeSyncError {}
export class UnknownChannelError extends WormholeSyncError {}
export class ChannelGoneError extends WormholeSyncError {}
export class PeerClosedError extends WormholeSyncError {}
export class ServerUnreachableError extends WormholeSyncError {}
export class ServerRefusedError extends WormholeSyncError {}
export class ServerBusyError extends ServerRefusedError {}
export class BadStateError extends WormholeSyncError {}
export class BadCodeError extends WormholeSyncError {}
export class CancelledError extends WormholeSyncError {}
export class UsageError extends WormholeSyncError {}
export class ProtocolError extends WormholeSyncError {}

/** The most data one side can send, in bytes. */
export const MAX_DATA_BYTES: number;

/** A QR code of `text` (a link, say) as an SVG document's text. */
export function qrCodeSvg(text: string): string;
