// The JS module API: a tagger whose model runs in a Web Worker (mert-core compiled to WASM,
// on WebGPU or the CPU). Without the demo page:
//
//   import { MertTagger } from './mert.js';
//   const tagger = await new MertTagger({ backend: 'auto' }).ready;
//   const { tags } = await tagger.tag(file);   // [{tag, p}], highest first
//   const { timeline } = await tagger.tag(file, { timeline: 1 });   // a taggram, 1 s segments
//
// `backend`: 'auto' (WebGPU when available, else WASM), 'webgpu' or 'wasm' (anything else throws).
// `onprogress(event)`: {stage: 'download', loaded, total} | {stage: 'decoded', seconds, windows}
// | {stage: 'windows', done, total}.

const UNDECODABLE = /unsupported|unrecognised|not supported|no audio track/;

/** Decode with the browser, at 48 kHz (Opus's own rate, so Opus is not resampled here). */
async function browserDecode(bytes) {
  const audio = await new OfflineAudioContext(1, 1, 48000).decodeAudioData(bytes);
  const channels = audio.numberOfChannels;
  const interleaved = new Float32Array(audio.length * channels);
  for (let c = 0; c < channels; c += 1) {
    const data = audio.getChannelData(c);
    for (let i = 0; i < data.length; i += 1) interleaved[i * channels + c] = data[i];
  }
  return { interleaved, channels, sampleRate: audio.sampleRate };
}

const BACKENDS = ['auto', 'webgpu', 'wasm'];
/** Largest file the tagger takes: symphonia asserts each seek spans less than isize::MAX bytes, 2 GiB in 32-bit WASM. */
const MAX_FILE_BYTES = 2 ** 31 - 1;

export class MertTagger {
  constructor({ backend = 'auto', onprogress = null } = {}) {
    if (!BACKENDS.includes(backend)) {
      throw new Error(`backend '${backend}': expected ${BACKENDS.join(', ')}`);
    }
    this.requested = backend;
    this.onprogress = onprogress;
    this.backend = null;
    this.note = '';
    this.model = null;
    this._userModel = null;
    this._pending = new Map();
    this._next = 0;
    this._generation = 0;
    this._fellBack = '';
    this.ready = this._start();
  }

  _start() {
    this.worker = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
    this.worker.onmessage = ({ data }) => this._receive(data);
    this.worker.onerror = (e) => {
      e.preventDefault();
      this._failAll(e.message || 'the model worker failed to start');
    };
    const backend = this.backend ?? this.requested;
    return this._call('start', { backend, model: this._userModel }).then((r) => {
      this.backend = r.backend;
      this.note = this._fellBack ? `${r.note}; ${this._fellBack}` : r.note;
      this.model = r.model;
      return this;
    }, (err) => {
      // A trap while starting on WebGPU (a driver fault, a lost device): with 'auto', start
      // once more on the CPU path instead of retrying the same thing.
      if (err.fatal && this.requested === 'auto' && this.backend !== 'wasm') {
        this.worker.terminate();
        this.backend = 'wasm';
        this._fellBack = `WebGPU failed to start (${err.message})`;
        return this._start();
      }
      throw err;
    });
  }

  _call(type, payload = {}, transfer = []) {
    if (this._terminated) return Promise.reject(new Error('terminated'));
    const id = ++this._next;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, type });
      this.worker.postMessage({ id, type, ...payload }, transfer);
    });
  }

  _receive(msg) {
    if (msg.type === 'progress') {
      this.onprogress?.(msg.progress);
      return;
    }
    if (msg.type === 'trap') {
      // the worker is unusable: fail what is pending with the panic's message, start afresh
      const pending = [...this._pending.values()];
      this._pending.clear();
      this._restart();
      for (const call of pending) call.reject(new Error(msg.message));
      return;
    }
    const call = this._pending.get(msg.id);
    if (!call) return;
    this._pending.delete(msg.id);
    if (msg.type === 'result') {
      call.resolve(msg.result);
      return;
    }
    const err = new Error(msg.message);
    err.fatal = Boolean(msg.fatal);
    // A trap leaves the worker unusable: replace it, except when starting it trapped (that is
    // handled in `_start`, which must not loop).
    if (msg.fatal && call.type !== 'start') this._restart();
    call.reject(err);
  }

  _failAll(message) {
    for (const call of this._pending.values()) call.reject(new Error(message));
    this._pending.clear();
  }

  _restart() {
    this._generation += 1;
    this.worker.terminate();
    this._failAll('cancelled');
    this.ready = this._start();
    this.ready.catch(() => {});
  }

  /**
   * Tag an audio `File` (or Blob with a name): {tags: [{tag, p}], seconds, ms, name, names,
   * timeline: [{start, end, p: [...in the order of names]}], waveform: {rate, min, max}}, the
   * timeline in segments of `timeline` seconds (0: none), the waveform as the peaks of the audio
   * the model saw, `rate` buckets per second.
   */
  async tag(file, { timeline = 0 } = {}) {
    // (the generation before waiting: a cancel() right after this call cancels it)
    const generation = this._generation;
    this._alive();
    await this.ready;
    if (generation !== this._generation) throw new Error('cancelled');
    const name = file.name ?? 'audio';
    if (file.size > MAX_FILE_BYTES) {
      throw new Error(`${name}: ${(file.size / 2 ** 30).toFixed(2)} GiB; the browser tagger reads files up to 2 GiB (use the mert command-line tool)`);
    }
    try {
      // the worker reads the file in slices: no copy of it here
      return await this._call('tag', { file, name, timeline });
    } catch (err) {
      // A file the kit's readers refuse: the browser decodes (the file is read again rather
      // than kept twice in memory), the kit does the rest.
      if (typeof OfflineAudioContext !== 'function' || !UNDECODABLE.test(err.message)) throw err;
      let pcm;
      try {
        pcm = await browserDecode(await file.arrayBuffer());
      } catch (browserErr) {
        throw new Error(`${err.message} (the browser could not decode it either: ${browserErr.message || browserErr.name})`);
      }
      if (generation !== this._generation) throw new Error('cancelled');
      return this._call('pcm', { ...pcm, name, timeline }, [pcm.interleaved.buffer]);
    }
  }

  _alive() {
    if (this._terminated) throw new Error('terminated');
  }

  /** Replace the model with a kit model file (a `.safetensors` with a tagging head). */
  async loadModel(file) {
    this._alive();
    await this.ready;
    const bytes = await file.arrayBuffer();
    const model = await this._call('model', { bytes: bytes.slice(0), name: file.name }, []);
    this._userModel = { bytes, name: file.name };
    this.model = model;
    return model;
  }

  /** Stop the work in flight (its promise rejects with 'cancelled'); the tagger restarts. */
  cancel() {
    this._alive();
    this._restart();
    return this.ready;
  }

  /** Stop the worker for good: calls in flight and later ones reject with 'terminated'. */
  terminate() {
    this._terminated = true;
    this.worker.terminate();
    this._failAll('terminated');
  }
}
