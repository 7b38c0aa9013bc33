// Authentication with the auth frame, against a server started with TOLK_API_KEYS.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { TolkClient, TolkError } from '../index.js';
import { startServer, within } from './helpers.js';

const T = { timeout: 20000 };
let server;

before(async () => {
  server = await startServer({ env: { TOLK_API_KEYS: 'k1', TOLK_AUTH_TIMEOUT_S: '1' } });
});

after(async () => {
  await server?.stop();
});

test('a valid key authenticates', T, async () => {
  const c = new TolkClient({ url: server.ws, apiKey: 'k1', WebSocket });
  try {
    const ready = await within(5000, c.connect());
    assert.equal(ready.auth, true);
    let got = '';
    const s = c.translate({ text: 'secret meeting at noon', source: 'en', target: 'fi' });
    for await (const t of s) got += t;
    assert.equal(got, (await s.result).translation);
  } finally {
    c.close();
  }
});

test('a wrong key is refused with unauthorized', T, async () => {
  const c = new TolkClient({ url: server.ws, apiKey: 'nope', WebSocket });
  const errors = [];
  c.on('error', (e) => errors.push(e));
  try {
    await assert.rejects(within(5000, c.translateText({ text: 'hello', target: 'fi' })),
      (e) => e instanceof TolkError && e.code === 'unauthorized');
    assert.ok(errors.some((e) => e.code === 'unauthorized'));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(c.state, 'idle'); // no reconnect loop with a refused key
    // A corrected key works on the same client.
    c.apiKey = 'k1';
    assert.equal((await within(5000, c.translateText({ text: 'hello there', source: 'en', target: 'fi' }))).type, 'complete');
  } finally {
    c.close();
  }
});

test('no key is refused once the server stops waiting for one', T, async () => {
  const c = new TolkClient({ url: server.ws, WebSocket });
  try {
    await assert.rejects(within(8000, c.connect()), (e) => e.code === 'unauthorized');
  } finally {
    c.close();
  }
});
