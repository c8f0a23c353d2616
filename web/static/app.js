// The demo page: wires the file input, the progress bar and the results to a MertTagger.
// Contract (DESIGN.md, "Web contract"): body data-state = loading | ready | running | done |
// error; body data-backend = webgpu | wasm; ?backend=wasm|webgpu forces one; tags in
// [data-testid=tags], one element per tag with data-tag and data-p; errors in [data-testid=error].
import { MertTagger } from './mert.js';

const $ = (id) => document.getElementById(id);
const body = document.body;
const ui = {
  audio: $('audio'), cancel: $('cancel'), ownModel: $('own-model'), status: $('status'),
  progress: $('progress'), note: $('backend-note'), timing: $('timing'), error: $('error'),
  tags: $('tags'), title: $('result-title'), modelInfo: $('model-info'),
  taggram: $('taggram'), taggramFigure: $('taggram-figure'),
};
const TIMELINE_SECONDS = 1;

let tagger = null;
let pending = null; // a file picked before the model was ready
let busy = false;

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
    li.dataset.p = String(p);
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

/** Tags (rows, in the ranking's order) over time (columns) as a heat map on a canvas. */
function renderTaggram(result) {
  const segments = result.timeline;
  if (!segments?.length) return;
  ui.taggramFigure.hidden = false;
  const rows = result.tags.map(({ tag }) => result.names.indexOf(tag));
  const canvas = ui.taggram;
  const scale = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const label = 80;
  const rowH = 14;
  canvas.style.height = `${rows.length * rowH + 16}px`;
  canvas.width = width * scale;
  canvas.height = (rows.length * rowH + 16) * scale;
  const g = canvas.getContext('2d');
  g.scale(scale, scale);
  const colW = (width - label) / segments.length;
  const color = getComputedStyle(document.body).color;
  g.font = '11px system-ui, sans-serif';
  g.textBaseline = 'middle';
  rows.forEach((k, r) => {
    g.fillStyle = color;
    g.fillText(result.names[k], 0, r * rowH + rowH / 2);
    segments.forEach((s, c) => {
      g.fillStyle = `rgba(47, 127, 216, ${s.p[k].toFixed(3)})`;
      g.fillRect(label + c * colW, r * rowH + 1, Math.max(colW - 1, 1), rowH - 2);
    });
  });
  g.fillStyle = color;
  g.fillText('0 s', label, rows.length * rowH + 8);
  const end = `${segments[segments.length - 1].end.toFixed(1)} s`;
  g.fillText(end, width - g.measureText(end).width, rows.length * rowH + 8);
  const top = rows.slice(0, 3).map((k) => result.names[k]).join(', ');
  canvas.setAttribute('aria-label', `Taggram over ${end} in ${segments.length} segments; strongest tags: ${top}.`);
}

async function run(file) {
  if (busy) return;
  if (body.dataset.state === 'loading') {
    pending = file;
    ui.status.textContent = `Waiting for the model to load, then tagging ${file.name}…`;
    return;
  }
  busy = true;
  clearError();
  ui.tags.replaceChildren();
  ui.title.hidden = true;
  ui.taggramFigure.hidden = true;
  ui.timing.textContent = '';
  setState('running', `Decoding ${file.name}…`);
  try {
    const result = await tagger.tag(file, { timeline: TIMELINE_SECONDS });
    renderTags(result);
    renderTaggram(result);
    const s = result.ms / 1000;
    ui.timing.textContent = `${result.seconds.toFixed(1)} s of audio tagged in ${s.toFixed(2)} s on `
      + `${tagger.backend} (real-time factor ${(s / result.seconds).toFixed(3)}).`;
    ui.progress.hidden = true;
    setState('done', `Tags for ${file.name}`);
  } catch (err) {
    if (err.message === 'cancelled') {
      ui.progress.hidden = true;
      await started();
      ui.status.textContent = 'Cancelled.';
    } else {
      showError(err.message);
    }
  } finally {
    busy = false;
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
  setState('ready', 'Ready: pick an audio file.');
  if (pending) {
    const file = pending;
    pending = null;
    run(file);
  }
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
    const file = ui.audio.files?.[0];
    if (file) run(file);
  });
  ui.cancel.addEventListener('click', () => tagger.cancel());
  ui.ownModel.addEventListener('click', pickModel);
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    const file = e.dataTransfer?.files?.[0];
    if (file) run(file);
  });
  started();
}

main();
