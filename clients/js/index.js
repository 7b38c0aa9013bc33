// tolk — JavaScript client for the tolk translation server, protocol v1 (`/v1/stream`).
//
// One ES module, no dependencies, no build step. It runs unchanged in browsers (global
// WebSocket) and in Node 20+ (pass a WebSocket implementation, e.g. the `ws` package):
//
//   import { TolkClient } from '@tolk/client';
//   import WebSocket from 'ws';                      // Node 20 only; browsers have one
//   const client = new TolkClient({ url: 'ws://127.0.0.1:8000/v1/stream', WebSocket });
//   for await (const token of client.translate({ text: 'Hyvää huomenta!', target: 'en' })) {
//     process.stdout.write(token);
//   }
//   const done = await client.translateText({ text: 'Good morning!', target: 'fi' });
//   client.close();
//
// Many requests share one socket, keyed by `id`. A dropped socket fails the requests in
// flight with a `TolkConnectionError`; the client reconnects in the background (exponential
// backoff with jitter) and the next request uses the new connection.
//
// The server serves this file itself as /tolk-client.js (the browser page imports it).

export const PROTOCOL_VERSION = 1;
/** The frames that end a request (tolk.protocol.TERMINAL_TYPES; tests/test_protocol.py checks). */
export const TERMINAL_TYPES = Object.freeze(['complete', 'error']);

/**
 * Whether a frame ends its request (tolk.protocol.is_terminal): a `complete`, or an `error`
 * without `about` (an error with `about` refuses one frame, e.g. an update; the request goes on).
 */
export function isTerminal(frame) {
  return TERMINAL_TYPES.includes(frame.type) && !('about' in frame);
}

const OPEN = 1; // WebSocket.OPEN
const NORMAL_CLOSURE = 1000;
const POLICY_VIOLATION = 1008;
/** Close code: the server could not deliver frames (this client did not read) and cancelled
 * the requests in flight; they fail with a `TolkConnectionError` of code 'undeliverable'. */
export const CLOSE_UNDELIVERABLE = 4001;

/** Any error the client reports. `code` is a protocol error code or a client-side one. */
export class TolkError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ id?: string, frame?: object, cause?: unknown }} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'TolkError';
    this.code = code;
    this.id = extra.id;
    this.frame = extra.frame;
  }
}

/** The connection could not be opened, or dropped while the request was in flight. */
export class TolkConnectionError extends TolkError {
  constructor(code, message, extra = {}) {
    super(code, message, extra);
    this.name = 'TolkConnectionError';
  }
}

/** The request was cancelled by the caller (AbortSignal, `cancel()`, or leaving `for await`). */
export class TolkAbortError extends TolkError {
  constructor(message = 'the request was cancelled', extra = {}) {
    super('cancelled', message, extra);
    this.name = 'AbortError';
  }
}

/** True for the error a cancelled request throws (ours, or a DOMException AbortError). */
export function isAbortError(err) {
  return !!err && typeof err === 'object' && err.name === 'AbortError';
}

/**
 * Turn `http://host:port`, `ws://host:port`, or a full `…/v1/stream` URL into the stream URL.
 * @param {string | URL} url
 */
export function streamUrl(url) {
  const u = new URL(String(url));
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new TypeError(`unsupported URL scheme ${u.protocol} (use ws:, wss:, http: or https:)`);
  }
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/v1/stream';
  return u.toString();
}

