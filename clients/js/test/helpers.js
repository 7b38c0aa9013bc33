// Test helpers: a real tolk server (`tolk serve --engine fake`) as a child process.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const TOLK = process.env.TOLK_BIN ?? path.join(REPO, '.venv', 'bin', 'tolk');

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reject if `promise` takes longer than `ms` (every wait in these tests is bounded). */
export function within(ms, promise, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Start `tolk serve --engine fake` on `port` (a free one by default) and wait for GET /ready.
 * Returns { port, http, ws, stop() }.
 */
export async function startServer({ port, env = {}, readyTimeoutMs = 30000 } = {}) {
  if (!existsSync(TOLK)) {
    throw new Error(`tolk is not installed at ${TOLK} (run \`make install\`, or set TOLK_BIN)`);
  }
  port ??= await freePort();
  const child = spawn(TOLK, ['serve', '--engine', 'fake', '--host', '127.0.0.1',
    '--port', String(port), '--log-level', 'warning'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  let exited = false;
  const exit = new Promise((resolve) => child.on('exit', (code, signal) => {
    exited = true;
    resolve({ code, signal });
  }));
  const http = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited) throw new Error(`tolk serve exited early:\n${stderr}`);
    try {
      const res = await fetch(`${http}/ready`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`tolk serve was not ready within ${readyTimeoutMs} ms:\n${stderr}`);
    }
    await sleep(50);
  }
  return {
    port,
    http,
    ws: `ws://127.0.0.1:${port}/v1/stream`,
    child,
    get stderr() { return stderr; },
    /** Stop the server (SIGTERM, then SIGKILL after 5 s) and wait for it to exit. */
    async stop() {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** A `ws` WebSocket that counts instances and lets a test watch (or act on) what is sent. */
export function spyWebSocket() {
  const spy = { sockets: [], onSend: null };
  class SpyWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      spy.sockets.push(this);
    }

    send(data, ...rest) {
      super.send(data, ...rest);
      if (spy.onSend) spy.onSend(JSON.parse(String(data)), this);
    }
  }
  spy.WebSocket = SpyWebSocket;
  return spy;
}

/** The server's non-streaming answer over HTTP, for comparison. */
export async function httpTranslate(http, body) {
  const res = await fetch(`${http}/v1/translate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: false }),
    signal: AbortSignal.timeout(10000),
  });
  return { status: res.status, body: await res.json() };
}

let uniq = 0;

/**
 * Words enough for a long generation (the server caps text at 4000 characters); unique on
 * every call, so that no server-side cache can answer it at once.
 */
export function longText(words = 580) {
  const vocab = ['the', 'meeting', 'will', 'begin', 'shortly', 'and', 'everyone', 'is', 'welcome'];
  uniq += 1;
  const tag = `n${process.pid}x${uniq}x${Date.now() % 100000}`;
  return [tag, ...Array.from({ length: words }, (_, i) => vocab[i % vocab.length])].join(' ');
}
