// The official DeepL Node client (`deepl-node`, unmodified) pointed at tolk with `serverUrl`:
// form bodies with repeated `text`, languages, usage, glossaries, HTML, a bad key.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import * as deepl from 'deepl-node';
import { httpTranslate, startServer } from './helpers.js';

const T = { timeout: 20000 };
const KEY = 'k-deepl';
let server;
let home;
let translator;

before(async () => {
  home = mkdtempSync(path.join(os.tmpdir(), 'tolk-deepl-'));
  server = await startServer({ env: { TOLK_API_KEYS: KEY, TOLK_HOME: home } });
  translator = new deepl.Translator(KEY, { serverUrl: server.http, maxRetries: 0 });
});

after(async () => {
  await server?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
});

async function plain(text) {
  const res = await fetch(`${server.http}/v1/translate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ text, source: 'en', target: 'fi' }),
  });
  return (await res.json()).translation;
}

test('translateText sends a list as repeated form fields; answers match /v1/translate', T, async () => {
  const texts = ['Good morning', 'See you tomorrow'];
  const out = await translator.translateText(texts, 'en', 'fi');
  assert.deepEqual(out.map((r) => r.text), [await plain(texts[0]), await plain(texts[1])]);
  assert.deepEqual(out.map((r) => r.detectedSourceLang), ['en', 'en']);
  assert.deepEqual(out.map((r) => r.billedCharacters), [12, 16]);
  const auto = await translator.translateText('Where is the railway station?', null, 'fi');
  assert.equal(auto.detectedSourceLang, 'en');
});

test('languages and usage', T, async () => {
  const sources = (await translator.getSourceLanguages()).map((l) => l.code);
  assert.deepEqual(sources.sort(), ['en', 'fi']);
  const targets = (await translator.getTargetLanguages()).map((l) => l.code);
  assert.ok(targets.includes('en-US') && targets.includes('en-GB') && targets.includes('fi'));
  const usage = await translator.getUsage();
  assert.ok(usage.character.count >= 28, JSON.stringify(usage.character));
});

test('glossaries: create, list, entries, use, delete', T, async () => {
  const entries = new deepl.GlossaryEntries({ entries: { house: 'talo' } });
  const info = await translator.createGlossary('homes', 'en', 'fi', entries);
  assert.equal(info.entryCount, 1);
  const listed = await translator.listGlossaries();
  assert.ok(listed.some((g) => g.glossaryId === info.glossaryId && g.name === 'homes'));
  assert.deepEqual((await translator.getGlossaryEntries(info)).entries(), { house: 'talo' });
  const used = await translator.translateText('The house', 'en', 'fi', { glossary: info });
  assert.equal(typeof used.text, 'string');
  await translator.deleteGlossary(info);
  await assert.rejects(translator.getGlossary(info.glossaryId), deepl.GlossaryNotFoundError);
});

test('tagHandling html keeps the markup', T, async () => {
  const out = await translator.translateText('<p>Hello <b>there</b></p><pre>x</pre>', 'en', 'fi',
    { tagHandling: 'html' });
  assert.match(out.text, /^<p>[^<]+<b>[^<]+<\/b><\/p><pre>x<\/pre>$/);
});

test('a bad key is an AuthorizationError; an unknown language a DeepLError', T, async () => {
  const bad = new deepl.Translator('wrong', { serverUrl: server.http, maxRetries: 0 });
  await assert.rejects(bad.translateText('hi', 'en', 'fi'), deepl.AuthorizationError);
  const { status } = await httpTranslate(server.http, { text: 'hi', target: 'fi' });
  assert.equal(status, 401);
  await assert.rejects(translator.translateText('hi', 'en', 'ja'), deepl.DeepLError);
});
