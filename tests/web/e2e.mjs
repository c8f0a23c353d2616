// End-to-end test of the tagging page in headless Chromium (Debian's, driven by playwright-core):
// per backend, load the page with ?backend=B, feed the audio file through <input type=file>,
// wait for data-state=done and compare the tags with `mert tag --json` on the same file
// (same top tags, probabilities within the tolerance). Also: no request leaves the page's origin,
// without ?backend the page picks WebGPU exactly when the browser has it, the model comes from
// the Cache API on a second visit, a corrupt file is a one-line error, and a user's own model
// file (MERT_WEB_OWN_MODEL, its native tags in MERT_WEB_OWN_NATIVE) tags like natively, and
// Cancel stops a run, and a browser-recorded WebM/Opus file is tagged; several
// files are tagged in turn, each with its results; the waveform seeks the player (click and
// keyboard); and with MERT_WEB_DIST, the page served from a server of its own tags again after
// that server is shut and the browser is offline (the service worker).
// Usage: node e2e.mjs URL AUDIO NATIVE_JSON OUT_DIR BACKEND... (run by scripts/web-test).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(path.join(process.env.MERT_WEB_NODE, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');

const [url, audio, nativeJson, outDir, ...backends] = process.argv.slice(2);
const TOLERANCE = 0.02;
const TOP = 5;
const nativeTags = (file) => JSON.parse(fs.readFileSync(file, 'utf8')).tags;
const native = nativeTags(nativeJson);
const origins = new Set([new URL(url).origin]);
const flags = ['--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic',
  // The WebM/Opus fixture is recorded in the page from an AudioContext.
  '--autoplay-policy=no-user-gesture-required'];

function fail(message) {
  throw new Error(message);
}

/** Same top tags (a swap across the cut counts only beyond the tolerance) and every p close. */
function compare(page, backend, native) {
  const byTag = new Map(page.map((t) => [t.tag, t.p]));
  if (page.length !== native.length) fail(`${backend}: ${page.length} tags on the page, ${native.length} natively`);
  let maxDiff = 0;
  for (const { tag, p } of native) {
    if (!byTag.has(tag)) fail(`${backend}: tag ${tag} missing on the page`);
    maxDiff = Math.max(maxDiff, Math.abs(byTag.get(tag) - p));
  }
  if (!(maxDiff <= TOLERANCE)) fail(`${backend}: max |p - native| = ${maxDiff} > ${TOLERANCE}`);
  const cut = native[TOP - 1].p;
  const top = new Set(page.slice(0, TOP).map((t) => t.tag));
  for (const { tag, p } of native.slice(0, TOP)) {
    if (!top.has(tag) && cut - p > TOLERANCE) fail(`${backend}: native top tag ${tag} not in the page's top ${TOP}`);
  }
  return maxDiff;
}

async function waitState(page, states, timeout) {
  await page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout, polling: 100 });
  return page.evaluate(() => document.body.dataset.state);
}

async function errorText(page) {
  return page.$eval('[data-testid=error]', (e) => e.textContent.trim()).catch(() => '(no error element)');
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json',
  '.wasm': 'application/wasm' };

/** A static server of web/dist on a port of its own, so that the test can shut it. */
function serve(dir) {
  const server = http.createServer((req, res) => {
    let file = path.join(dir, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!file.startsWith(dir)) file = dir;
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!fs.existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const stat = fs.statSync(file);
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': stat.size, 'last-modified': stat.mtime.toUTCString() });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
  })));
}

const pageTags = (page) => page.$$eval('[data-testid=tags] [data-tag]',
  (els) => els.map((e) => ({ tag: e.dataset.tag, p: Number(e.dataset.p) })));