function defaultUrl() {
  const loc = globalThis.location;
  if (loc && typeof loc.host === 'string' && loc.host) {
    return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/v1/stream`;
  }
  return 'ws://127.0.0.1:8000/v1/stream';
}

function unrefTimer(t) {
  if (t && typeof t === 'object' && typeof t.unref === 'function') t.unref();
  return t;
}

let clientSeq = 0;

/**
 * A translation in progress. Iterate it for the tokens (`for await`), or await `result` for
 * the `complete` frame. Leaving the loop early cancels the request on the server.
 */
export class TranslationStream {
  /** @internal */
  constructor(client, id, signal) {
    this.id = id;
    /** The `start` frame once the server has accepted the request. */
    this.started = null;
    /** The `complete` frame once done. */
    this.completed = null;
    this._client = client;
    this._signal = signal;
    this._tokens = [];
    this._text = '';
    this._waiter = null;
    this._error = null;
    this._errorThrown = false;
    this._terminal = false; // the server sent complete/error, or the request failed locally
    this._sent = false; // the translate frame went out on the current connection
    this._cancelPending = false; // cancelled before the server's `start`: cancel on `start`
    this._conn = null;
    this._onAbort = null;
    this._timer = null;
    this.result = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    this.result.catch(() => {}); // the iterator reports failures too: never unhandled
  }

  /** The text streamed so far. */
  get text() {
    return this._text;
  }

  /** True once the request has ended (complete, error, or cancelled). */
  get done() {
    return this._terminal;
  }

  /** Cancel the request. The iterator and `result` reject with a `TolkAbortError`. */
  cancel(reason) {
    this._client._cancel(this, new TolkAbortError('the request was cancelled', {
      id: this.id, cause: reason,
    }));
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /** @returns {Promise<IteratorResult<string, undefined>>} */
  next() {
    if (this._tokens.length) return Promise.resolve({ value: this._tokens.shift(), done: false });
    if (this._error && !this._errorThrown) {
      this._errorThrown = true;
      return Promise.reject(this._error);
    }
    if (this._terminal) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this._waiter = { resolve, reject };
    }).then(() => this.next());
  }

  /** Leaving a `for await` loop early: cancel the request if it is still running. */
  return() {
    if (!this._terminal) {
      this._client._cancel(this, new TolkAbortError('the consumer stopped reading', {
        id: this.id,
      }));
    }
    this._errorThrown = true; // the loop is over: nothing more to report
    this._tokens.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  /** @internal */
  _wake() {
    const w = this._waiter;
    this._waiter = null;
    if (w) w.resolve();
  }

  /** @internal */
  _push(token) {
    this._text += token;
    this._tokens.push(token);
    this._wake();
  }

  /** @internal */
  _finish(frame) {
    if (this._terminal) return;
    this._terminal = true;
    this.completed = frame;
    this._detach();
    this._resolve(frame);
    this._wake();
  }

  /** @internal */
  _fail(err) {
    if (this._terminal) return; // already complete, failed or cancelled
    this._terminal = true;
    this._error = err;
    this._tokens.length = 0;
    this._detach();
    this._reject(err);
    this._wake();
  }

  /** @internal */
  _detach() {
    if (this._signal && this._onAbort) this._signal.removeEventListener('abort', this._onAbort);
    this._onAbort = null;
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
  }
}

/**
 * A live request: the source text keeps changing (typing, speech). `update(text)` sends the
 * whole current text; the server answers with partial frames `{ version, stable, tentative,
 * reset? }` whose `stable` part never changes unless `reset` is set. Iterate it (`for await`)
 * for the newest partial (a slow reader skips superseded ones), or pass `onPartial`.
 * `finish(text?)` sends the final text and resolves with the `complete` frame (with `live`).
 */
export class LiveTranslation extends TranslationStream {
  /** @internal */
  constructor(client, id, fields, onPartial) {
    super(client, id, undefined);
    this._fields = fields;
    this._onPartial = onPartial;
    /** The newest partial frame. */
    this.latest = null;
    /** Updates the server refused (an `error` frame with `about: "update"`): the request goes on. */
    this.refused = [];
    this._lastText = '';
  }

  /** Send the whole current source text. */
  update(text, { final = false } = {}) {
    if (this._terminal) throw new TolkError('bad_request', 'this live request has ended', { id: this.id });
    this._lastText = text;
    const frame = { type: 'update', ...this._fields, id: this.id, text };
    if (final) frame.final = true;
    this._client._sendLive(this, frame);
  }

  /** Send the final text (default: the last one); resolves with the `complete` frame. */
  finish(text) {
    this.update(text ?? this._lastText, { final: true });
    return this.result;
  }

  /** The current translation (`stable + tentative` of the newest partial). */
  get text() {
    return this.latest ? this.latest.stable + this.latest.tentative : '';
  }

  /** Leaving a `for await` loop does not cancel a live request (call `cancel()`). */
  return() {
    return Promise.resolve({ value: undefined, done: true });
  }

  /** @internal */
  _partial(frame) {
    this.latest = frame;
    this._tokens.length = 0;
    this._tokens.push(frame);
    if (this._onPartial) this._onPartial(frame);
    this._wake();
  }
}

/**
 * A client for one tolk server. Connects lazily (on the first request or `connect()`).
 */
export class TolkClient {
  /**
   * @param {object} [options]
   * @param {string | URL} [options.url] ws(s):// or http(s):// URL of the server or of `/v1/stream`;
   *   in a browser the default is the page's own origin.
   * @param {string} [options.apiKey] sent in an `auth` frame when the connection opens.
   * @param {any} [options.WebSocket] a WebSocket constructor (Node 20: `import WebSocket from 'ws'`).
   * @param {number} [options.connectTimeoutMs] how long one connection attempt may take, until
   *   the `ready` frame (default 15000; the server waits up to 10 s for authentication).
   * @param {boolean | object} [options.reconnect] `false` to disable reconnecting in the
   *   background, or `{ initialDelayMs, maxDelayMs, factor }` (defaults 250, 10000, 2).
   */
  constructor(options = {}) {
    this.url = streamUrl(options.url ?? defaultUrl());
    this.apiKey = options.apiKey;
    const impl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof impl !== 'function') {
      throw new TypeError('no WebSocket implementation: pass { WebSocket } (in Node 20: '
        + "import WebSocket from 'ws')");
    }
    this._WebSocket = impl;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15000;
    const rc = options.reconnect ?? true;
    this._reconnect = rc === false ? null : {
      initialDelayMs: 250, maxDelayMs: 10000, factor: 2, ...(rc === true ? {} : rc),
    };
    /** The last `ready` frame (null before the first connection). */
    this.info = null;
    this._ws = null;
    this._dial = null; // Promise<ready frame> while connecting
    this._requests = new Map(); // id -> TranslationStream (in flight on the current socket)
    this._audio = new Map(); // id -> AudioSession (at most one open per connection)
    this._pongs = [];
    this._listeners = new Map();
    this._closed = false;
    this._attempt = 0;
    this._retryTimer = null;
    this._everConnected = false;
    this._seq = 0;
    this._prefix = `c${(++clientSeq).toString(36)}${Math.random().toString(36).slice(2, 6)}-`;
  }

  /** 'open', 'connecting', 'reconnecting' (waiting to retry), 'idle' or 'closed'. */
  get state() {
    if (this._closed) return 'closed';
    if (this._ws && this._ws.readyState === OPEN && !this._dial) return 'open';
    if (this._dial) return 'connecting';
    if (this._retryTimer) return 'reconnecting';
    return 'idle';
  }

  /** The languages the server translates (from the `ready` frame; [] before connecting). */
  get languages() {
    return this.info ? [...this.info.languages] : [];
  }

  /**
   * Listen to client events; returns a function that removes the listener.
   *   'ready' (ready frame), 'disconnect' ({ code, reason }), 'reconnecting' ({ attempt,
   *   delayMs }), 'frame' (every server frame), 'error' (error frames not tied to a request,
   *   and failed connection attempts).
   */
  on(type, listener) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  _emit(type, value) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch (err) {
        setTimeout(() => { throw err; }, 0); // report, but never break the client
      }
    }
  }

  /** Open the connection (if needed) and resolve with the server's `ready` frame. */
  connect() {
    if (this._closed) return Promise.reject(new TolkConnectionError('closed', 'the client is closed'));
    if (this._ws && this._ws.readyState === OPEN && !this._dial && this.info) {
      return Promise.resolve(this.info);
    }
    if (this._retryTimer) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
    if (!this._dial) {
      this._dial = this._open().then((ready) => {
        this._dial = null;
        this._emit('ready', ready);
        return ready;
      }, (err) => {
        this._dial = null;
        this._connectFailed(err);
        throw err;
      });
      this._dial.catch(() => {});
    }
    return this._dial;
  }

  _open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new this._WebSocket(this.url);
      } catch (err) {
        reject(new TolkConnectionError('connect_failed', `cannot connect to ${this.url}: ${err?.message ?? err}`, { cause: err }));
        return;
      }
      this._ws = ws;
      let settled = false; // the attempt succeeded or failed
      let opened = false; // the server said ready
      const timer = unrefTimer(setTimeout(() => {
        fail(new TolkConnectionError('connect_failed', `no ready frame from ${this.url} within ${this.connectTimeoutMs} ms`));
        try { ws.close(); } catch { /* ignore */ }
      }, this.connectTimeoutMs));
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this._ws === ws) this._ws = null;
        reject(err);
      };
      ws.onopen = () => {
        if (this.apiKey !== undefined && this.apiKey !== null && this.apiKey !== '') {
          ws.send(JSON.stringify({ type: 'auth', api_key: this.apiKey }));
        }
      };
      ws.onerror = () => {}; // the close event follows and tells the story
      ws.onclose = (ev) => {
        if (!settled) {
          fail(new TolkConnectionError(ev.code === POLICY_VIOLATION ? 'unauthorized' : 'connect_failed',
            `connection to ${this.url} closed before ready (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`));
        } else if (opened) {
          this._onDrop(ws, ev.code, ev.reason);
        }
      };
      ws.onmessage = (ev) => {
        let frame;
        try {
          frame = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
        } catch {
          return; // the server only sends JSON text frames
        }
        if (!frame || typeof frame !== 'object') return;
        this._emit('frame', frame);
        if (!settled) {
          if (frame.type === 'ready') {
            settled = true;
            opened = true;
            clearTimeout(timer);
            this.info = frame;
            this._attempt = 0;
            this._everConnected = true;
            resolve(frame);
          } else if (frame.type === 'error') {
            const code = frame.code === 'unauthorized' ? 'unauthorized' : 'connect_failed';
            fail(new TolkError(code, frame.message ?? 'connection refused', { frame }));
          }
          return;
        }
        this._onFrame(frame);
      };
    });
  }

  _connectFailed(err) {
    this._emit('error', err);
    // A refused key will not get better by retrying; anything else may.
    if (err && err.code === 'unauthorized') return;
    if (this._everConnected) this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._closed || !this._reconnect || this._retryTimer || this._dial) return;
    const { initialDelayMs, maxDelayMs, factor } = this._reconnect;
    const base = Math.min(maxDelayMs, initialDelayMs * factor ** this._attempt);
    const delayMs = Math.round(base * (0.5 + Math.random() * 0.5));
    this._attempt += 1;
    this._emit('reconnecting', { attempt: this._attempt, delayMs });
    this._retryTimer = unrefTimer(setTimeout(() => {
      this._retryTimer = null;
      this.connect().catch(() => {}); // a failure schedules the next try
    }, delayMs));
  }

  _onDrop(ws, code, reason) {
    if (this._ws === ws) this._ws = null;
    for (const req of [...this._requests.values()]) {
      if (req._conn !== ws) continue; // not sent yet: it waits for the next connection
      this._requests.delete(req.id);
      req._fail(code === CLOSE_UNDELIVERABLE
        ? new TolkConnectionError('undeliverable',
          `the server could not deliver request ${req.id}'s frames and cancelled it (code ${code})`, { id: req.id })
        : new TolkConnectionError('connection_lost',
          `the connection closed while request ${req.id} was in flight (code ${code})`, { id: req.id }));
    }
    const pongs = this._pongs.splice(0);
    for (const p of pongs) p.reject(new TolkConnectionError('connection_lost', 'the connection closed'));
    for (const a of [...this._audio.values()]) {
      a._fail(new TolkConnectionError('connection_lost', 'the connection closed during the audio stream'));
    }
    this._emit('disconnect', { code, reason });
    if (!this._closed) this._scheduleReconnect();
  }

  _onFrame(frame) {
    switch (frame.type) {
      case 'pong': {
        const p = this._pongs.shift();
        if (p) p.resolve();
        return;
      }
      case 'ready':
        this.info = frame;
        return;
      default:
        break;
    }
    const audio = typeof frame.id === 'string' ? this._audio.get(frame.id) : undefined;
    if (audio) {
      audio._onFrame(frame);
      return;
    }
    const req = typeof frame.id === 'string' ? this._requests.get(frame.id) : undefined;
    if (!req) {
      if (frame.type === 'error') this._emit('error', new TolkError(frame.code, frame.message, { id: frame.id, frame }));
      return;
    }
    switch (frame.type) {
      case 'start':
        req.started = frame;
        if (req._cancelPending) this._sendCancel(req);
        break;
      case 'token':
        if (!req._terminal) req._push(frame.token);
        break;
      case 'segment': // with granularity 'segment' (or 'word'): a readable chunk of text
        if (!req._terminal) req._push(frame.text);
        break;
      case 'partial': // a live request's current translation
        if (!req._terminal && req._partial) req._partial(frame);
        break;
      default:
        break;
    }
    if (frame.type === 'error' && !isTerminal(frame)) { // answers one frame (a refused update)
      const err = new TolkError(frame.code, frame.message ?? frame.code, { id: req.id, frame });
      if (req.refused) req.refused.push(err);
      this._emit('error', err);
      return;
    }
    if (!TERMINAL_TYPES.includes(frame.type)) return;
    this._requests.delete(req.id);
    switch (frame.type) {
      case 'complete':
        req._finish(frame);
        break;
      case 'error':
        if (frame.code === 'cancelled') {
          req._fail(new TolkAbortError(frame.message ?? 'cancelled', { id: req.id, frame }));
        } else {
          req._fail(new TolkError(frame.code, frame.message ?? frame.code, { id: req.id, frame }));
        }
        break;
      default:
        break;
    }
  }

  _nextId() {
    this._seq += 1;
    return `${this._prefix}${this._seq}`;
  }

  /**
   * Start a translation; iterate the result for its tokens, or await `.result`.
   * @param {object} opts `text`, `target`, and optionally `source` ('auto' or omitted: detected),
   *   `id`, `stream` (default true), `max_tokens` (or `maxTokens`), `quality` ('fast',
   *   'balanced' — the default — or 'quality'); any other field is sent in
   *   the translate frame as it is. Client-side only: `signal` (AbortSignal), `timeoutMs`.
   * @returns {TranslationStream}
   */
  translate(opts) {
    if (!opts || typeof opts !== 'object') throw new TypeError('translate() takes an options object');
    const id = opts.id ?? this._nextId();
    const req = new TranslationStream(this, id, opts.signal);
    // Every other option is a protocol field and goes out as it is (so newer server options
    // work without a client update); undefined/null fields are left out.
    const { signal: _signal, timeoutMs: _timeoutMs, maxTokens, ...fields } = opts;
    const frame = { type: 'translate', ...fields, id, stream: opts.stream ?? true };
    if (maxTokens !== undefined && frame.max_tokens === undefined) frame.max_tokens = maxTokens;
    for (const key of Object.keys(frame)) {
      if (frame[key] === undefined || frame[key] === null) delete frame[key];
    }

    if (this._closed) {
      req._fail(new TolkConnectionError('closed', 'the client is closed', { id }));
      return req;
    }
    if (this._requests.has(id)) {
      req._fail(new TolkError('duplicate_id', `a request with id ${id} is in flight`, { id }));
      return req;
    }
    const signal = opts.signal;
    if (signal) {
      if (signal.aborted) {
        req._fail(new TolkAbortError('the request was cancelled', { id, cause: signal.reason }));
        return req;
      }
      req._onAbort = () => this._cancel(req, new TolkAbortError('the request was cancelled', {
        id, cause: signal.reason,
      }));
      signal.addEventListener('abort', req._onAbort, { once: true });
    }
    if (opts.timeoutMs) {
      req._timer = unrefTimer(setTimeout(() => this._cancel(req, new TolkError('timeout',
        `no answer within ${opts.timeoutMs} ms`, { id })), opts.timeoutMs));
    }
    this._requests.set(id, req);
    this.connect().then(() => {
      if (req._terminal) return; // cancelled while connecting
      const ws = this._ws;
      if (!ws || ws.readyState !== OPEN) {
        this._requests.delete(id);
        req._fail(new TolkConnectionError('connection_lost', 'the connection closed before the request was sent', { id }));
        return;
      }
      req._conn = ws;
      ws.send(JSON.stringify(frame));
      req._sent = true;
    }, (err) => {
      this._requests.delete(id);
      req._fail(err instanceof TolkError ? err
        : new TolkConnectionError('connect_failed', String(err?.message ?? err), { id, cause: err }));
    });
    return req;
  }

  /**
   * Open a live request (nothing is sent until the first `update()`).
   * @param {object} opts `target`, and optionally `source`, `session`, `glossary`, `id`, and
   *   `onPartial` (called with each partial frame); other fields go out in every update frame.
   * @returns {LiveTranslation}
   */
  live(opts) {
    if (!opts || typeof opts !== 'object') throw new TypeError('live() takes an options object');
    const { onPartial, id: given, ...fields } = opts;
    for (const key of Object.keys(fields)) {
      if (fields[key] === undefined || fields[key] === null) delete fields[key];
    }
    return new LiveTranslation(this, given ?? this._nextId(), fields, onPartial);
  }

  /** @internal The first update opens the live request; later ones go on its socket. */
  _sendLive(req, frame) {
    if (req._sent || req._opening) {
      if (req._opening) { req._queued = frame; return; } // still connecting: the newest wins
      const ws = req._conn;
      if (ws && ws === this._ws && ws.readyState === OPEN) ws.send(JSON.stringify(frame));
      else {
        this._requests.delete(req.id);
        req._fail(new TolkConnectionError('connection_lost', 'the connection of this live request closed', { id: req.id }));
      }
      return;
    }
    if (this._closed) {
      req._fail(new TolkConnectionError('closed', 'the client is closed', { id: req.id }));
      return;
    }
    if (this._requests.has(req.id)) {
      req._fail(new TolkError('duplicate_id', `a request with id ${req.id} is in flight`, { id: req.id }));
      return;
    }
    this._requests.set(req.id, req);
    req._opening = true;
    this.connect().then(() => {
      req._opening = false;
      if (req._terminal) return;
      const ws = this._ws;
      if (!ws || ws.readyState !== OPEN) {
        this._requests.delete(req.id);
        req._fail(new TolkConnectionError('connection_lost', 'the connection closed before the request was sent', { id: req.id }));
        return;
      }
      req._conn = ws;
      ws.send(JSON.stringify(frame));
      req._sent = true;
      const queued = req._queued;
      req._queued = null;
      if (queued) ws.send(JSON.stringify(queued));
    }, (err) => {
      req._opening = false;
      this._requests.delete(req.id);
      req._fail(err instanceof TolkError ? err
        : new TolkConnectionError('connect_failed', String(err?.message ?? err), { id: req.id, cause: err }));
    });
  }

  /**
   * Translate without streaming (`stream: false`); resolves with the `complete` frame.
   * @param {object} opts as for `translate()`.
   */
  translateText(opts) {
    return this.translate({ ...opts, stream: opts?.stream ?? false }).result;
  }

  _cancel(req, err) {
    if (req._terminal) return;
    if (req._sent && req._conn && req._conn === this._ws && req._conn.readyState === OPEN) {
      // The server answers with error `cancelled`; until then the request stays in the table
      // (its late frames are dropped, and the id is not reused). The cancel frame goes out
      // once the server has started the request (its `start` frame): a cancel that overtakes
      // the start of a request is not answered by every server version.
      if (req.started) this._sendCancel(req);
      else req._cancelPending = true;
      req._fail(err);
      return;
    }
    this._requests.delete(req.id);
    req._fail(err);
  }

  _sendCancel(req) {
    req._cancelPending = false;
    if (!req._conn || req._conn.readyState !== OPEN) return;
    try {
      req._conn.send(JSON.stringify({ type: 'cancel', id: req.id }));
    } catch { /* the close handler cleans up */ }
  }

  /**
   * Open an audio stream: speech in, transcript (and translations) out. Send 16-bit PCM with
   * `session.send(chunk)` (Int16Array or ArrayBuffer, interleaved by channel) and finish with
   * `session.end()`; or pass `mediaStream` (a browser microphone) and it records 16 kHz PCM
   * through an AudioWorklet until `end()`. Events: 'transcript' (every transcript frame),
   * 'token' / 'translation' ({ segment, speaker, target, token | frame }), 'partial' (with
   * `live`: { segment, speaker, target, stable, tentative, frame }), 'error'.
   * `session.done` resolves with the `audio_complete` frame.
   * @param {object} opts `targets` (default []), `source` (default 'auto'), `sampleRate`
   *   (default 16000), `channels` (1), `speakers` (labels per channel), `partials` (true),
   *   `live` (false: translate partial transcripts live; a phrase's translation is then
   *   `partial` events and its `complete`), `quality`, `mediaStream`, `id`.
   * @returns {AudioSession}
   */
  audioStream(opts = {}) {
    const id = opts.id ?? this._nextId();
    const session = new AudioSession(this, id, opts);
    this._audio.set(id, session);
    session._begin();
    return session;
  }

  /** Round trip a `ping`; resolves with the time in milliseconds. */
  async ping() {
    await this.connect();
    const t0 = Date.now();
    await new Promise((resolve, reject) => {
      this._pongs.push({ resolve, reject });
      this._ws.send(JSON.stringify({ type: 'ping' }));
    });
    return Date.now() - t0;
  }

  /** Close the connection for good: requests in flight fail with code `closed`. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const ws = this._ws;
    this._ws = null;
    for (const req of this._requests.values()) {
      req._fail(new TolkConnectionError('closed', 'the client was closed', { id: req.id }));
    }
    this._requests.clear();
    for (const p of this._pongs.splice(0)) p.reject(new TolkConnectionError('closed', 'the client was closed'));
    if (ws) {
      try {
        ws.close(NORMAL_CLOSURE);
      } catch { /* ignore */ }
    }
  }
}

