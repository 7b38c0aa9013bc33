// The Meeting section: the microphone (getUserMedia + an AudioWorklet, 16 kHz PCM) goes to the
// server as an audio stream; each phrase shows its transcript (tentative text in grey while it
// is spoken) and its translation, with the speaker's label. With "Translate live" the phrase is
// translated while it is spoken: the stable part in black, the tentative part in grey.

const $ = (id) => document.getElementById(id);

export function setupMeeting(client) {
  const start = $('meeting-start');
  const log = $('meeting-log');
  const status = $('meeting-status');
  let session = null;
  const rows = new Map(); // segment -> { li, said, out }

  client.on('ready', (ready) => {
    for (const [id, auto] of [['meeting-source', true], ['meeting-target', false]]) {
      const sel = $(id);
      const keep = sel.value;
      for (const opt of [...sel.options]) if (opt.value !== 'auto') opt.remove();
      for (const code of ready.languages) sel.append(new Option(code, code));
      if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
      else sel.value = auto ? 'auto' : (ready.languages.find((c) => c !== 'en') ?? ready.languages[0]);
    }
    start.disabled = false;
  });

  function row(segment, speaker) {
    let r = rows.get(segment);
    if (!r) {
      const li = document.createElement('li');
      li.dataset.segment = String(segment);
      const who = document.createElement('span');
      who.className = 'speaker';
      who.textContent = speaker;
      const said = document.createElement('span');
      said.className = 'said';
      said.dataset.testid = 'meeting-said';
      const out = document.createElement('span');
      out.className = 'translation';
      out.dataset.testid = 'meeting-translation';
      li.append(who, said, out);
      log.append(li);
      r = { li, said, out };
      rows.set(segment, r);
    }
    return r;
  }

  async function begin() {
    const speaker = $('meeting-speaker').value.trim() || 'Speaker 1';
    let mediaStream;
    try {
      mediaStream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      status.textContent = `No microphone: ${err?.message ?? err}`;
      return;
    }
    log.replaceChildren();
    rows.clear();
    const target = $('meeting-target').value;
    session = client.audioStream({
      mediaStream, source: $('meeting-source').value, targets: target ? [target] : [],
      speakers: [speaker], live: $('meeting-live').checked,
    });
    start.textContent = 'Stop';
    start.dataset.state = 'recording';
    status.textContent = 'Listening…';
    session.on('transcript', (f) => {
      const r = row(f.segment, f.speaker);
      r.said.textContent = f.text;
      r.said.dataset.final = String(f.final);
      r.li.lang = f.language;
    });
    session.on('token', ({ segment, speaker: who, token }) => {
      row(segment, who).out.textContent += token;
    });
    session.on('partial', ({ segment, speaker: who, stable, tentative }) => {
      const grey = document.createElement('span');
      grey.className = 'tentative';
      grey.textContent = tentative;
      row(segment, who).out.replaceChildren(stable, grey);
    });
    session.on('translation', ({ segment, speaker: who, target: lang, frame }) => {
      const r = row(segment, who);
      r.out.lang = lang;
      if (frame.type === 'complete') {
        r.out.textContent = frame.translation;
        r.out.dataset.done = 'true';
      }
      if (frame.type === 'error') r.out.textContent = `(${frame.message})`;
    });
    const stopTracks = () => { for (const t of mediaStream.getTracks()) t.stop(); };
    session.done.then((done) => {
      status.textContent = `${done.segments} phrases · ${(done.audio_ms / 1000).toFixed(1)} s of audio`;
    }, (err) => {
      status.textContent = `Stopped: ${err?.message ?? err}`;
    }).finally(() => {
      stopTracks();
      session = null;
      start.textContent = 'Start';
      start.dataset.state = 'idle';
    });
  }

  start.addEventListener('click', () => {
    if (session) {
      status.textContent = 'Finishing the last phrase…';
      session.end();
    } else {
      begin();
    }
  });
}
