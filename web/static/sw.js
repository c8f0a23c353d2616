// The page's service worker: the page's own files keep working offline after the first visit.
// Network first (a rebuilt page is picked up at once), the last good copy when the network
// fails. The model file is not kept here: the model worker keeps it with the Cache API itself
// (checked against models/manifest.json, which is kept here). Same-origin GETs only.
const CACHE = 'mert-page-v1';
const PAGE = ['./', 'index.html', 'style.css', 'app.js', 'timeline.js', 'mert.js', 'worker.js',
  'pkg/mert-web.js', 'pkg/mert-web_bg.wasm', 'models/manifest.json'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(PAGE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith('mert-page-') && k !== CACHE)
      .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

/** Same file as the copy kept (same size and date): skip rewriting it (the module is 26 MB). */
function same(a, b) {
  const keys = ['content-length', 'last-modified', 'etag'];
  return keys.some((k) => a.headers.get(k)) && keys.every((k) => a.headers.get(k) === b.headers.get(k));
}

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  // Query strings (?backend=wasm) choose behaviour, not files.
  const key = new URL(request.url);
  key.search = '';
  try {
    const response = await fetch(request);
    if (response.ok && response.status === 200) {
      const kept = await cache.match(key);
      if (!kept || !same(kept, response)) await cache.put(key, response.clone()).catch(() => {});
    }
    return response;
  } catch (err) {
    const kept = await cache.match(key);
    if (kept) return kept;
    throw err;
  }
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  if (url.pathname.endsWith('.safetensors')) return;
  event.respondWith(networkFirst(request));
});