// An AudioWorklet that posts mono Float32 blocks of ~100 ms (kept inline: one file to copy).
const WORKLET = `class TolkPcm extends AudioWorkletProcessor {
  constructor() { super(); this.buf = []; this.n = 0; }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) { this.buf.push(ch.slice(0)); this.n += ch.length; }
    if (this.n >= sampleRate / 10) {
      const out = new Float32Array(this.n); let o = 0;
      for (const b of this.buf) { out.set(b, o); o += b.length; }
      this.buf = []; this.n = 0; this.port.postMessage(out, [out.buffer]);
    }
    return true;
  }
}
registerProcessor('tolk-pcm', TolkPcm);`;

/** Float32 samples in [-1, 1] to 16-bit PCM. */
export function floatToPcm16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i += 1) {
    const x = Math.max(-1, Math.min(1, samples[i]));
    out[i] = x < 0 ? x * 32768 : x * 32767;
  }
  return out;
}

/** One audio stream on a client's connection (see `TolkClient.audioStream`). */
export class AudioSession {
  constructor(client, id, opts) {
    this.client = client;
    this.id = id;
    this.opts = opts;
    this.sampleRate = opts.sampleRate ?? 16000;
    this._listeners = new Map();
    this._ws = null;
    this._queue = []; // chunks sent before the connection is ready
    this._ended = false;
    this._closed = false;
    this._recorder = null;
    this.done = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    this.done.catch(() => {});
  }

