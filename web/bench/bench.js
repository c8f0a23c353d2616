// The benchmark page (scripts/bench-web serves it with web/dist, onnxruntime-web's wasm files
// under ort/ and the ONNX exports of the default model's backbone and of its conv feature
// encoder): one forward pass over the first window of an audio file (as the tagger prepares
// it), of the whole backbone and of the conv feature encoder alone, each timed in the
// kit's WASM build (burn Flex, SIMD128, single-threaded) and in onnxruntime-web (wasm execution
// provider, one thread), alternating, after warm-up; medians and their ratio; and the two sides'
// outputs compared. Everything runs on this page's thread, so both sides get one core.
// The result lands in window.benchResult and in #result; body data-state = done | error.
import init, { init_backend, load_model, bench_input, bench_forward, bench_features } from '../pkg/mert-web.js';
import * as ort from '../ort/ort.wasm.min.mjs';

const params = new URLSearchParams(location.search);
const repeats = Math.max(1, Number(params.get('repeats') ?? 10));
const warmup = Math.max(1, Number(params.get('warmup') ?? 2));
const audioName = params.get('audio') ?? 'phrase.wav';
const THREADS = 1;

const status = (text) => { document.getElementById('status').textContent = text; };

async function bytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** max|a-b| / max|b|, the kit's agreement measure, and max|a-b|. */
function agreement(a, b) {
  if (a.length !== b.length) throw new Error(`outputs differ in size: ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i += 1) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { max_abs: diff, max_rel: diff / scale };
}

async function main() {
  status('Loading the kit and the model…');
  await init();
  await init_backend('wasm');
  const manifest = await (await fetch('../models/manifest.json')).json();
  const model = await bytes(`../models/${manifest.file}`);
  const info = JSON.parse(load_model(model, manifest.name));
  const rate = info.description.config.sample_rate;
  const x = bench_input(await bytes(audioName), audioName);

  status('Loading onnxruntime-web…');
  ort.env.wasm.numThreads = THREADS;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL('../ort/', import.meta.url).href;
  const session = (file) => ort.InferenceSession.create(file, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });
  const parts = {
    backbone: { kit: bench_forward, ort: await session('backbone.onnx') },
    features: { kit: bench_features, ort: await session('features.onnx') },
  };
  const out = {};
  for (const [name, part] of Object.entries(parts)) {
    status(`Timing ${name}…`);
    out[name] = await timePart(part, x);
  }
  // What the conv feature encoder leaves: the projection, positional conv and the layers.
  out.rest = {
    kit_median_ms: out.backbone.kit_median_ms - out.features.kit_median_ms,
    ort_median_ms: out.backbone.ort_median_ms - out.features.ort_median_ms,
  };
  out.rest.ratio = out.rest.kit_median_ms / out.rest.ort_median_ms;
  return {
    model: manifest.name,
    audio: audioName,
    samples: x.length,
    seconds: x.length / rate,
    output: out.backbone.dims,
    threads: { kit: 1, ort: THREADS, crossOriginIsolated: self.crossOriginIsolated === true },
    ort_version: ort.env.versions?.web ?? null,
    repeats,
    warmup,
    ...out,
  };
}

/** Warm up, check the two outputs agree, then time both sides alternately. */
async function timePart(part, x) {
  const runKit = () => part.kit(x);
  const runOrt = async () => {
    const input = new ort.Tensor('float32', x, [1, x.length]);
    const out = await part.ort.run({ [part.ort.inputNames[0]]: input });
    return out[part.ort.outputNames[0]];
  };
  let kitOut = null;
  let ortOut = null;
  for (let i = 0; i < warmup; i += 1) {
    kitOut = await runKit();
    ortOut = await runOrt();
  }
  const check = agreement(kitOut, ortOut.data);
  // Alternate the two so that load from elsewhere on the machine falls on both alike.
  const kitMs = [];
  const ortMs = [];
  for (let i = 0; i < repeats; i += 1) {
    let t0 = performance.now();
    await runKit();
    kitMs.push(performance.now() - t0);
    t0 = performance.now();
    await runOrt();
    ortMs.push(performance.now() - t0);
  }
  const kit = median(kitMs);
  const onnx = median(ortMs);
  return {
    dims: ortOut.dims,
    kit_ms: kitMs,
    ort_ms: ortMs,
    kit_median_ms: kit,
    ort_median_ms: onnx,
    ratio: kit / onnx,
    // Each kit run against the onnxruntime-web run right after it: steadier under outside load.
    pair_ratio_median: median(kitMs.map((k, i) => k / ortMs[i])),
    ...check,
  };
}

main().then((result) => {
  window.benchResult = result;
  document.getElementById('result').textContent = JSON.stringify(result, null, 2);
  const b = result.backbone;
  status(`Done: kit ${b.kit_median_ms.toFixed(1)} ms, onnxruntime-web ${b.ort_median_ms.toFixed(1)} ms (ratio ${b.ratio.toFixed(2)}).`);
  document.body.dataset.state = 'done';
}, (err) => {
  window.benchResult = { error: String(err?.message ?? err) };
  status(`Error: ${window.benchResult.error}`);
  document.body.dataset.state = 'error';
});
