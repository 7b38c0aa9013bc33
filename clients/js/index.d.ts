// Types for @tolk/client — the tolk translation server client, protocol v1 (`/v1/stream`).

export declare const PROTOCOL_VERSION: 1;
/** Close code: frames could not be delivered; requests in flight fail with code 'undeliverable'. */
export declare const CLOSE_UNDELIVERABLE: 4001;
/** The frames that end a request. */
export declare const TERMINAL_TYPES: readonly ["complete", "error"];
/** Whether a frame ends its request: `complete`, or `error` without `about`. */
export declare function isTerminal(frame: { type: string; about?: string }): boolean;

/** Error codes the server sends, plus the client's own. */
export type ServerErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'unsupported_language'
  | 'too_large'
  | 'duplicate_id'
  | 'cancelled'
  | 'overloaded'
  | 'engine_error'
  | 'expired'
  | 'internal';

/** `connect_failed`: no connection could be opened; `connection_lost`: it dropped while the
 * request was in flight; `closed`: `client.close()` was called; `timeout`: `timeoutMs` ran out. */
export type ClientErrorCode = 'connect_failed' | 'connection_lost' | 'closed' | 'timeout';

export type ErrorCode = ServerErrorCode | ClientErrorCode | (string & {});

export interface ReadyFrame {
  type: 'ready';
  protocol: number;
  model: string;
  languages: string[];
  auth: boolean;
  [extra: string]: unknown;
}

export interface StartFrame {
  type: 'start';
  id: string;
  request_id: string;
  source: string;
  target: string;
  [extra: string]: unknown;
}

export interface TokenFrame {
  type: 'token';
  id: string;
  token: string;
  index: number;
  [extra: string]: unknown;
}

export interface SegmentFrame {
  type: 'segment';
  id: string;
  text: string;
  index: number;
  [extra: string]: unknown;
}

export interface CompleteFrame {
  type: 'complete';
  id: string;
  translation: string;
  source: string;
  target: string;
  tokens: number;
  first_token_ms: number | null;
  latency_ms: number;
  finish_reason: string;
  /** Live requests only. */
  live?: LiveStats;
  /** The quality mode that ran. */
  quality?: 'fast' | 'balanced' | 'quality';
  /** The name of the model that served the request. */
  model?: string;
  /** Set when the routed model failed before its first token and another one served. */
  fallback?: { from: string; reason: string };
  [extra: string]: unknown;
}

/** A live request's current translation: `stable + tentative`. */
export interface PartialFrame {
  type: 'partial';
  id: string;
  /** The number of the `update` it answers (1-based). */
  version: number;
  /** Never shrinks or changes unless `reset` is true. */
  stable: string;
  tentative: string;
  reset?: boolean;
  [extra: string]: unknown;
}

/** `complete.live` of a live request. */
export interface LiveStats {
  updates: number;
  partials: number;
  resets: number;
  normalized_erasure: number;
  laal: number;
  first_partial_ms: number | null;
  final_ms: number;
  engine_tokens?: number;
}

export interface ErrorFrame {
  type: 'error';
  id?: string;
  code: ServerErrorCode | (string & {});
  message: string;
  [extra: string]: unknown;
}

export interface PongFrame {
  type: 'pong';
}

export type ServerFrame =
  | ReadyFrame
  | StartFrame
  | TokenFrame
  | PartialFrame
  | SegmentFrame
  | CompleteFrame
  | ErrorFrame
  | PongFrame;

/** Any error the client reports. */
export declare class TolkError extends Error {
  constructor(code: ErrorCode, message: string, extra?: { id?: string; frame?: ServerFrame; cause?: unknown });
  readonly code: ErrorCode;
  /** The request id, when the error concerns one request. */
  readonly id: string | undefined;
  /** The server's error frame, when there was one. */
  readonly frame: ServerFrame | undefined;
}

/** No connection could be opened (`connect_failed`), or it dropped (`connection_lost`), or the
 * client was closed (`closed`). */
export declare class TolkConnectionError extends TolkError {}

/** A cancelled request: `name === 'AbortError'`, `code === 'cancelled'`. */
export declare class TolkAbortError extends TolkError {
  constructor(message?: string, extra?: { id?: string; frame?: ServerFrame; cause?: unknown });
  readonly name: 'AbortError';
}

/** True for the error a cancelled request throws. */
export declare function isAbortError(err: unknown): boolean;

