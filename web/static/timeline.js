// The result's time views, on one time axis: the audio player, the waveform (the audio as the
// model saw it) and the taggram (tags over time), with a cursor that follows the player.
// Clicking either canvas seeks; the waveform is a slider for the keyboard (arrows: 1 s,
// Page Up/Down: 5 s, Home/End, Space: play/pause). Both canvases leave the same left margin
// for the tag names, so a column of the taggram sits above the stretch of waveform it covers.

const LABEL = 80; // px on the left for tag names (and the waveform's scale)
const ROW = 14; // px per taggram row
const WAVE_H = 72;

/** A canvas at the screen's pixel density, drawn once per size, with the cursor drawn over it. */
class View {
  constructor(canvas, height, draw) {
    this.canvas = canvas;
    this.height = height;
    this.draw = draw;
    this.base = document.createElement('canvas');
  }

  render() {
    const scale = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 600;
    this.width = width;
    this.canvas.style.height = `${this.height}px`;
    for (const c of [this.canvas, this.base]) {
      c.width = Math.round(width * scale);
      c.height = Math.round(this.height * scale);
    }
    const g = this.base.getContext('2d');
    g.scale(scale, scale);
    this.draw(g, width);
  }

  cursor(fraction) {
    const g = this.canvas.getContext('2d');
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.drawImage(this.base, 0, 0);
    if (fraction === null) return;
    const scale = window.devicePixelRatio || 1;
    const x = (LABEL + fraction * (this.width - LABEL)) * scale;
    g.fillStyle = '#d32f2f';
    g.fillRect(Math.round(x) - scale, 0, 2 * scale, this.canvas.height);
  }

  /** The time fraction under a click, or null in the label margin. */
  fractionAt(event) {
    const box = this.canvas.getBoundingClientRect();
    const x = event.clientX - box.left - LABEL;
    if (x < 0) return null;
    return Math.min(1, x / Math.max(1, box.width - LABEL));
  }
}

export class Timeline {
  constructor({ figure, audio, waveform, taggram }) {
    this.figure = figure;
    this.audio = audio;
    this.waveCanvas = waveform;
    this.taggramCanvas = taggram;
    this.result = null;
    this.position = 0; // seconds, when the player cannot play the file
    this.playable = false;
    this.url = null;
    this.frame = 0;
    this.wave = new View(waveform, WAVE_H, (g, w) => this._drawWave(g, w));
    this.taggram = new View(taggram, 0, (g, w) => this._drawTaggram(g, w));
    audio.addEventListener('loadedmetadata', () => { this.playable = true; this.update(); });
    audio.addEventListener('error', () => { this.playable = false; audio.hidden = true; });
    for (const e of ['timeupdate', 'seeked', 'pause']) audio.addEventListener(e, () => this.update());
    audio.addEventListener('play', () => this._follow());
    for (const view of [this.wave, this.taggram]) {
      view.canvas.addEventListener('click', (e) => {
        const f = view.fractionAt(e);
        if (f !== null && this.result) this.seek(f * this.result.seconds);
      });
    }
    waveform.addEventListener('keydown', (e) => this._key(e));
    new ResizeObserver(() => this.result && this._render()).observe(figure);
  }

  /** Show a result (tags, timeline, waveform) with its audio file in the player. */
  show(result, file) {
    this.result = result;
    this.position = 0;
    this.playable = false;
    if (this.url) URL.revokeObjectURL(this.url);
    this.url = file ? URL.createObjectURL(file) : null;
    this.audio.hidden = !this.url;
    if (this.url) this.audio.src = this.url;
    else this.audio.removeAttribute('src');
    this.figure.hidden = false;
    const rows = result.tags.length;
    this.taggram.height = rows * ROW + 16;
    this.taggram.canvas.hidden = !result.timeline?.length;
    this.waveCanvas.setAttribute('aria-valuemax', result.seconds.toFixed(1));
    const top = result.tags.slice(0, 3).map((t) => t.tag).join(', ');
    this.taggramCanvas.setAttribute('aria-label', `Taggram of ${result.name} over ${result.seconds.toFixed(1)} s in `
      + `${result.timeline?.length ?? 0} segments; strongest tags: ${top}.`);
    this._render();
  }

  clear() {
    this.result = null;
    this.audio.pause();
    this.figure.hidden = true;
  }

