// The demo page: wires the file input, the progress bar and the results to a MertTagger.
// Contract (DESIGN.md, "Web contract"): body data-state = loading | ready | running | done |
// error; body data-backend = webgpu | wasm; ?backend=wasm|webgpu forces one; tags in
// [data-testid=tags], one element per tag with data-tag and data-p; errors in [data-testid=error].
import { MertTagger } from './mert.js';
import { Timeline } from './timeline.js';

const $ = (id) => document.getElementById(id);
const body = document.body;
const ui = {
  audio: $('audio'), cancel: $('cancel'), ownModel: $('own-model'), status: $('status'),
  progress: $('progress'), note: $('backend-note'), timing: $('timing'), error: $('error'),
  tags: $('tags'), title: $('result-title'), modelInfo: $('model-info'),
  files: $('files'), filesSection: $('files-section'),
};
const timeline = new Timeline({ figure: $('timeline'), audio: $('player'), waveform: $('waveform'), taggram: $('taggram') });
const TIMELINE_SECONDS = 1;

let tagger = null;
let busy = false;
const files = []; // {file, state: waiting|running|done|error|cancelled, result, error, row}
let shown = null; // the entry whose results are on the page

function setState(state, text) {
  body.dataset.state = state;
  if (text !== undefined) ui.status.textContent = text;
  ui.cancel.disabled = !(state === 'running' || state === 'loading');
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
  ui.progress.hidden = true;
  setState('error', 'Something went wrong.');
}

function clearError() {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

function showProgress(value, max) {
  ui.progress.hidden = false;
  ui.progress.max = max || 1;
  ui.progress.value = value;
}

function onprogress(p) {
  if (p.stage === 'download') {
    showProgress(p.loaded, p.total);
    ui.status.textContent = `Downloading the model: ${(p.loaded / 1e6).toFixed(1)} of ${(p.total / 1e6).toFixed(1)} MB`;
  } else if (p.stage === 'decoded') {
    showProgress(0, p.windows);
    ui.status.textContent = `Decoded ${p.seconds.toFixed(1)} s of audio; running the model (${p.windows} windows)…`;
  } else if (p.stage === 'windows') {
    showProgress(p.done, p.total);
    ui.status.textContent = `Running the model: window ${p.done} of ${p.total}`;
  }
}

function describeModel(m) {
  const c = m.description?.config ?? {};
  ui.modelInfo.textContent = `Model: ${m.name} (${(m.bytes / 1e6).toFixed(1)} MB${m.cached ? ', from the cache' : ''}; `
    + `${c.num_hidden_layers ?? '?'} layers × ${c.hidden_size ?? '?'}; ${m.tags.length} tags; `
    + `licence: ${m.description?.license ?? 'not stated'}).`;
}

function renderTags(result) {
  ui.tags.replaceChildren(...result.tags.map(({ tag, p }) => {
    const li = document.createElement('li');
    li.dataset.tag = tag;
    // plain decimal (never `3e-7`), always a number in [0, 1]
    li.dataset.p = Number.isFinite(p) ? Math.min(1, Math.max(0, p)).toFixed(8) : '0';
    const name = document.createElement('span');
    name.className = 'tag';
    name.textContent = tag;
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.setAttribute('role', 'meter');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '1');
    bar.setAttribute('aria-valuenow', p.toFixed(3));
    bar.setAttribute('aria-label', tag);
    const fill = document.createElement('span');
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    bar.append(fill);
    const value = document.createElement('span');
    value.className = 'p';
    value.textContent = p.toFixed(3);
    li.append(name, bar, value);
    return li;
  }));
  ui.title.hidden = false;
}

/** One row of the file list: a button that shows the file's results, and its state. */
function fileRow(entry) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.textContent = entry.file.name;
  button.addEventListener('click', () => { if (entry.result) showResult(entry); });
  const state = document.createElement('span');
  state.className = 'file-status';
  li.append(button, state);
  entry.row = li;
  return li;
}

function updateRow(entry) {
  const li = entry.row;
  li.dataset.fileState = entry.state;
  const [button, state] = li.children;
  button.disabled = !entry.result;
  button.setAttribute('aria-current', String(entry === shown));
  state.textContent = {
    waiting: 'waiting',
    running: 'tagging…',
    done: entry.result ? `top: ${entry.result.tags.slice(0, 3).map((t) => t.tag).join(', ')}` : '',
    error: entry.error,
    cancelled: 'cancelled',
  }[entry.state];
}

function updateFiles() {
  ui.filesSection.hidden = files.length < 2;
  for (const entry of files) updateRow(entry);
}

/** Put a file's results on the page: tags, player, waveform, taggram, timing. */
function showResult(entry) {
  shown = entry;
  const { result } = entry;
  renderTags(result);
  ui.title.textContent = `Tags: ${entry.file.name}`;
  timeline.show(result, entry.file);
  const s = result.ms / 1000;
  ui.timing.textContent = `${result.seconds.toFixed(1)} s of audio tagged in ${s.toFixed(2)} s on `
    + `${entry.backend} (real-time factor ${(s / result.seconds).toFixed(3)}).`;
  updateFiles();
}

