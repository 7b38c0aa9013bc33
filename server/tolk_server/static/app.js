// The tolk browser page: live translation as you type, and a two-party translated chat.
// Plain ES module, no dependencies beyond the client (tolk-client.js, served from clients/js/index.js).
import { setupMeeting } from './meeting.js';
import { TolkClient, isAbortError } from './tolk-client.js';

const FINISH_AFTER_MS = 600; // a pause this long sends the text as final
const KEY_STORAGE = 'tolk.apiKey';

const $ = (id) => document.getElementById(id);

const storedKey = (() => {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || undefined;
  } catch {
    return undefined;
  }
})();

const client = new TolkClient({ apiKey: storedKey });
// Exposed for debugging in the console (and for end-to-end tests).
globalThis.tolk = { client };
setupMeeting(client);

// ---------------------------------------------------------------- connection and languages
const langNames = new Map();
let displayNames = null;
try {
  displayNames = new Intl.DisplayNames([navigator.language || 'en'], { type: 'language' });
} catch {
  displayNames = null;
}

function langName(code) {
  if (langNames.has(code)) return langNames.get(code);
  try {
    return displayNames?.of(code) || code;
  } catch {
    return code;
  }
}

function setStatus(state, text) {
  const el = $('conn-status');
  el.dataset.state = state;
  $('conn-text').textContent = text;
}

function fillSelect(select, codes, preferred) {
  const keep = select.value;
  for (const opt of [...select.options]) if (opt.value !== 'auto') opt.remove();
  for (const code of codes) {
    const opt = document.createElement('option');
    opt.value = code;
    opt.textContent = `${langName(code)} (${code})`;
    select.append(opt);
  }
  const want = [keep, preferred, codes[0]].find((c) => c && [...select.options].some((o) => o.value === c));
  if (want) select.value = want;
}

let languagesShown = '';

async function showLanguages(ready) {
  const codes = ready.languages;
  if (codes.join(',') === languagesShown) return;
  try {
    const res = await fetch('v1/languages', { headers: { accept: 'application/json' } });
    if (res.ok) {
      const body = await res.json();
      for (const l of body.languages ?? []) if (l && l.code && l.name) langNames.set(l.code, l.name);
    }
  } catch {
    // Names are a nicety: codes and the browser's own names do.
  }
  languagesShown = codes.join(',');
  const home = codes.includes('en') ? 'en' : codes[0];
  const away = codes.find((c) => c !== home) ?? home;
  fillSelect($('live-source'), codes, 'auto');
  fillSelect($('live-target'), codes, away);
  fillSelect($('agent-lang'), codes, home);
  fillSelect($('customer-lang'), codes, away);
  document.body.dataset.ready = 'true';
  if ($('live-input').value.trim()) onLiveInput(0);
}

client.on('ready', (ready) => {
  setStatus('open', `Connected · model ${ready.model} · ${ready.languages.join(', ')}`);
  showLanguages(ready);
  // Back after a drop: redo a live translation that the drop cut off.
  if (live.output.dataset.state === 'error' && live.input.value.trim()) onLiveInput(0);
});
client.on('disconnect', () => setStatus('reconnecting', 'Connection lost — reconnecting…'));
client.on('reconnecting', ({ delayMs }) => {
  setStatus('reconnecting', `Connection lost — retrying in ${(delayMs / 1000).toFixed(1)} s…`);
});

let retry = 0;
async function connect() {
  setStatus('connecting', 'Connecting…');
  try {
    await client.connect();
    retry = 0;
  } catch (err) {
    if (err && err.code === 'unauthorized') {
      setStatus('error', 'This server needs an API key: enter it in the connection settings.');
      $('settings').open = true;
      $('api-key').focus();
      return;
    }
    const delay = Math.min(10000, 500 * 2 ** retry);
    retry += 1;
    setStatus('error', `Cannot reach the server — retrying in ${Math.round(delay / 1000)} s…`);
    setTimeout(connect, delay);
  }
}

$('settings-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const key = $('api-key').value.trim();
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage may be off: the key still applies to this page
  }
  client.apiKey = key || undefined;
  $('settings').open = false;
  if (client.state !== 'open') connect();
});
if (storedKey) $('api-key').value = storedKey;