  time() {
    return this.playable ? this.audio.currentTime : this.position;
  }

  seek(seconds) {
    if (!this.result) return;
    const t = Math.max(0, Math.min(seconds, this.result.seconds));
    this.position = t;
    if (this.playable) this.audio.currentTime = Math.min(t, this.audio.duration || t);
    this.update();
  }

  update() {
    if (!this.result) return;
    const t = this.time();
    const f = this.result.seconds > 0 ? Math.min(1, t / this.result.seconds) : 0;
    this.wave.cursor(f);
    if (!this.taggram.canvas.hidden) this.taggram.cursor(f);
    this.waveCanvas.setAttribute('aria-valuenow', t.toFixed(1));
    this.waveCanvas.setAttribute('aria-valuetext', `${t.toFixed(1)} s of ${this.result.seconds.toFixed(1)} s`);
  }

  _render() {
    this.wave.render();
    if (!this.taggram.canvas.hidden) this.taggram.render();
    this.update();
  }

  /** Move the cursor every frame while playing (timeupdate alone comes a few times a second). */
  _follow() {
    cancelAnimationFrame(this.frame);
    const step = () => {
      this.update();
      if (!this.audio.paused) this.frame = requestAnimationFrame(step);
    };
    this.frame = requestAnimationFrame(step);
  }

  _key(e) {
    const t = this.time();
    const moves = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1, PageDown: -5, PageUp: 5 };
    if (e.key in moves) this.seek(t + moves[e.key]);
    else if (e.key === 'Home') this.seek(0);
    else if (e.key === 'End') this.seek(this.result?.seconds ?? 0);
    else if ((e.key === ' ' || e.key === 'Enter') && this.playable) {
      if (this.audio.paused) this.audio.play().catch(() => {});
      else this.audio.pause();
    } else return;
    e.preventDefault();
  }

  _drawWave(g, width) {
    const { waveform, seconds } = this.result;
    const color = getComputedStyle(document.body).color;
    const mid = WAVE_H / 2;
    const plot = width - LABEL;
    g.fillStyle = color;
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    g.fillText('waveform', 0, mid);
    g.globalAlpha = 0.25;
    g.fillRect(LABEL, mid, plot, 1);
    g.globalAlpha = 1;
    const n = waveform?.min?.length ?? 0;
    if (!n) return;
    let peak = 1e-9;
    for (let i = 0; i < n; i += 1) peak = Math.max(peak, -waveform.min[i], waveform.max[i]);
    // One column per pixel: the extremes of the buckets it covers.
    const per = (seconds * waveform.rate) / plot;
    g.fillStyle = getComputedStyle(document.body).getPropertyValue('--bar').trim() || '#2f7fd8';
    for (let x = 0; x < plot; x += 1) {
      const a = Math.floor(x * per);
      const b = Math.min(n, Math.max(a + 1, Math.floor((x + 1) * per)));
      if (a >= n) break;
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = a; i < b; i += 1) {
        lo = Math.min(lo, waveform.min[i]);
        hi = Math.max(hi, waveform.max[i]);
      }
      const y0 = mid - (hi / peak) * (mid - 2);
      const y1 = mid - (lo / peak) * (mid - 2);
      g.fillRect(LABEL + x, y0, 1, Math.max(1, y1 - y0));
    }
  }

  _drawTaggram(g, width) {
    const result = this.result;
    const segments = result.timeline;
    const rows = result.tags.map(({ tag }) => result.names.indexOf(tag));
    const color = getComputedStyle(document.body).color;
    const end = result.seconds; // the waveform's axis (the last frame ends a little before)
    const plot = width - LABEL;
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    rows.forEach((k, r) => {
      g.fillStyle = color;
      g.fillText(result.names[k], 0, r * ROW + ROW / 2);
      for (const s of segments) {
        const x0 = LABEL + (s.start / end) * plot;
        const x1 = LABEL + (s.end / end) * plot;
        g.fillStyle = `rgba(47, 127, 216, ${s.p[k].toFixed(3)})`;
        g.fillRect(x0, r * ROW + 1, Math.max(x1 - x0 - 1, 1), ROW - 2);
      }
    });
    g.fillStyle = color;
    g.fillText('0 s', LABEL, rows.length * ROW + 8);
    const label = `${end.toFixed(1)} s`;
    g.fillText(label, width - g.measureText(label).width, rows.length * ROW + 8);
  }
}
