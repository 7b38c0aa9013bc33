// Reconnecting: after the socket drops, and after the server restarts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TolkClient, TolkConnectionError } from '../index.js';
import { freePort, longText, spyWebSocket, startServer, within } from './helpers.js';

const T = { timeout: 45000 };
const FAST = { initialDelayMs: 50, maxDelayMs: 400, factor: 2 };

function once(client, type, ms = 10000) {
  return within(ms, new Promise((resolve) => {
    const off = client.on(type, (v) => { off(); resolve(v); });
  }), `event ${type}`);
}

test('a dropped socket fails the request in flight, then the client reconnects', T, async () => {
  const server = await startServer();
  const spy = spyWebSocket();
  const c = new TolkClient({ url: server.http, WebSocket: spy.WebSocket, reconnect: FAST });
  try {
    await within(5000, c.connect(), 'connect');
    // Drop the connection the moment the request has gone out.
    spy.onSend = (f, ws) => { if (f.type === 'translate') ws.terminate(); };
    const disconnected = once(c, 'disconnect');
    const readyAgain = once(c, 'ready');
    const stream = c.translate({ text: longText(), source: 'en', target: 'fi' });
    await assert.rejects(within(5000, (async () => { for await (const _ of stream) { /* */ } })()),
      (e) => e instanceof TolkConnectionError && e.code === 'connection_lost' && e.id === stream.id);
    await assert.rejects(stream.result, (e) => e.code === 'connection_lost');
    spy.onSend = null;
    await disconnected;
    await readyAgain; // reconnected in the background
    assert.equal(spy.sockets.length, 2);
    const done = await within(5000, c.translateText({ text: 'after the drop', source: 'en', target: 'fi' }));
    assert.equal(done.type, 'complete');
    assert.equal(c.state, 'open');
  } finally {
    c.close();
    await server.stop();
  }
});

test('the client rides out a server restart', T, async () => {
  const port = await freePort();
  let server = await startServer({ port });
  const c = new TolkClient({ url: server.ws, WebSocket: (await import('ws')).default, reconnect: FAST });
  try {
    assert.equal((await within(5000, c.translateText({ text: 'before restart', source: 'en', target: 'fi' }))).type, 'complete');
    const disconnected = once(c, 'disconnect', 15000);
    await server.stop();
    await disconnected;
    // While the server is down, a request fails fast with a typed error.
    await assert.rejects(within(10000, c.translateText({ text: 'while down', source: 'en', target: 'fi' })),
      (e) => e instanceof TolkConnectionError && e.code === 'connect_failed');
    const reconnecting = [];
    c.on('reconnecting', (r) => reconnecting.push(r));
    const readyAgain = once(c, 'ready', 30000);
    server = await startServer({ port });
    await readyAgain; // the background retries found it again
    const done = await within(5000, c.translateText({ text: 'after restart', source: 'en', target: 'fi' }));
    assert.equal(done.type, 'complete');
    for (const r of reconnecting) assert.ok(r.delayMs <= FAST.maxDelayMs);
  } finally {
    c.close();
    await server.stop();
  }
});

test('reconnect: false leaves reconnecting to the next request', T, async () => {
  const server = await startServer();
  const spy = spyWebSocket();
  const c = new TolkClient({ url: server.ws, WebSocket: spy.WebSocket, reconnect: false });
  try {
    await within(5000, c.connect());
    const disconnected = once(c, 'disconnect');
    spy.sockets[0].terminate();
    await disconnected;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(c.state, 'idle');
    assert.equal(spy.sockets.length, 1);
    assert.equal((await within(5000, c.translateText({ text: 'lazy reconnect', source: 'en', target: 'fi' }))).type, 'complete');
    assert.equal(spy.sockets.length, 2);
  } finally {
    c.close();
    await server.stop();
  }
});
