// The browser page imports a copy of this client: it must stay byte-identical.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO } from './helpers.js';

test('server/tolk_server/static/tolk-client.js is an exact copy of index.js', () => {
  const source = readFileSync(path.join(REPO, 'clients', 'js', 'index.js'));
  const copy = readFileSync(path.join(REPO, 'server', 'tolk_server', 'static', 'tolk-client.js'));
  assert.ok(source.equals(copy), 'copy it: cp clients/js/index.js server/tolk_server/static/tolk-client.js');
});