// ---------------------------------------------------------------- live translation
// Every keystroke sends the whole text as a live `update` (the server coalesces bursts and
// aborts superseded work); partials come back as stable text (ink) and tentative text (grey).
// After a pause the text is sent as final, and the complete translation replaces the partial.
const live = {
  input: $('live-input'),
  output: $('live-output'),
  stats: $('live-stats'),
  source: $('live-source'),
  target: $('live-target'),
  session: null,
  finishTimer: null,
  lastSource: null,
};

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

function setLiveState(state) {
  live.output.dataset.state = state;
  live.output.setAttribute('aria-busy', String(state === 'pending' || state === 'streaming'));
}

/** Draw a translation as stable text and grey tentative text. */
function drawPartial(box, stable, tentative) {
  let s = box.querySelector('.stable');
  let t = box.querySelector('.tentative');
  if (!s || !t) {
    box.textContent = '';
    s = el('span', { class: 'stable', 'data-testid': 'stable' });
    t = el('span', { class: 'tentative', 'data-testid': 'tentative' });
    box.append(s, t);
  }
  if (s.textContent !== stable) s.textContent = stable;
  if (t.textContent !== tentative) t.textContent = tentative;
}

function stopLive() {
  clearTimeout(live.finishTimer);
  if (live.session && !live.session.done) live.session.cancel();
  live.session = null;
}

function openLive() {
  const target = live.target.value;
  const source = live.source.value || 'auto';
  const session = client.live({
    target,
    source,
    onPartial: (p) => {
      if (live.session !== session) return;
      live.output.lang = target;
      drawPartial(live.output, p.stable, p.tentative);
      live.output.dataset.version = String(p.version);
      setLiveState('streaming');
    },
  });
  session.result.then((done) => {
    if (live.session !== session) return;
    live.session = null;
    drawPartial(live.output, done.translation, '');
    live.output.lang = done.target;
    live.output.dataset.sourceText = session.finalText;
    live.output.dataset.requestId = done.id;
    live.lastSource = done.source;
    const detected = source === 'auto' ? ` (detected ${langName(done.source)})` : '';
    const l = done.live ?? {};
    live.stats.textContent = `${done.source} → ${done.target}${detected} · first partial ${fmtMs(l.first_partial_ms)} · final ${fmtMs(l.final_ms)} · ${l.updates} updates, ${l.partials} partials, erasure ${(l.normalized_erasure ?? 0).toFixed(2)}`;
    live.stats.dataset.firstPartialMs = String(l.first_partial_ms ?? '');
    live.stats.dataset.finalMs = String(l.final_ms ?? '');
    setLiveState('done');
  }, (err) => {
    if (live.session !== session) return;
    live.session = null;
    if (isAbortError(err) || err.code === 'expired') return; // the next keystroke reopens
    live.stats.textContent = `Translation failed: ${err.message ?? err}`;
    setLiveState('error');
  });
  return session;
}

function onLiveInput(finishAfter = FINISH_AFTER_MS) {
  clearTimeout(live.finishTimer);
  const text = live.input.value;
  if (!text.trim()) {
    stopLive();
    live.output.textContent = '';
    live.output.dataset.sourceText = '';
    live.stats.textContent = '\u00a0';
    setLiveState('idle');
    return;
  }
  if (!live.target.value) return; // not connected yet: showLanguages() comes back here
  if (!live.session || live.session.finalSent) {
    live.session = openLive();
    if (live.output.dataset.state !== 'streaming') setLiveState('pending');
  }
  live.session.update(text);
  const session = live.session;
  live.finishTimer = setTimeout(() => {
    if (live.session !== session || session.done) return;
    session.finalText = live.input.value;
    session.finalSent = true;
    session.finish(live.input.value).catch(() => {}); // the result handler reports
  }, finishAfter);
}

live.input.addEventListener('input', () => onLiveInput());
live.source.addEventListener('change', () => { stopLive(); onLiveInput(0); });
live.target.addEventListener('change', () => { stopLive(); onLiveInput(0); });
$('live-swap').addEventListener('click', () => {
  const from = live.source.value === 'auto' ? live.lastSource : live.source.value;
  const to = live.target.value;
  if (!from || from === to) return;
  if (live.output.dataset.state === 'done' && live.output.textContent) {
    live.input.value = live.output.textContent;
  }
  live.source.value = to;
  live.target.value = from;
  stopLive();
  onLiveInput(0);
});