  on(type, listener) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  _emit(type, value) {
    for (const fn of [...(this._listeners.get(type) ?? [])]) {
      try { fn(value); } catch (err) { setTimeout(() => { throw err; }, 0); }
    }
  }

  async _begin() {
    try {
      let rate = this.sampleRate;
      if (this.opts.mediaStream) rate = this.sampleRate = await this._record(this.opts.mediaStream);
      await this.client.connect();
      const ws = this.client._ws;
      if (this._closed) return;
      if (!ws || ws.readyState !== OPEN) throw new TolkConnectionError('connection_lost', 'not connected');
      this._ws = ws;
      const start = {
        type: 'audio_start', id: this.id, source: this.opts.source ?? 'auto',
        targets: this.opts.targets ?? [], sample_rate: rate, channels: this.opts.channels ?? 1,
        speakers: this.opts.speakers ?? [], partials: this.opts.partials ?? true,
      };
      if (this.opts.live) start.live = true;
      if (this.opts.quality) start.quality = this.opts.quality;
      ws.send(JSON.stringify(start));
      for (const chunk of this._queue.splice(0)) ws.send(chunk);
      if (this._ended) ws.send(JSON.stringify({ type: 'audio_end', id: this.id }));
    } catch (err) {
      this._fail(err instanceof TolkError ? err : new TolkError('audio', String(err?.message ?? err)));
    }
  }

