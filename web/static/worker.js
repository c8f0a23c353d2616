// The model's thread: every numeric step runs in mert-web (Rust compiled to wasm32); this file
// only moves bytes — picking the backend, fetching and caching the model, relaying progress —
// so the page never freezes. Requests: {id, type: 'start' | 'model' | 'tag' | 'pcm', ...}; answers:
// {id, type: 'result', result} or {id, type: 'error', message, fatal}; progress: {type: 'progress'}.
// 'pcm' tags audio the page decoded with the browser (formats the kit's decoder lacks).
import init, { init_backend, load_model, tag, tag_file, tag_pcm, last_panic } from './pkg/mert-web.js';

const wasm = init();
const CACHE = 'mert-models-v1';

const post = (msg) => self.postMessage(msg);
const progress = (p) => post({ type: 'progress', progress: p });

function message(err) {
  if (err instanceof WebAssembly.RuntimeError) {
    return `the model crashed: ${last_panic() ?? err.message}`;
  }
  return String(err?.message ?? err).split('\n')[0];
}

/** WebGPU when the browser has an adapter (unless `wasm` is asked for), else WASM on the CPU. */
async function chooseBackend(requested) {
  if (requested === 'wasm') {
    return { backend: await init_backend('wasm'), note: 'WASM on the CPU (requested)' };
  }
  let reason = null;
  const gpu = self.navigator.gpu;
  if (!gpu) {
    reason = 'this browser has no WebGPU';
  } else {
    try {
      if (!(await gpu.requestAdapter())) reason = 'the browser offers no WebGPU adapter';
    } catch (err) {
      reason = `no WebGPU adapter: ${message(err)}`;
    }
  }
  if (!reason) {
    try {
      const backend = await init_backend('webgpu');
      return { backend, note: requested === 'webgpu' ? 'WebGPU (requested)' : 'WebGPU' };
    } catch (err) {
      if (err instanceof WebAssembly.RuntimeError) throw err;
      reason = message(err);
    }
  }
  if (requested === 'webgpu') throw new Error(`WebGPU was requested but is unavailable: ${reason}`);
  return { backend: await init_backend('wasm'), note: `WASM on the CPU: ${reason}` };
}

async function sha256(bytes) {
  if (!self.crypto?.subtle) return null;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function intact(bytes, manifest) {
  if (bytes.length !== manifest.bytes) return false;
  const sum = await sha256(bytes);
  return sum === null || sum === manifest.sha256;
}

async function download(url, expected) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url.pathname}: HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || expected;
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    progress({ stage: 'download', loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

/** The page's default model: from the Cache API when its checksum still matches, else fetched. */
async function defaultModel() {
  const manifestUrl = new URL('models/manifest.json', import.meta.url);
  const res = await fetch(manifestUrl, { cache: 'no-cache' });
  if (!res.ok) throw new Error(`models/manifest.json: HTTP ${res.status}`);
  const manifest = await res.json();
  const url = new URL(manifest.file, manifestUrl);
  const cache = self.caches ? await caches.open(CACHE).catch(() => null) : null;
  if (cache) {
    const hit = await cache.match(url);
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      if (await intact(bytes, manifest)) return { bytes, name: manifest.name, cached: true };
      await cache.delete(url);
    }
  }
  const bytes = await download(url, manifest.bytes);
  if (!(await intact(bytes, manifest))) {
    throw new Error(`${manifest.file}: the download does not match its checksum`);
  }
  if (cache) {
    await cache.put(url, new Response(bytes, { headers: { 'content-type': 'application/octet-stream' } }))
      .catch(() => {});
  }
  return { bytes, name: manifest.name, cached: false };
}

function loadModel(bytes, name) {
  const t0 = performance.now();
  const info = JSON.parse(load_model(bytes, name));
  return { ...info, name, bytes: bytes.length, load_ms: performance.now() - t0 };
}

const handlers = {
  async start({ backend, model }) {
    await wasm;
    const chosen = await chooseBackend(backend);
    const file = model ? { bytes: new Uint8Array(model.bytes), name: model.name, cached: false }
      : await defaultModel();
    return { ...chosen, model: { ...loadModel(file.bytes, file.name), cached: file.cached } };
  },
  async model({ bytes, name }) {
    await wasm;
    return loadModel(new Uint8Array(bytes), name);
  },
  async tag({ file, bytes, name, timeline }) {
    await wasm;
    const t0 = performance.now();
    const report = (p) => progress(JSON.parse(p));
    // a File is read here slice by slice (no copy of it); bytes as they are given
    const json = file ? await tag_file(file, name, timeline, report)
      : await tag(new Uint8Array(bytes), name, timeline, report);
    return { ...JSON.parse(json), name, ms: performance.now() - t0 };
  },
  async pcm({ interleaved, channels, sampleRate, name, timeline }) {
    await wasm;
    const t0 = performance.now();
    const json = await tag_pcm(interleaved, channels, sampleRate, name, timeline, (p) => progress(JSON.parse(p)));
    return { ...JSON.parse(json), name, ms: performance.now() - t0, decoder: 'browser' };
  },
};

async function handle(data) {
  try {
    const handler = handlers[data.type];
    if (!handler) throw new Error(`unknown request ${data.type}`);
    post({ id: data.id, type: 'result', result: await handler(data) });
  } catch (err) {
    post({ id: data.id, type: 'error', message: message(err), fatal: err instanceof WebAssembly.RuntimeError });
  }
}

// A trap inside the module's own tasks (an async call's continuation) escapes the request's
// promise: report it with the panic's message, so the page fails the request with it.
self.addEventListener('error', (event) => {
  const panic = last_panic();
  if (!panic) return;
  event.preventDefault();
  post({ type: 'trap', message: `the model crashed: ${panic}` });
});

// One request at a time, in order: a tag request waits for the model that `start` loads.
let queue = Promise.resolve();
self.onmessage = ({ data }) => {
  queue = queue.then(() => handle(data));
};
