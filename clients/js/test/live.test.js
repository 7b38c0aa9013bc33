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

test('the README example: later updates inherit target and source; a change is refused', T, async () => {
  const { isTerminal } = await import('../index.js');
  assert.equal(isTerminal({ type: 'error', code: 'bad_request', about: 'update' }), false);
  assert.equal(isTerminal({ type: 'error', code: 'expired' }), true);
  const ws = new WebSocket(server.ws);
  const frames = [];
  const done = new Promise((resolve) => {
    ws.on('message', (data) => {
      const f = JSON.parse(String(data));
      frames.push(f);
      if (f.id === 'L1' && isTerminal(f)) resolve(f);
    });
  });
  await new Promise((r) => ws.once('open', r));
  const send = (f) => ws.send(JSON.stringify(f));
  send({ type: 'update', id: 'L1', text: 'The meeting', source: 'en', target: 'fi' });
  send({ type: 'update', id: 'L1', text: 'The meeting will begin' });
  send({ type: 'update', id: 'L1', text: 'The meeting will begin', target: 'en' });
  send({ type: 'update', id: 'L1', text: 'The meeting will begin shortly.', final: true });
  try {
    const end = await within(10000, done);
    assert.equal(end.type, 'complete');
    assert.equal(end.target, 'fi');
    const errors = frames.filter((f) => f.type === 'error');
    assert.deepEqual(errors.map((f) => [f.code, f.about]), [['bad_request', 'update']]);
  } finally {
    ws.close();
  }
});