/** `http(s)://host` or `ws(s)://host` (with or without `/v1/stream`) → the stream URL. */
export declare function streamUrl(url: string | URL): string;

export interface TranslateOptions {
  text: string;
  /** The target language code (one of `ready.languages`). */
  target?: string;
  /** The source language code; omitted or `'auto'`: detected by the server. */
  source?: string;
  /** The request id on this connection (default: generated). */
  id?: string;
  /** Stream token frames (default true for `translate`, false for `translateText`). */
  stream?: boolean;
  max_tokens?: number;
  /** Alias of `max_tokens`. */
  maxTokens?: number;
  /** `'html'`: translate the text of an HTML fragment, keep its markup byte for byte. */
  format?: 'text' | 'html';
  /** Surrounding text that helps the model (not translated). */
  context?: string;
  /**
   * The quality mode: `'fast'` (lowest latency), `'balanced'` (the server's default) or
   * `'quality'` (a better decoding, slower). `complete.quality` and `complete.model` say
   * which mode ran and which model served it.
   */
  quality?: 'fast' | 'balanced' | 'quality';
  /** Aborting cancels the request on the server; the iterator throws a `TolkAbortError`. */
  signal?: AbortSignal;
  /** Cancel and fail with code `timeout` after this many milliseconds. */
  timeoutMs?: number;
  /** Any other protocol field is sent as it is. */
  [field: string]: unknown;
}

/** A translation in progress: iterate it for the tokens, or await `result`. */
export declare class TranslationStream implements AsyncIterableIterator<string> {
  readonly id: string;
  /** The `complete` frame; rejects with a `TolkError` (a `TolkAbortError` when cancelled). */
  readonly result: Promise<CompleteFrame>;
  /** The `start` frame, once the server accepted the request. */
  readonly started: StartFrame | null;
  /** The `complete` frame, once done. */
  readonly completed: CompleteFrame | null;
  /** The text streamed so far. */
  readonly text: string;
  /** True once the request has ended (complete, failed or cancelled). */
  readonly done: boolean;
  /** Cancel the request (sends `cancel`). */
  cancel(reason?: unknown): void;
  next(): Promise<IteratorResult<string, undefined>>;
  /** Called by `break` in `for await`: cancels the request if it still runs. */
  return(): Promise<IteratorResult<string, undefined>>;
  [Symbol.asyncIterator](): TranslationStream;
}

export interface LiveOptions {
  target: string;
  source?: string;
  session?: string;
  glossary?: Record<string, string>;
  id?: string;
  /** Called with each partial frame. */
  onPartial?: (partial: PartialFrame) => void;
  /** Any other protocol field is sent in every update as it is. */
  [field: string]: unknown;
}

/** A live request: `update(text)` as the text changes; iterate for the newest partial. */
export declare class LiveTranslation implements AsyncIterableIterator<PartialFrame> {
  readonly id: string;
  /** The `complete` frame (with `live`); rejects with a `TolkError`. */
  readonly result: Promise<CompleteFrame>;
  readonly started: StartFrame | null;
  readonly completed: CompleteFrame | null;
  /** The newest partial frame. */
  readonly latest: PartialFrame | null;
  /** `stable + tentative` of the newest partial. */
  readonly text: string;
  readonly done: boolean;
  /** Updates the server refused (`error` frames with `about: "update"`); the request went on. */
  readonly refused: TolkError[];
  /** Send the whole current source text (the first update opens the request). */
  update(text: string, options?: { final?: boolean }): void;
  /** Send the final text (default: the last one); resolves with the `complete` frame. */
  finish(text?: string): Promise<CompleteFrame>;
  cancel(reason?: unknown): void;
  next(): Promise<IteratorResult<PartialFrame, undefined>>;
  /** Ends the loop; does not cancel the live request. */
  return(): Promise<IteratorResult<PartialFrame, undefined>>;
  [Symbol.asyncIterator](): LiveTranslation;
}

export interface ReconnectOptions {
  /** First delay before reconnecting (ms, default 250). */
  initialDelayMs?: number;
  /** Longest delay (ms, default 10000). */
  maxDelayMs?: number;
  /** Growth per failed attempt (default 2); each delay gets ±50% jitter. */
  factor?: number;
}