/** Two files at once: each is tagged in turn and listed; either one's results can be shown. */
async function multipleFiles(page, buffer) {
  await page.setInputFiles('input[type=file]', [
    { name: 'first.wav', mimeType: 'audio/wav', buffer },
    { name: 'second.wav', mimeType: 'audio/wav', buffer },
  ]);
  const state = await waitState(page, ['done', 'error'], 600_000);
  if (state !== 'done') fail(`two files: page state ${state}: ${await errorText(page)}`);
  const rows = await page.$$eval('[data-testid=files] li', (els) => els.map((e) => [e.querySelector('button').textContent, e.dataset.fileState]));
  const last = JSON.stringify(rows.slice(-2));
  if (last !== JSON.stringify([['first.wav', 'done'], ['second.wav', 'done']])) fail(`two files: list ${JSON.stringify(rows)}`);
  if (!(await page.isVisible('[data-testid=files]'))) fail('two files: no file list');
  let title = await page.$eval('#result-title', (e) => e.textContent);
  if (!title.includes('second.wav')) fail(`two files: the last result shown is ${title}`);
  const second = compare(await pageTags(page), 'second file', native);
  await page.click('[data-testid=files] li:nth-last-child(2) button');
  title = await page.$eval('#result-title', (e) => e.textContent);
  if (!title.includes('first.wav')) fail(`two files: picking the first shows ${title}`);
  const first = compare(await pageTags(page), 'first file', native);
  return Math.max(first, second);
}

/** The same file picked twice in a row is tagged twice (the input is cleared after a pick). */
async function sameFileTwice(page, audio) {
  for (let i = 0; i < 2; i += 1) {
    await page.evaluate(() => {
      window.__runs = 0;
      new MutationObserver(() => {
        if (document.body.dataset.state === 'running') window.__runs += 1;
      }).observe(document.body, { attributes: true, attributeFilter: ['data-state'] });
    });
    await page.setInputFiles('input[type=file]', audio);
    const state = await waitState(page, ['done', 'error'], 600_000);
    if (state !== 'done') fail(`same file, pick ${i + 1}: page state ${state}: ${await errorText(page)}`);
    const runs = await page.evaluate(() => window.__runs);
    if (runs < 1) fail(`same file, pick ${i + 1}: no run started`);
  }
}

/** The module API's edges: a bad backend throws, a terminated tagger rejects, and a cancel
 * right after tag() cancels that call. */
async function moduleEdges(page, buffer) {
  const result = await page.evaluate(async (bytes) => {
    const { MertTagger } = await import('./mert.js');
    const file = new File([new Uint8Array(bytes)], 'phrase.wav', { type: 'audio/wav' });
    const out = {};
    try { new MertTagger({ backend: 'foo' }); out.bad = 'accepted'; } catch (e) { out.bad = e.message; }
    const t = await new MertTagger({ backend: 'wasm' }).ready;
    const p = t.tag(file);
    t.cancel();
    out.cancelled = await p.then(() => 'resolved', (e) => e.message);
    await t.ready;
    t.terminate();
    const late = t.tag(file).then(() => 'resolved', (e) => e.message);
    out.terminated = await Promise.race([late, new Promise((r) => setTimeout(() => r('hung'), 10_000))]);
    return out;
  }, Array.from(buffer));
  if (!result.bad.includes("backend 'foo'")) fail(`module: backend 'foo': ${result.bad}`);
  if (result.cancelled !== 'cancelled') fail(`module: cancel right after tag: ${result.cancelled}`);
  if (result.terminated !== 'terminated') fail(`module: tag after terminate: ${result.terminated}`);
}

/** The waveform: a click seeks the player to that time, and so do the arrow keys. */
async function waveformSeeks(page) {
  if (!(await page.isVisible('[data-testid=waveform]'))) fail('no waveform');
  await page.waitForFunction(() => document.getElementById('player').readyState >= 1, null, { timeout: 10_000 })
    .catch(() => fail('the player cannot load the file'));
  const box = await page.$eval('[data-testid=waveform]', (e) => ({ width: e.clientWidth, height: e.clientHeight }));
  const seconds = Number(await page.$eval('[data-testid=waveform]', (e) => e.getAttribute('aria-valuemax')));
  const label = 80; // the tag-name margin left of the time axis
  await page.click('[data-testid=waveform]', { position: { x: label + (box.width - label) / 2, y: box.height / 2 } });
  const at = async () => page.evaluate(() => [document.getElementById('player').currentTime,
    Number(document.getElementById('waveform').getAttribute('aria-valuenow'))]);
  let [t, shown] = await at();
  if (!(Math.abs(t - seconds / 2) < 0.2 && Math.abs(shown - t) < 0.1)) fail(`waveform click: player at ${t} s, slider ${shown}, expected ${seconds / 2}`);
  await page.focus('[data-testid=waveform]');
  await page.keyboard.press('ArrowRight');
  const before = t;
  [t, shown] = await at();
  if (!(Math.abs(t - before - 1) < 0.05)) fail(`ArrowRight: player from ${before} to ${t} s`);
  await page.keyboard.press('Home');
  [t] = await at();
  if (t !== 0) fail(`Home: player at ${t} s`);
  return seconds;
}

