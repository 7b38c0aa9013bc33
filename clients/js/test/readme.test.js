// The JavaScript example of docs/clients.md, run as written against a real server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, symlinkSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, startServer, within } from './helpers.js';

function readmeSnippet() {
  const page = readFileSync(path.join(REPO, 'docs', 'clients.md'), 'utf8');
  const section = page.slice(page.indexOf('## JavaScript'));
  const match = section.match(/```js\n([\s\S]*?)```/);
  assert.ok(match, 'docs/clients.md has a ```js block under ## JavaScript');
  return match[1];
}

test('the README JavaScript example runs as written', async () => {
  const server = await startServer();
  try {
    // A scratch package where `@tolk/client` and `ws` resolve as they do for a user.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tolk-readme-'));
    mkdirSync(path.join(dir, 'node_modules', '@tolk'), { recursive: true });
    symlinkSync(path.join(REPO, 'clients', 'js'), path.join(dir, 'node_modules', '@tolk', 'client'));
    symlinkSync(path.join(REPO, 'clients', 'js', 'node_modules', 'ws'), path.join(dir, 'node_modules', 'ws'));
    writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}');
    writeFileSync(path.join(dir, 'example.js'), readmeSnippet());
    const child = spawn(process.execPath, ['example.js'], {
      cwd: dir, env: { ...process.env, TOLK_URL: server.ws }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const code = await within(30000, new Promise((resolve) => child.on('exit', resolve)), 'example');
    assert.equal(code, 0, err);
    assert.ok(out.split('\n').length >= 3, out);
  } finally {
    await server.stop();
  }
});