/** The minimal WebSocket surface the client uses (browsers' WebSocket, the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface TolkClientOptions {
  /** `ws(s)://host:port[/v1/stream]` or `http(s)://host:port`; in a browser the default is the
   * page's own origin, elsewhere `ws://127.0.0.1:8000/v1/stream`. */
  url?: string | URL;
  /** Sent in an `auth` frame when the connection opens. */
  apiKey?: string;
  /** A WebSocket constructor; default `globalThis.WebSocket` (Node 20: pass `ws`). */
  WebSocket?: WebSocketConstructor | (new (url: string) => unknown);
  /** How long one connection attempt may take, up to the `ready` frame (default 15000 ms). */
  connectTimeoutMs?: number;
  /** `false`: do not reconnect in the background after a drop. Default: on. */
  reconnect?: boolean | ReconnectOptions;
}

export interface ClientEvents {
  ready: ReadyFrame;
  disconnect: { code: number; reason: string };
  reconnecting: { attempt: number; delayMs: number };
  frame: ServerFrame;
  error: TolkError;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export declare class TolkClient {
  constructor(options?: TolkClientOptions);
  readonly url: string;
  apiKey: string | undefined;
  connectTimeoutMs: number;
  /** The last `ready` frame (null before the first connection). */
  readonly info: ReadyFrame | null;
  readonly state: ClientState;
  /** The served languages, from the `ready` frame ([] before connecting). */
  readonly languages: string[];
  /** Listen to an event; returns a function that removes the listener. */
  on<K extends keyof ClientEvents>(type: K, listener: (value: ClientEvents[K]) => void): () => void;
  /** Open the connection if needed; resolves with the `ready` frame. */
  connect(): Promise<ReadyFrame>;
  /** Start a (streaming) translation. */
  translate(opts: TranslateOptions): TranslationStream;
  /** Open a live request (sent on the first `update`). */
  live(opts: LiveOptions): LiveTranslation;
  /** Translate without streaming; resolves with the `complete` frame. */
  translateText(opts: TranslateOptions): Promise<CompleteFrame>;
  /** Open an audio stream (speech in; transcript and per-phrase translations out). */
  audioStream(opts?: AudioStreamOptions): AudioSession;
  /** Round-trip a ping; resolves with the time in milliseconds. */
  ping(): Promise<number>;
  /** Close for good; requests in flight fail with code `closed`. */
  close(): void;
}

export interface AudioStreamOptions {
  id?: string;
  /** The spoken language, or 'auto' (default). */
  source?: string;
  /** Translate each final phrase into these languages (default: none). */
  targets?: string[];
  sampleRate?: number;
  channels?: number;
  /** A label per channel. */
  speakers?: string[];
  /** Partial transcripts while a phrase is spoken (default true). */
  partials?: boolean;
  /**
   * Translate partial transcripts live (default false): each phrase's translation comes as
   * 'partial' events (`stable` never changes, `tentative` may) and then its `complete`.
   */
  live?: boolean;
  /** The quality mode of every phrase's translation. */
  quality?: 'fast' | 'balanced' | 'quality';
  /** A browser MediaStream (microphone): recorded as 16 kHz PCM through an AudioWorklet. */
  mediaStream?: unknown;
}

export interface TranscriptFrame {
  type: 'transcript';
  id: string;
  segment: number;
  speaker: string;
  language: string;
  start_ms: number;
  end_ms: number;
  text: string;
  final: boolean;
}

export interface AudioCompleteFrame {
  type: 'audio_complete';
  id: string;
  segments: number;
  audio_ms: number;
}

export interface SegmentInfo {
  segment: number;
  speaker: string;
  target: string;
  frame: Record<string, unknown>;
}

export interface AudioSessionEvents {
  transcript: TranscriptFrame;
  token: SegmentInfo & { token: string };
  translation: SegmentInfo;
  partial: SegmentInfo & { stable: string; tentative: string };
  error: TolkError;
}

export declare class AudioSession {
  readonly id: string;
  /** Resolves with the `audio_complete` frame; rejects with the stream's error. */
  readonly done: Promise<AudioCompleteFrame>;
  on<K extends keyof AudioSessionEvents>(type: K, listener: (value: AudioSessionEvents[K]) => void): () => void;
  /** Send 16-bit PCM, interleaved by channel. */
  send(chunk: Int16Array | ArrayBuffer): void;
  /** No more audio. */
  end(): void;
}

/** Float32 samples in [-1, 1] to 16-bit PCM. */
export declare function floatToPcm16(samples: Float32Array): Int16Array;

export default TolkClient;