  async _record(mediaStream) {
    const ctx = new AudioContext({ sampleRate: 16000 });
    const url = URL.createObjectURL(new Blob([WORKLET], { type: 'text/javascript' }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const src = ctx.createMediaStreamSource(mediaStream);
    const node = new AudioWorkletNode(ctx, 'tolk-pcm', { channelCount: 1, channelCountMode: 'explicit' });
    node.port.onmessage = (ev) => this.send(floatToPcm16(ev.data));
    src.connect(node);
    this._recorder = { ctx, src, node };
    return ctx.sampleRate;
  }

  _stopRecording() {
    const r = this._recorder;
    this._recorder = null;
    if (!r) return;
    try { r.src.disconnect(); r.node.disconnect(); r.node.port.onmessage = null; } catch { /* gone */ }
    r.ctx.close().catch(() => {});
  }

  /** Send PCM s16le (an Int16Array or ArrayBuffer). */
  send(chunk) {
    if (this._ended || this._closed) return;
    const data = chunk instanceof Int16Array
      ? chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.byteLength) : chunk;
    if (this._ws && this._ws.readyState === OPEN) this._ws.send(data);
    else if (!this._ws) this._queue.push(data);
  }

  /** No more audio: the phrases in progress become final; `done` resolves after them. */
  end() {
    if (this._ended || this._closed) return;
    this._ended = true;
    this._stopRecording();
    if (this._ws && this._ws.readyState === OPEN) {
      this._ws.send(JSON.stringify({ type: 'audio_end', id: this.id }));
    }
  }

  _onFrame(frame) {
    if (frame.type === 'transcript') {
      this._emit('transcript', frame);
    } else if (frame.type === 'audio_complete') {
      this._finish();
      this._resolve(frame);
    } else if (frame.segment !== undefined) { // a phrase's translation: start, token, complete, error
      const info = { segment: frame.segment, speaker: frame.speaker, target: frame.target, frame };
      if (frame.type === 'token') this._emit('token', { ...info, token: frame.token });
      else if (frame.type === 'segment') this._emit('token', { ...info, token: frame.text });
      else if (frame.type === 'partial') {
        this._emit('partial', { ...info, stable: frame.stable, tentative: frame.tentative });
      } else this._emit('translation', info);
    } else if (frame.type === 'error') {
      this._fail(new TolkError(frame.code, frame.message ?? frame.code, { id: this.id, frame }));
    }
  }

  _finish() {
    this._closed = true;
    this._stopRecording();
    this.client._audio.delete(this.id);
  }

  _fail(err) {
    if (this._closed) return;
    this._finish();
    this._emit('error', err);
    this._reject(err);
  }
}

export default TolkClient;