/** Add files to the queue and tag them one after another (now, or once the model is ready). */
function enqueue(list) {
  const added = Array.from(list, (file) => ({ file, state: 'waiting', result: null, error: null }));
  if (!added.length) return;
  for (const entry of added) {
    files.push(entry);
    ui.files.append(fileRow(entry));
  }
  updateFiles();
  if (body.dataset.state === 'loading') {
    ui.status.textContent = `Waiting for the model to load, then tagging ${added.length} file(s)…`;
    return;
  }
  drain();
}

async function drain() {
  if (busy) return;
  busy = true;
  clearError();
  // A new batch: the page shows its results as they come.
  shown = null;
  ui.tags.replaceChildren();
  ui.title.hidden = true;
  ui.timing.textContent = '';
  timeline.clear();
  const failed = [];
  let done = 0;
  let entry;
  while ((entry = files.find((e) => e.state === 'waiting'))) {
    entry.state = 'running';
    updateFiles();
    const waiting = files.filter((e) => e.state === 'waiting').length;
    setState('running', `Decoding ${entry.file.name}…${waiting ? ` (${waiting} more waiting)` : ''}`);
    try {
      entry.result = await tagger.tag(entry.file, { timeline: TIMELINE_SECONDS });
      entry.backend = tagger.backend;
      entry.state = 'done';
      done += 1;
      showResult(entry);
    } catch (err) {
      if (err.message === 'cancelled') {
        for (const e of files) if (e.state === 'waiting' || e.state === 'running') e.state = 'cancelled';
        updateFiles();
        ui.progress.hidden = true;
        busy = false;
        await started();
        ui.status.textContent = 'Cancelled.';
        return;
      }
      entry.state = 'error';
      entry.error = err.message;
      failed.push(entry);
      updateFiles();
    }
  }
  busy = false;
  ui.progress.hidden = true;
  if (failed.length === 1) {
    showError(failed[0].error);
  } else if (failed.length) {
    showError(`${failed.length} files could not be tagged: ${failed.map((e) => `${e.file.name}: ${e.error}`).join('; ')}`);
  } else {
    setState('done', done === 1 ? `Tags for ${shown.file.name}` : `Tagged ${done} files.`);
  }
}

/** Wait until the tagger's worker is up with its model, then say so on the page. */
async function started() {
  setState('loading', 'Loading the model…');
  for (;;) {
    const ready = tagger.ready;
    try {
      await ready;
      break;
    } catch (err) {
      // Cancelled while loading: the tagger restarted, wait for the new start.
      if (err.message === 'cancelled' && tagger.ready !== ready) continue;
      showError(err.message);
      return false;
    }
  }
  body.dataset.backend = tagger.backend;
  ui.note.textContent = `Backend: ${tagger.note}.`;
  describeModel(tagger.model);
  ui.progress.hidden = true;
  ui.timing.textContent = `Model loaded in ${(tagger.model.load_ms / 1000).toFixed(2)} s.`;
  setState('ready', 'Ready: pick one or more audio files.');
  if (files.some((e) => e.state === 'waiting')) drain();
  return true;
}

function pickModel() {
  const input = document.createElement('input');
  input.type = 'file';
  input.accept = '.safetensors';
  input.onchange = async () => {
    const file = input.files?.[0];
    if (!file || busy) return;
    clearError();
    setState('loading', `Loading ${file.name}…`);
    try {
      const model = await tagger.loadModel(file);
      describeModel({ ...model, cached: false });
      setState('ready', `Model ${file.name} loaded: pick an audio file.`);
      // files dropped while it loaded were queued: tag them now
      if (files.some((e) => e.state === 'waiting')) drain();
    } catch (err) {
      showError(err.message);
    }
  };
  input.click();
}

function main() {
  if (typeof WebAssembly !== 'object' || typeof Worker !== 'function') {
    showError('This browser cannot run the tagger: it needs WebAssembly and Web Workers.');
    return;
  }
  const asked = new URLSearchParams(location.search).get('backend');
  if (asked !== null && asked !== 'wasm' && asked !== 'webgpu') {
    showError(`?backend=${asked}: expected wasm or webgpu.`);
    return;
  }
  tagger = new MertTagger({ backend: asked ?? 'auto', onprogress });
  ui.audio.addEventListener('change', () => {
    enqueue(ui.audio.files ?? []);
    // cleared, so picking the same file again is a change too (and tags it again)
    ui.audio.value = '';
  });
  ui.cancel.addEventListener('click', () => tagger.cancel());
  ui.ownModel.addEventListener('click', pickModel);
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    enqueue(e.dataTransfer?.files ?? []);
  });
  // The page's own files for offline use (sw.js; the worker keeps the model itself), registered
  // once the model is up so that its install finds the module in the HTTP cache.
  started().then(() => navigator.serviceWorker?.register('sw.js').catch(() => {}));
}

main();
