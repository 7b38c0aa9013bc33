// The client against a real server: streaming, non-streaming, multiplexing, cancel, errors.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import {
  TolkAbortError, TolkClient, TolkError, isAbortError, streamUrl,
} from '../index.js';
import {
  httpTranslate, longText, spyWebSocket, startServer, within,
} from './helpers.js';

const T = { timeout: 20000 };
let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

function client(extra = {}) {
  return new TolkClient({ url: server.ws, WebSocket, ...extra });
}

describe('TolkClient', () => {
  test('streamUrl accepts http(s), ws(s) and full stream URLs', () => {
    assert.equal(streamUrl('http://h:1'), 'ws://h:1/v1/stream');
    assert.equal(streamUrl('https://h'), 'wss://h/v1/stream');
    assert.equal(streamUrl('ws://h:2/v1/stream'), 'ws://h:2/v1/stream');
    assert.throws(() => streamUrl('ftp://h'), TypeError);
  });

  test('no WebSocket implementation gives a clear TypeError', () => {
    if (globalThis.WebSocket) return; // Node 22+ has one
    assert.throws(() => new TolkClient({ url: 'ws://x' }), /WebSocket/);
  });

  test('connect() resolves with the ready frame', T, async () => {
    const c = client();
    try {
      const ready = await within(5000, c.connect(), 'connect');
      assert.equal(ready.type, 'ready');
      assert.equal(ready.protocol, 1);
      assert.deepEqual(ready.languages, ['en', 'fi']);
      assert.equal(ready.auth, false);
      assert.deepEqual(c.languages, ['en', 'fi']);
      assert.equal(c.state, 'open');
      assert.ok((await within(5000, c.ping(), 'ping')) >= 0);
    } finally {
      c.close();
    }
    assert.equal(c.state, 'closed');
  });

  test('quality is passed and the complete frame reports the mode and the model', T, async () => {
    const c = client();
    try {
      const fast = c.translate({ text: 'Quick translation needed', target: 'fi', quality: 'fast' });
      const done = await within(10000, fast.result, 'fast');
      assert.equal(done.quality, 'fast');
      assert.equal(typeof done.model, 'string');
      const plain = await within(10000, c.translate({ text: 'Hello there', target: 'fi' }).result, 'plain');
      assert.equal(plain.quality, 'balanced');
      await assert.rejects(c.translate({ text: 'x', target: 'fi', quality: 'best' }).result,
        (err) => err instanceof TolkError && err.code === 'bad_request');
    } finally {
      c.close();
    }
  });

  test('streamed tokens concatenate to the complete translation', T, async () => {
    const c = client();
    try {
      const text = 'The meeting will begin shortly, thank you all for coming today.';
      const stream = c.translate({ text, source: 'en', target: 'fi' });
      const tokens = [];
      await within(10000, (async () => {
        for await (const token of stream) tokens.push(token);
      })(), 'stream');
      const done = await stream.result;
      assert.equal(done.type, 'complete');
      assert.ok(tokens.length > 3, `expected several tokens, got ${tokens.length}`);
      assert.ok(tokens.every((t) => t.length <= 3));
      assert.equal(tokens.join(''), done.translation);
      assert.equal(stream.text, done.translation);
      assert.equal(done.source, 'en');
      assert.equal(done.target, 'fi');
      assert.equal(done.finish_reason, 'stop');
      assert.equal(typeof done.latency_ms, 'number');
      assert.equal(stream.started.type, 'start');
      assert.equal(stream.completed, done);
      // The same text over HTTP, without streaming, gives the same translation.
      const http = await httpTranslate(server.http, { text, source: 'en', target: 'fi' });
      assert.equal(http.status, 200);
      assert.equal(http.body.translation, done.translation);
    } finally {
      c.close();
    }
  });

  test('translateText() resolves with the complete frame (no token frames)', T, async () => {
    const c = client();
    const tokens = [];
    c.on('frame', (f) => { if (f.type === 'token') tokens.push(f); });
    try {
      const done = await within(10000, c.translateText({ text: 'Hyvää huomenta kaikille!', target: 'en' }));
      assert.equal(done.type, 'complete');
      assert.equal(done.source, 'fi'); // detected
      assert.equal(done.target, 'en');
      assert.ok(done.translation.length > 0);
      assert.equal(tokens.length, 0);
    } finally {
      c.close();
    }
  });

  test('many concurrent requests share one socket', T, async () => {
    const spy = spyWebSocket();
    const c = client({ WebSocket: spy.WebSocket });
    try {
      const n = 40;
      const jobs = Array.from({ length: n }, (_, i) => {
        const text = `request number ${i} says hello to ${'word '.repeat(i % 7)}everyone`;
        if (i % 4 === 3) {
          return c.translateText({ text, source: 'en', target: 'fi' }).then((d) => ({ i, d, got: d.translation }));
        }
        const s = c.translate({ text, source: 'en', target: 'fi' });
        return (async () => {
          let got = '';
          for await (const t of s) got += t;
          return { i, d: await s.result, got };
        })();
      });
      const results = await within(15000, Promise.all(jobs), 'concurrent requests');
      assert.equal(spy.sockets.length, 1);
      const ids = new Set();
      for (const { d, got } of results) {
        assert.equal(got, d.translation);
        ids.add(d.id);
      }
      assert.equal(ids.size, n);
      // Each answer belongs to its own request.
      const solo = await httpTranslate(server.http, { text: `request number 5 says hello to ${'word '.repeat(5)}everyone`, source: 'en', target: 'fi' });
      assert.equal(results[5].got, solo.body.translation);
    } finally {
      c.close();
    }
  });

  test('a protocol error rejects that request only', T, async () => {
    const c = client();
    try {
      const bad = c.translate({ text: 'hello', source: 'en', target: 'xx' });
      const good = c.translateText({ text: 'hello there', source: 'en', target: 'fi' });
      await assert.rejects(within(5000, (async () => { for await (const _ of bad) { /* none */ } })()),
        (err) => err instanceof TolkError && err.code === 'unsupported_language' && err.id === bad.id);
      await assert.rejects(bad.result, (err) => err.code === 'unsupported_language');
      assert.equal((await within(5000, good)).type, 'complete');
      await assert.rejects(c.translateText({ text: '   ', target: 'fi' }), (err) => err.code === 'bad_request');
    } finally {
      c.close();
    }
  });

  test('an AbortSignal cancels on the server (error code cancelled)', T, async (t) => {
    const c = client();
    const cancelled = new Map();
    c.on('frame', (f) => { if (f.type === 'error' && f.code === 'cancelled') cancelled.set(f.id, f); });
    try {
      await c.connect();
      // The engine double is fast: cancel as soon as the server has started the request,
      // and retry in the unlikely case it finished first.
      let seen = false;
      let attempts = 0;
      for (; attempts < 8 && !seen; attempts += 1) {
        const controller = new AbortController();
        const stream = c.translate({ text: longText(), source: 'en', target: 'fi', max_tokens: 1024, signal: controller.signal });
        const off = c.on('frame', (f) => { if (f.id === stream.id && f.type === 'start') controller.abort(); });
        let err = null;
        try {
          await within(10000, (async () => { for await (const _ of stream) { /* tokens */ } })(), 'cancel');
        } catch (e) {
          err = e;
        }
        off();
        if (err === null) continue; // finished before the cancel arrived
        assert.ok(isAbortError(err), `expected an AbortError, got ${err}`);
        assert.ok(err instanceof TolkAbortError);
        assert.equal(err.code, 'cancelled');
        await assert.rejects(stream.result, (e) => e.name === 'AbortError');
        const t0 = Date.now();
        while (!cancelled.has(stream.id) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
        seen = cancelled.has(stream.id);
      }
      t.diagnostic(`cancelled on the server after ${attempts} attempt(s)`);
      assert.ok(seen, 'the server never answered a cancel with error code cancelled');
      // The connection keeps working.
      assert.equal((await within(5000, c.translateText({ text: 'still here', source: 'en', target: 'fi' }))).type, 'complete');
    } finally {
      c.close();
    }
  });

  test('aborting right after the request went out still ends it on the server', T, async () => {
    const spy = spyWebSocket();
    const c = client({ WebSocket: spy.WebSocket });
    const terminal = new Map();
    c.on('frame', (f) => { if (f.type === 'complete' || f.type === 'error') terminal.set(f.id, f); });
    try {
      await c.connect();
      const ids = [];
      for (let i = 0; i < 10; i += 1) {
        const controller = new AbortController();
        spy.onSend = (f) => { if (f.type === 'translate') controller.abort(); };
        const stream = c.translate({ text: longText(), source: 'en', target: 'fi', max_tokens: 1024, signal: controller.signal });
        ids.push(stream.id);
        await assert.rejects(within(5000, stream.result), (e) => isAbortError(e));
      }
      spy.onSend = null;
      // Every request got its terminal frame from the server (cancelled, or complete if it won).
      const t0 = Date.now();
      while (ids.some((id) => !terminal.has(id)) && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(ids.filter((id) => !terminal.has(id)), []);
      for (const id of ids) assert.ok(['complete', 'error'].includes(terminal.get(id).type));
      // ... and the connection is still usable (no leaked ids, no overload).
      assert.equal((await within(5000, c.translateText({ text: 'still fine', source: 'en', target: 'fi' }))).type, 'complete');
    } finally {
      c.close();
    }
  });

  test('an already-aborted signal never reaches the server', T, async () => {
    const spy = spyWebSocket();
    const sent = [];
    spy.onSend = (f) => sent.push(f);
    const c = client({ WebSocket: spy.WebSocket });
    try {
      await c.connect();
      const stream = c.translate({ text: 'hello', target: 'fi', signal: AbortSignal.abort() });
      await assert.rejects(stream.next(), (e) => isAbortError(e));
      assert.equal(sent.filter((f) => f.type === 'translate').length, 0);
    } finally {
      c.close();
    }
  });

  test('leaving a for-await loop early cancels the request', T, async () => {
    const spy = spyWebSocket();
    const sent = [];
    spy.onSend = (f) => sent.push(f);
    const c = client({ WebSocket: spy.WebSocket });
    try {
      await c.connect();
      const stream = c.translate({ text: longText(), source: 'en', target: 'fi', max_tokens: 1024 });
      let n = 0;
      await within(10000, (async () => {
        for await (const _ of stream) {
          n += 1;
          if (n === 2) break;
        }
      })(), 'break');
      assert.equal(n, 2);
      assert.ok(stream.done);
      // Either the cancel frame went out, or the (fast) server had already completed it.
      const cancels = sent.filter((f) => f.type === 'cancel' && f.id === stream.id);
      if (!stream.completed) assert.equal(cancels.length, 1);
      await assert.rejects(stream.result, (e) => isAbortError(e)).catch(() => {});
      assert.equal((await within(5000, c.translateText({ text: 'after break', source: 'en', target: 'fi' }))).type, 'complete');
    } finally {
      c.close();
    }
  });

  test('close() fails requests in flight with a typed error', T, async () => {
    const c = client();
    await c.connect();
    const stream = c.translate({ text: longText(), source: 'en', target: 'fi', max_tokens: 1024 });
    c.close();
    await assert.rejects(stream.result, (e) => e instanceof TolkError && e.code === 'closed');
    await assert.rejects(c.translateText({ text: 'x', target: 'fi' }), (e) => e.code === 'closed');
  });
});