// ---------------------------------------------------------------- the two-party chat
const parties = {
  agent: { name: 'Agent', log: $('agent-log'), input: $('agent-input'), lang: $('agent-lang'), form: $('agent-form') },
  customer: { name: 'Customer', log: $('customer-log'), input: $('customer-input'), lang: $('customer-lang'), form: $('customer-form') },
};
let chatSeq = 0;

function timeNow() {
  return new Date().toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

function scrollToEnd(log) {
  log.scrollTop = log.scrollHeight;
}

// While one side types, the other sees a "typing…" bubble with the partial translation.
function typingBubble(to) {
  let li = to.log.querySelector('li.typing');
  if (!li) {
    li = el('li', { class: 'msg peer typing', 'data-testid': 'typing' });
    li.append(el('p', { class: 'meta' }, 'typing…'), el('p', { class: 'body' }));
    to.log.append(li);
  }
  return li;
}

function stopTyping(from, to) {
  if (from.live && !from.live.done) from.live.cancel();
  from.live = null;
  to.log.querySelector('li.typing')?.remove();
}

function onChatInput(fromKey, toKey) {
  const from = parties[fromKey];
  const to = parties[toKey];
  const text = from.input.value;
  if (!text.trim() || !from.lang.value || !to.lang.value) {
    stopTyping(from, to);
    return;
  }
  if (!from.live) {
    const session = client.live({
      source: from.lang.value,
      target: to.lang.value,
      onPartial: (p) => {
        if (from.live !== session) return;
        const body = typingBubble(to).querySelector('.body');
        body.lang = to.lang.value;
        drawPartial(body, p.stable, p.tentative);
        scrollToEnd(to.log);
      },
    });
    session.result.catch(() => {
      if (from.live === session) stopTyping(from, to); // expired or failed: drop the bubble
    });
    from.live = session;
  }
  from.live.update(text);
}

parties.agent.input.addEventListener('input', () => onChatInput('agent', 'customer'));
parties.customer.input.addEventListener('input', () => onChatInput('customer', 'agent'));

async function sendChat(fromKey, toKey) {
  const from = parties[fromKey];
  const to = parties[toKey];
  const text = from.input.value.trim();
  stopTyping(from, to);
  if (!text) return;
  from.input.value = '';
  const msgId = `m${++chatSeq}`;
  const src = from.lang.value;
  const tgt = to.lang.value;

  // The sender's own pane: their words as written.
  const own = el('li', { class: 'msg own', 'data-testid': 'message', 'data-msg': msgId, 'data-direction': 'sent' });
  own.append(el('p', { class: 'body', lang: src, 'data-testid': 'text' }, text));
  const ownMeta = el('p', { class: 'meta' }, `You · ${timeNow()}`);
  own.append(ownMeta);
  from.log.append(own);
  scrollToEnd(from.log);

  // The other pane: the translation streams in, the original below in small print.
  const peer = el('li', {
    class: 'msg peer', 'data-testid': 'message', 'data-msg': msgId, 'data-direction': 'received', 'data-state': 'streaming',
  });
  const body = el('p', { class: 'body', lang: tgt, 'data-testid': 'translation', 'aria-busy': 'true' });
  const original = el('p', { class: 'original', lang: src, 'data-testid': 'original' });
  original.append(el('span', { class: 'visually-hidden' }, 'Original: '), document.createTextNode(text));
  const peerMeta = el('p', { class: 'meta' }, `${from.name} · ${timeNow()} · translated from ${langName(src)}`);
  peer.append(body, original, peerMeta);
  to.log.append(peer);
  scrollToEnd(to.log);

  const stream = client.translate({ text, source: src, target: tgt });
  try {
    for await (const token of stream) {
      body.append(token);
      scrollToEnd(to.log);
    }
    const done = await stream.result;
    body.textContent = done.translation;
    peer.dataset.state = 'done';
    ownMeta.textContent = `You · ${timeNow()} · delivered in ${langName(tgt)} (${fmtMs(done.latency_ms)})`;
  } catch (err) {
    peer.dataset.state = 'error';
    body.textContent = `(not translated: ${err.message ?? err})`;
    ownMeta.textContent = `You · ${timeNow()} · translation failed`;
  } finally {
    body.setAttribute('aria-busy', 'false');
    scrollToEnd(to.log);
  }
}

parties.agent.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendChat('agent', 'customer');
});
parties.customer.form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendChat('customer', 'agent');
});

connect();