/** Served from a server of its own, the page is cut from it and offline, and tags again. */
async function offline(context, page, dist) {
  const server = await serve(dist);
  origins.add(new URL(server.url).origin);
  try {
    await page.goto(`${server.url}?backend=wasm`);
    let state = await waitState(page, ['ready', 'error'], 120_000);
    if (state !== 'ready') fail(`offline: first visit: ${state}: ${await errorText(page)}`);
    // Installed (the page's files kept), activated and in control of the page.
    await page.waitForFunction(() => navigator.serviceWorker?.controller?.state === 'activated', null,
      { timeout: 120_000, polling: 100 }).catch(() => fail('offline: the service worker did not take control'));
  } finally {
    await server.close();
  }
  await context.setOffline(true);
  try {
    await page.reload();
    let state = await waitState(page, ['ready', 'error'], 120_000);
    if (state !== 'ready') fail(`offline: reload: ${state}: ${await errorText(page)}`);
    await page.setInputFiles('input[type=file]', audio);
    state = await waitState(page, ['done', 'error'], 600_000);
    if (state !== 'done') fail(`offline: tagging: ${state}: ${await errorText(page)}`);
    return compare(await pageTags(page), 'offline', native);
  } finally {
    await context.setOffline(false);
  }
}

async function runBackend(backend) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mert-web-chromium-'));
  const args = [...flags, ...(backend === 'webgpu' ? ['--enable-unsafe-webgpu'] : [])];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args,
    viewport: { width: 800, height: 900 },
  });
  const foreign = [];
  const local = (u) => u.startsWith('data:') || u.startsWith('blob:') || origins.has(new URL(u).origin);
  context.on('request', (r) => { if (!local(r.url())) foreign.push(r.url()); });
  await context.route('**/*', (route) => (local(route.request().url()) ? route.continue() : route.abort()));
  const page = context.pages()[0] ?? await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  try {
    await page.goto(`${url}?backend=${backend}`);
    let state = await waitState(page, ['ready', 'error'], 120_000);
    if (state !== 'ready') fail(`${backend}: page state ${state}: ${await errorText(page)}`);
    const used = await page.evaluate(() => document.body.dataset.backend);
    if (used !== backend) fail(`${backend}: data-backend is ${used}`);

    const t0 = Date.now();
    await page.setInputFiles('input[type=file]', audio);
    state = await waitState(page, ['done', 'error'], 600_000);
    const seconds = (Date.now() - t0) / 1000;
    if (state !== 'done') fail(`${backend}: page state ${state}: ${await errorText(page)}`);
    const tags = await page.$$eval('[data-testid=tags] [data-tag]',
      (els) => els.map((e) => ({ tag: e.dataset.tag, p: Number(e.dataset.p), raw: e.dataset.p })));
    for (const { tag, raw } of tags) {
      // a plain decimal in [0, 1] (never an exponent, NaN or null)
      if (!/^(0(\.\d+)?|1(\.0+)?)$/.test(raw)) fail(`${backend}: data-p of ${tag} is ${JSON.stringify(raw)}`);
    }
    const maxDiff = compare(tags, backend, native);
    if (!(await page.isVisible('[data-testid=taggram]'))) fail(`${backend}: no taggram`);
    const timing = await page.$eval('#timing', (e) => e.textContent);
    const shot = path.join(outDir, `web-${backend}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`web-test: ${backend}: ok: ${tags.length} tags, top ${tags.slice(0, 3).map((t) => `${t.tag}=${t.p.toFixed(3)}`).join(' ')}, `
      + `max |dp| vs native ${maxDiff.toExponential(2)}; ${seconds.toFixed(2)} s from upload to done; page: ${timing}`);
    console.log(`web-test: ${backend}: screenshot ${shot}`);

    // Without ?backend: WebGPU exactly when this browser has an adapter (the flag gives one).
    await page.goto(url);
    state = await waitState(page, ['ready', 'error'], 120_000);
    if (state !== 'ready') fail(`auto: page state ${state}: ${await errorText(page)}`);
    const auto = await page.evaluate(() => document.body.dataset.backend);
    if (auto !== backend) fail(`auto: data-backend is ${auto} in a browser where ${backend} is expected`);
    console.log(`web-test: ${backend}: ok: without ?backend the page chose ${auto} (${await page.$eval('#backend-note', (e) => e.textContent)})`);

    if (backend === 'webgpu') {
      // Cancel while the model runs: the worker restarts and the page is ready again.
      await page.setInputFiles('input[type=file]', audio);
      await waitState(page, ['running'], 60_000);
      await page.click('#cancel');
      state = await waitState(page, ['ready', 'error'], 120_000);
      const status = await page.$eval('#status', (e) => e.textContent);
      if (state !== 'ready' || !status.includes('Cancelled')) fail(`cancel: state ${state}, status ${status}: ${await errorText(page)}`);
      console.log('web-test: webgpu: ok: cancel while running, ready again');
    }

    if (backend === 'wasm') {
      // An unknown ?backend is an error on the page, not a silent choice.
      await page.goto(`${url}?backend=cuda`);
      state = await waitState(page, ['ready', 'error'], 60_000);
      if (state !== 'error' || !(await errorText(page)).includes('backend')) fail(`?backend=cuda: state ${state}: ${await errorText(page)}`);
      await page.goto(`${url}?backend=wasm`);
      state = await waitState(page, ['ready', 'error'], 120_000);
      if (state !== 'ready') fail(`wasm again: page state ${state}: ${await errorText(page)}`);
      // An empty file is a one-line error.
      await page.setInputFiles('input[type=file]', { name: 'empty.wav', mimeType: 'audio/wav', buffer: Buffer.alloc(0) });
      state = await waitState(page, ['done', 'error'], 60_000);
      const empty = await errorText(page);
      if (state !== 'error' || !empty.includes('empty') || empty.includes('\n')) fail(`empty file: state ${state}, error ${JSON.stringify(empty)}`);
      console.log(`web-test: wasm: ok: ?backend=cuda -> error; empty file -> "${empty}"`);
      // A second visit takes the model from the Cache API; a corrupt file is a one-line error.
      await page.reload();
      state = await waitState(page, ['ready', 'error'], 120_000);
      if (state !== 'ready') fail(`reload: page state ${state}: ${await errorText(page)}`);
      const info = await page.$eval('#model-info', (e) => e.textContent);
      if (!info.includes('from the cache')) fail(`reload: the model was not taken from the cache: ${info}`);
      await page.setInputFiles('input[type=file]', { name: 'broken.wav', mimeType: 'audio/wav', buffer: Buffer.from('RIFF not really audio') });
      state = await waitState(page, ['done', 'error'], 60_000);
      const message = await errorText(page);
      if (state !== 'error' || !message || message.includes('\n')) fail(`corrupt file: state ${state}, error ${JSON.stringify(message)}`);
      await page.setInputFiles('input[type=file]', audio);
      state = await waitState(page, ['done', 'error'], 600_000);
      if (state !== 'done') fail(`after an error: page state ${state}: ${await errorText(page)}`);
      console.log(`web-test: wasm: ok: cached model on reload; corrupt file -> "${message}"; tagging works again`);
      // WebM/Opus recorded by the browser itself: decoded by the kit (or, where its Matroska
      // reader refuses the recorder's file, by the browser) and tagged.
      const webm = await page.evaluate(async () => {
        const ctx = new AudioContext({ sampleRate: 48000 });
        await ctx.resume();
        const osc = ctx.createOscillator();
        const dest = ctx.createMediaStreamDestination();
        osc.connect(dest);
        osc.start();
        const rec = new MediaRecorder(dest.stream, { mimeType: 'audio/webm;codecs=opus' });
        const chunks = [];
        rec.ondataavailable = (e) => chunks.push(e.data);
        const stopped = new Promise((resolve) => { rec.onstop = resolve; });
        rec.start();
        await new Promise((resolve) => setTimeout(resolve, 2000));
        rec.stop();
        await stopped;
        await ctx.close();
        return Array.from(new Uint8Array(await new Blob(chunks).arrayBuffer()));
      });
      await page.setInputFiles('input[type=file]', { name: 'tone.webm', mimeType: 'audio/webm', buffer: Buffer.from(webm) });
      state = await waitState(page, ['done', 'error'], 120_000);
      if (state !== 'done') fail(`webm/opus: page state ${state}: ${await errorText(page)}`);
      const opusTags = await page.$$eval('[data-testid=tags] [data-tag]', (els) => els.length);
      if (opusTags !== native.length) fail(`webm/opus: ${opusTags} tags`);
      console.log(`web-test: wasm: ok: WebM/Opus (${webm.length} bytes) decoded and tagged`);

      const d = await multipleFiles(page, fs.readFileSync(audio));
      console.log(`web-test: wasm: ok: two files tagged in turn, each listed with its results (max |dp| vs native ${d.toExponential(2)})`);
      const seconds = await waveformSeeks(page);
      console.log(`web-test: wasm: ok: waveform of ${seconds} s: a click and the arrow keys seek the player`);
      await sameFileTwice(page, audio);
      console.log('web-test: wasm: ok: the same file picked twice in a row is tagged twice');
      await moduleEdges(page, fs.readFileSync(audio));
      console.log("web-test: wasm: ok: module API: backend 'foo' throws, cancel right after tag() cancels it, tag() after terminate() rejects");
      await page.screenshot({ path: path.join(outDir, 'web-wasm-files.png'), fullPage: true });
      await page.setViewportSize({ width: 375, height: 800 });
      await page.screenshot({ path: path.join(outDir, 'web-wasm-phone.png'), fullPage: true });
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      if (wide > 375) fail(`phone width: the page is ${wide} px wide at 375`);
      await page.setViewportSize({ width: 800, height: 900 });

      const own = process.env.MERT_WEB_OWN_MODEL;
      if (own) {
        const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.click('#own-model')]);
        await chooser.setFiles(own);
        state = await waitState(page, ['ready', 'error'], 120_000);
        if (state !== 'ready') fail(`own model: page state ${state}: ${await errorText(page)}`);
        await page.setInputFiles('input[type=file]', []);
        await page.setInputFiles('input[type=file]', audio);
        state = await waitState(page, ['done', 'error'], 600_000);
        if (state !== 'done') fail(`own model: page state ${state}: ${await errorText(page)}`);
        const ownTags = await page.$$eval('[data-testid=tags] [data-tag]',
          (els) => els.map((e) => ({ tag: e.dataset.tag, p: Number(e.dataset.p) })));
        const d = compare(ownTags, `own model ${path.basename(own)}`, nativeTags(process.env.MERT_WEB_OWN_NATIVE));
        console.log(`web-test: wasm: ok: own model ${path.basename(own)}: max |dp| vs native ${d.toExponential(2)}`);
      }
    }
    if (backend === 'wasm' && process.env.MERT_WEB_DIST) {
      const d = await offline(context, page, path.resolve(process.env.MERT_WEB_DIST));
      console.log(`web-test: wasm: ok: offline (server shut, browser offline): the page reloads from its service worker and tags (max |dp| vs native ${d.toExponential(2)})`);
    }
    if (foreign.length) fail(`${backend}: requests to other origins: ${foreign.join(', ')}`);
  } catch (e) {
    console.error(logs.slice(-30).join('\n'));
    await page.screenshot({ path: path.join(outDir, `web-${backend}-failed.png`), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

let failed = 0;
for (const backend of backends) {
  try {
    await runBackend(backend);
  } catch (e) {
    failed += 1;
    console.error(`web-test: ${backend}: FAILED: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
