// Drives the benchmark page (web/bench/) in headless Chromium (Debian's, through playwright-core)
// and prints its result: the kit's WASM build and onnxruntime-web on the same backbone and input,
// medians, their ratio, and how far the two last hidden states are apart. Fails when the page
// requests anything from another origin or the outputs disagree beyond MAX_REL.
// Usage: node bench.mjs URL OUT_JSON (run by scripts/bench-web).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(path.join(process.env.MERT_WEB_NODE, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');

const [url, outJson] = process.argv.slice(2);
const MAX_REL = 1e-4;
const origin = new URL(url).origin;
const flags = ['--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic'];

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mert-web-bench-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: flags,
});
const foreign = [];
const local = (u) => u.startsWith('data:') || u.startsWith('blob:') || new URL(u).origin === origin;
context.on('request', (r) => { if (!local(r.url())) foreign.push(r.url()); });
await context.route('**/*', (route) => (local(route.request().url()) ? route.continue() : route.abort()));
const page = context.pages()[0] ?? await context.newPage();
const logs = [];
page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
let code = 0;
try {
  await page.goto(url);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null,
    { timeout: 600_000, polling: 200 });
  const r = await page.evaluate(() => window.benchResult);
  if (r.error) throw new Error(r.error);
  fs.writeFileSync(outJson, `${JSON.stringify(r, null, 2)}\n`);
  const ms = (xs) => xs.map((x) => x.toFixed(1)).join(' ');
  console.log(`bench-web: ${r.model}, ${r.audio}: first window ${r.samples} samples (${r.seconds.toFixed(2)} s) -> last hidden state [${r.output.join(', ')}]`);
  console.log(`bench-web: threads: kit ${r.threads.kit}, onnxruntime-web ${r.threads.ort} (crossOriginIsolated ${r.threads.crossOriginIsolated}); onnxruntime-web ${r.ort_version}, wasm execution provider; ${r.repeats} repeats after ${r.warmup} warm-up, alternating`);
  for (const [name, what] of [['features', 'conv feature encoder'], ['backbone', 'whole backbone']]) {
    const p = r[name];
    console.log(`bench-web: ${what}: kit (WASM, burn Flex) ms: ${ms(p.kit_ms)}`);
    console.log(`bench-web: ${what}: onnxruntime-web (wasm) ms: ${ms(p.ort_ms)}`);
    console.log(`bench-web: ${what}: median kit ${p.kit_median_ms.toFixed(1)} ms, onnxruntime-web ${p.ort_median_ms.toFixed(1)} ms, `
      + `ratio ${p.ratio.toFixed(3)} (median of paired ratios ${p.pair_ratio_median.toFixed(3)}); `
      + `outputs: max|kit-ort|/max|ort| = ${p.max_rel.toExponential(2)} (max|kit-ort| = ${p.max_abs.toExponential(2)})`);
    if (!(p.max_rel <= MAX_REL)) throw new Error(`${what}: the outputs disagree: ${p.max_rel} > ${MAX_REL}`);
  }
  console.log(`bench-web: the rest (projection, positional conv, layers; backbone - features): kit ${r.rest.kit_median_ms.toFixed(1)} ms, `
    + `onnxruntime-web ${r.rest.ort_median_ms.toFixed(1)} ms, ratio ${r.rest.ratio.toFixed(3)}`);
  console.log(`bench-web: ratio kit/onnxruntime-web = ${r.backbone.ratio.toFixed(3)} (whole backbone, medians)`);
  if (foreign.length) throw new Error(`requests to other origins: ${foreign.join(', ')}`);
} catch (e) {
  console.error(logs.slice(-30).join('\n'));
  console.error(`bench-web: FAILED: ${e.message}`);
  code = 1;
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
