// Audio streams from PCM chunks: transcript and per-phrase translations (engine double,
// the server's real default recogniser; test speech from espeak-ng + sox).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { TolkClient, floatToPcm16 } from '../index.js';
import { startServer, within } from './helpers.js';

let server;

before(async () => {
  server = await startServer({ env: { TOLK_AUDIO_MAX_SPEED: '100' } });
});

after(async () => {
  await server?.stop();
});

function speech(text) {
  const wav = execFileSync('espeak-ng', ['-v', 'en-us', '-s', '160', '--stdout', text]);
  const raw = execFileSync('sox', ['-t', 'wav', '-', '-t', 'raw', '-r', '16000', '-c', '1', '-b', '16',
    '-e', 'signed-integer', '-'], { input: wav });
  return new Int16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
}

test('floatToPcm16 clips and scales', () => {
  assert.deepEqual([...floatToPcm16(new Float32Array([0, 1, -1, 2, -0.5]))], [0, 32767, -32768, 32767, -16384]);
});

test('an audio stream from PCM chunks gives transcripts and translations per phrase', async () => {
  const silence = new Int16Array(16000 * 0.8);
  const parts = [silence, speech('The meeting will begin shortly.'), silence,
    speech('Thank you, Madam President.'), silence];
  const client = new TolkClient({ url: server.ws, WebSocket });
  const session = client.audioStream({ source: 'en', targets: ['fi'], speakers: ['Chair'] });
  const finals = [];
  const tokens = new Map();
  const completes = [];
  session.on('transcript', (f) => { if (f.final) finals.push(f); });
  session.on('token', ({ segment, token }) => tokens.set(segment, (tokens.get(segment) ?? '') + token));
  session.on('translation', ({ frame }) => { if (frame.type === 'complete') completes.push(frame); });
  for (const part of parts) {
    for (let i = 0; i < part.length; i += 1600) session.send(part.subarray(i, i + 1600));
  }
  session.end();
  const done = await within(30000, session.done, 'audio stream');
  client.close();
  assert.equal(done.segments, 2);
  assert.deepEqual(finals.map((f) => f.segment), [0, 1]);
  assert.ok(finals.every((f) => f.speaker === 'Chair'));
  assert.match(finals[0].text.toLowerCase(), /begin|shortly/);
  assert.equal(completes.length, 2);
  for (const c of completes) assert.equal(tokens.get(c.segment), c.translation);
});

test('live: partial transcripts are translated as they come (stable, tentative), then complete', async () => {
  const silence = new Int16Array(16000 * 0.8);
  const parts = [silence, speech('The committee will now consider the amendments to the budget one by one.'), silence];
  const client = new TolkClient({ url: server.ws, WebSocket });
  const session = client.audioStream({ source: 'en', targets: ['fi'], live: true, quality: 'fast' });
  const partials = [];
  const frames = [];
  let final = null;
  session.on('transcript', (f) => { if (f.final) final = f; });
  session.on('partial', (p) => partials.push({ ...p, afterFinal: final !== null }));
  session.on('token', () => assert.fail('live translations come as partials'));
  session.on('translation', ({ frame }) => frames.push(frame));
  for (const part of parts) {
    for (let i = 0; i < part.length; i += 1600) {
      session.send(part.subarray(i, i + 1600));
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  session.end();
  await within(30000, session.done, 'audio stream');
  client.close();
  assert.ok(partials.some((p) => !p.afterFinal), 'a partial translation while the phrase was spoken');
  assert.ok(partials.every((p) => p.segment === 0 && p.target === 'fi' && p.speaker));
  assert.deepEqual(frames.map((f) => f.type), ['start', 'complete']);
  const last = partials.at(-1);
  assert.equal(frames[1].translation, last.stable + last.tentative);
  assert.equal(frames[1].quality, 'fast');
});
