// Live input (`client.live`) against a real server with the engine double.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { TolkClient } from '../index.js';
import { startServer, within } from './helpers.js';

const T = { timeout: 20000 };
let server;

before(async () => {
  server = await startServer({ env: { TOLK_LIVE_IDLE_S: '1' } });
});

after(async () => {
  await server?.stop();
});

test('typing: partials keep their stable prefix, finish() completes', T, async () => {
  const c = new TolkClient({ url: server.ws, WebSocket });
  try {
    await within(5000, c.connect()); // while connecting, only the newest update is kept
    const seen = [];
    const live = c.live({ target: 'fi', source: 'en', onPartial: (p) => seen.push(p) });
    const text = 'The meeting will begin shortly';
    for (let k = 1; k <= text.length; k += 1) {
      live.update(text.slice(0, k));
      await new Promise((r) => setTimeout(r, 5));
    }
    const done = await within(10000, live.finish(`${text}.`));
    assert.equal(done.type, 'complete');
    assert.equal(done.live.updates, text.length + 1);
    assert.equal(done.live.partials, seen.length);
    let stable = '';
    for (const p of seen) {
      if (!p.reset) assert.ok(p.stable.startsWith(stable), `${JSON.stringify(p)} after ${stable}`);
      stable = p.stable;
    }
    assert.equal(live.text, done.translation);
    assert.equal(seen.at(-1).tentative, '');
  } finally {
    c.close();
  }
});

test('iterating yields partials; an idle live request expires', T, async () => {
  const c = new TolkClient({ url: server.ws, WebSocket });
  try {
    const live = c.live({ target: 'fi', source: 'en' });
    live.update('Hello there');
    const first = await within(5000, live.next());
    assert.equal(first.value.type, 'partial');
    assert.equal(first.value.version, 1);
    await assert.rejects(within(5000, live.result), (e) => e.code === 'expired');
  } finally {
    c.close();
  }
});
