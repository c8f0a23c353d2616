#!/usr/bin/env python3
"""Build a labelled multi-label music-tagging dataset offline (see scripts/TAG_DATA.md).

Public-domain scores from music21's bundled corpus (Bach chorales, O'Neill's Irish tunes, Essen
German folk songs) are re-orchestrated with General MIDI programs, given a tempo, optionally a GM
drum part, written to MIDI by this script and rendered with fluidsynth and an open GM soundfont.

Outputs under --out (default $HOME/.cache/mert-data/tags):
  audio/<split>/<split>_NNNNN.wav  mono, 24 kHz, 16-bit, exactly --seconds long
  audio/<split>/<split>_NNNNN.json the clip's manifest entry (written before the wav)
  train.csv valid.csv test.csv     rows `path,tag1;tag2;...`, no header; path is RELATIVE TO THE
                                   CSV's FOLDER (e.g. audio/train/train_00000.wav)
  manifest.jsonl                   one JSON object per clip
  cache/catalog-*.json.gz          the parsed corpus (note lists), so reruns skip parsing
  config.json                      seed and clip length the folder was built with

Deterministic given --seed (and the pinned music21 version, which fixes the corpus).
Resumable: a clip whose wav exists is not rendered again; every file is written atomically.
Run with the venv made by scripts/setup-data:
  "$HOME/.cache/mert-data-venv/bin/python" scripts/make_tag_data.py
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

SR = 24000
CATALOG_VERSION = 4
SPLITS = ("train", "valid", "test")
# Pieces (groups of pieces sharing a tune) are split by a seeded hash BEFORE any clip is sampled.
# Fixed fractions, so that changing --train/--valid/--test never moves a piece between splits.
SPLIT_FRACTIONS = {"train": 0.68, "valid": 0.12, "test": 0.20}

SF2, SF3 = "/usr/share/sounds/sf2", "/usr/share/sounds/sf3"
SOUNDFONTS = {
    # file name -> (path, fluidsynth gain). The gain only keeps fluidsynth's float output below
    # full scale (it is halved on a clip); every clip is then normalised to its planned loudness.
    "FluidR3_GM.sf2": (f"{SF2}/FluidR3_GM.sf2", 0.30),                      # MIT
    "MuseScore_General_Lite.sf3": (f"{SF3}/MuseScore_General_Lite.sf3", 0.30),  # MIT
    "sf_GMbank.sf2": (f"{SF2}/sf_GMbank.sf2", 0.30),                        # public domain
    "TimGM6mb.sf2": (f"{SF2}/TimGM6mb.sf2", 0.20),                          # GPL-2, louder
}
# Train/valid clips take one of three soundfonts (a seeded deck per split, in equal shares), so
# a head learns instrument families across timbres; the test split uses a fourth that training
# never hears.
SPLIT_SOUNDFONTS = {
    "train": ["FluidR3_GM.sf2", "MuseScore_General_Lite.sf3", "sf_GMbank.sf2"],
    "valid": ["FluidR3_GM.sf2", "MuseScore_General_Lite.sf3", "sf_GMbank.sf2"],
    "test": ["TimGM6mb.sf2"],
}
SPLIT_KIND = {"train": "A", "valid": "A", "test": "B"}

# GM programs (0-based) per family, partitioned in two: set A for train/valid, set B for test, so
# that test clips use instrument presets the training data never used. Odd members are left out:
# strings 46 harp, 47 timpani, 50/51 synth strings; brass 62/63 synth brass; guitar 31 harmonics;
# woodwind 76 blown bottle, 77 shakuhachi; synth 85 voice lead, 91 choir pad, 92 bowed pad
# (confusable with choir/strings).
FAMILIES = {
    "piano":    {"A": [0, 2, 4, 6], "B": [1, 3, 5, 7]},
    "organ":    {"A": [16, 19, 21, 22], "B": [17, 18, 20, 23]},
    "guitar":   {"A": [24, 27, 28, 29], "B": [25, 26, 30]},
    "strings":  {"A": [40, 42, 45, 48], "B": [41, 43, 44, 49]},
    "choir":    {"A": [52, 54], "B": [53]},
    "brass":    {"A": [56, 57, 61], "B": [58, 59, 60]},
    "woodwind": {"A": [64, 66, 68, 71, 73, 74, 79], "B": [65, 67, 69, 70, 72, 75, 78]},
    "synth":    {"A": [80, 82, 84, 87, 88, 90, 94], "B": [81, 83, 86, 89, 93, 95]},
}
FAMILY_NAMES = list(FAMILIES)
POLYPHONIC_SOLO = ("piano", "organ", "guitar")  # may play a whole chorale as a keyboard reduction
TAGS = FAMILY_NAMES + ["drums", "major", "minor", "slow", "fast", "solo", "ensemble"]

# Comfortable MIDI ranges (lo, hi) used to place each part in its instrument's register.
RANGES = {p: (21, 108) for p in range(0, 6)}
RANGES.update({6: (29, 89), 7: (29, 89)})
RANGES.update({p: (24, 96) for p in (16, 17, 18, 19, 20)})
RANGES.update({21: (41, 89), 22: (60, 84), 23: (41, 89)})
RANGES.update({p: (40, 84) for p in range(24, 31)})
RANGES.update({40: (55, 100), 41: (48, 88), 42: (36, 76), 43: (28, 60),
               44: (28, 100), 45: (28, 96), 48: (28, 100), 49: (28, 100)})
RANGES.update({p: (40, 81) for p in (52, 53, 54)})
RANGES.update({56: (54, 82), 57: (40, 72), 58: (28, 58), 59: (54, 82), 60: (41, 77),
               61: (36, 84)})
RANGES.update({64: (56, 88), 65: (49, 81), 66: (44, 76), 67: (36, 69), 68: (58, 91),
               69: (52, 81), 70: (34, 75), 71: (50, 91), 72: (74, 108), 73: (60, 96),
               74: (60, 96), 75: (60, 96), 78: (72, 100), 79: (60, 88)})
RANGES.update({p: (36, 96) for p in range(80, 96)})

TEMPO_CLASSES = {"slow": (60, 92), "mid": (104, 126), "fast": (138, 180)}  # beats per minute

# Krumhansl-Kessler key profiles (tonic first).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

ESSEN_FILES = ["altdeu10", "altdeu20", "kinder0"]  # German folk songs (Essen collection)


UMASK = os.umask(0)
os.umask(UMASK)


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------------------------
# Atomic writes

def atomic_write_bytes(path, data):
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.fchmod(fd, 0o666 & ~UMASK)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------
# Corpus -> catalog of note lists

def _strip_tempo(score):
    """The tempo trap: music21 writes its own 96 BPM mark when a part has none, and scores carry
    their own marks. Remove every MetronomeMark from every part and insert one at score level.
    (This script writes its MIDI itself from the note lists with exactly one tempo event, so this
    is belt and braces for anyone who writes the score with music21.)"""
    from music21 import tempo
    for el in list(score.recurse().getElementsByClass(tempo.TempoIndication)):
        site = el.activeSite
        if site is not None:
            site.remove(el)
    score.insert(0, tempo.MetronomeMark(number=96))


def _extract(score, corpus_name, pid, title, number=None):
    """Return a piece dict (note lists per part, top part first) or None."""
    from music21 import expressions, harmony, meter

    _strip_tempo(score)
    # Repeats are not expanded (clips loop the piece instead) and ties are merged here rather
    # than with stripTies(): both deep-copy the score and made parsing 3x slower.
    parts = list(score.parts) if score.parts else [score]
    ts = score.recurse().getElementsByClass(meter.TimeSignature).first()
    if ts is None:
        return None
    bar_ql = float(ts.barDuration.quarterLength)
    beat_ql = float(ts.beatDuration.quarterLength)
    if bar_ql <= 0 or beat_ql <= 0:
        return None
    # Pickup: the first measure may be shorter than a bar.
    pickup = 0.0
    try:
        ms = parts[0].getElementsByClass("Measure")
        if len(ms) > 1:
            m0 = ms[0]
            pickup = float(ms[1].offset) % bar_ql
            if float(m0.duration.quarterLength) >= bar_ql - 1e-6:
                pickup = 0.0
    except Exception:
        pickup = 0.0
    out_parts = []
    fermata_offsets = []
    for pi, p in enumerate(parts):
        notes = []
        open_ties = {}  # midi -> index in notes of the tied note being extended
        for n in p.flatten().notes:
            if isinstance(n, harmony.Harmony):
                continue
            if n.duration.isGrace or float(n.quarterLength) <= 0:
                continue
            off = float(n.offset)
            dur = float(n.quarterLength)
            members = list(n.notes) if n.isChord else [n]
            for x in members:
                m = int(x.pitch.midi)
                tie = x.tie.type if x.tie is not None else (n.tie.type if n.tie is not None else None)
                j = open_ties.get(m)
                if tie in ("stop", "continue") and j is not None \
                        and abs(notes[j][0] + notes[j][1] - off) < 1e-3:
                    notes[j][1] = round(off + dur - notes[j][0], 4)
                    if tie == "stop":
                        del open_ties[m]
                    continue
                notes.append([round(off, 4), round(dur, 4), m])
                if tie in ("start", "continue"):
                    open_ties[m] = len(notes) - 1
                else:
                    open_ties.pop(m, None)
            if pi == 0 and any(isinstance(e, expressions.Fermata) for e in n.expressions):
                fermata_offsets.append(round(off + dur, 4))
        if notes:
            notes.sort()
            out_parts.append(notes)
    if not out_parts:
        return None
    # Top part first (krn spines come bottom-up).
    out_parts.sort(key=lambda ns: -float(np.mean([x[2] for x in ns])))
    length = max(x[0] + x[1] for ns in out_parts for x in ns)
    return {
        "id": pid, "corpus": corpus_name, "title": (title or "").strip(), "number": number,
        "meter": ts.ratioString, "bar_ql": bar_ql, "beat_ql": beat_ql,
        "pickup_ql": round(pickup, 4), "length_ql": round(length, 4),
        "fermatas": sorted(set(fermata_offsets)), "parts": out_parts,
    }


def build_catalog(path):
    import music21
    from music21 import corpus
    pieces = []
    t0 = time.time()
    # Bach chorales.
    names = list(corpus.chorales.Iterator(returnType="filename"))
    log(f"catalog: parsing {len(names)} Bach chorales ...")
    for i, name in enumerate(names):
        try:
            s = corpus.parse(name)
            pc = _extract(s, "bach-chorales", "bach/" + name.split("/")[-1], s.metadata.bestTitle)
            if pc:
                pieces.append(pc)
        except Exception as e:  # pragma: no cover - corpus oddities
            log(f"  skip {name}: {type(e).__name__}: {e}")
        if (i + 1) % 50 == 0:
            log(f"  {i + 1}/{len(names)} chorales, {time.time() - t0:.0f} s")
    # Folk tunes: O'Neill's Music of Ireland (1850), and Essen German folk songs.
    cc = corpus.corpora.CoreCorpus()
    oneill = sorted(p for p in cc.getPaths(fileExtensions=("abc",)) if "oneills1850" in str(p))
    essen = [f"essenFolksong/{n}" for n in ESSEN_FILES]
    jobs = [("oneills1850", str(p)) for p in oneill] + [("essen", n) for n in essen]
    log(f"catalog: parsing {len(jobs)} folk-tune files ...")
    for j, (cname, fname) in enumerate(jobs):
        try:
            o = corpus.parse(fname)
        except Exception as e:
            log(f"  skip {fname}: {type(e).__name__}: {e}")
            continue
        scores = list(o.scores) if hasattr(o, "scores") else [o]
        base = os.path.splitext(os.path.basename(fname))[0]
        for k, s in enumerate(scores):
            num = s.metadata.number if s.metadata is not None else None
            pid = f"{cname}/{base}#{num if num is not None else k}"
            try:
                pc = _extract(s, cname, pid, s.metadata.bestTitle if s.metadata else "", num)
                if pc:
                    pieces.append(pc)
            except Exception as e:
                log(f"  skip {pid}: {type(e).__name__}: {e}")
        log(f"  {j + 1}/{len(jobs)} {fname}: {len(scores)} tunes, total pieces {len(pieces)},"
            f" {time.time() - t0:.0f} s")
    # Duplicate ids (e.g. tune numbers reused inside one file) get a suffix.
    seen = {}
    for pc in pieces:
        n = seen.get(pc["id"], 0)
        seen[pc["id"]] = n + 1
        if n:
            pc["id"] = f"{pc['id']}~{n}"
    cat = {"version": CATALOG_VERSION, "music21": music21.__version__, "pieces": pieces}
    atomic_write_bytes(path, gzip.compress(json.dumps(cat).encode("utf-8"), mtime=0))
    log(f"catalog: {len(pieces)} pieces in {time.time() - t0:.0f} s -> {path}")
    return cat


def load_catalog(out):
    import music21
    path = os.path.join(out, "cache", f"catalog-v{CATALOG_VERSION}-music21-{music21.__version__}.json.gz")
    if os.path.exists(path):
        with gzip.open(path, "rb") as f:
            cat = json.loads(f.read().decode("utf-8"))
        log(f"catalog: {len(cat['pieces'])} pieces from {path}")
        return cat
    return build_catalog(path)


# ----------------------------------------------------------------------------------------------
# Key / mode analysis

def pc_histogram(notes_iter):
    h = np.zeros(12)
    for off, dur, m in notes_iter:
        h[m % 12] += dur
    return h


def kk_best(h):
    """Best (tonic_pc, mode, r) by correlation with Krumhansl-Kessler profiles."""
    best = (0, "major", -2.0)
    if h.sum() <= 0:
        return best
    for t in range(12):
        r = np.roll(h, -t)
        for mode, prof in (("major", KK_MAJOR), ("minor", KK_MINOR)):
            c = float(np.corrcoef(r, prof)[0, 1])
            if c > best[2]:
                best = (t, mode, c)
    return best


def piece_mode(pc):
    """Decide whether a piece is clearly major or minor. Returns (tonic, mode, reason)."""
    bass = pc["parts"][-1]
    last = max(bass, key=lambda x: (x[0] + x[1], -x[2]))  # final (lowest) note of the lowest part
    tonic = last[2] % 12
    h = pc_histogram(x for ns in pc["parts"] for x in ns)
    if h.sum() <= 0:
        return None, None, "empty"
    rel = np.roll(h, -tonic) / h.sum()
    m3, M3, m6, M6, b7, lt = rel[3], rel[4], rel[8], rel[9], rel[10], rel[11]
    t, mode, r = kk_best(h)
    if t != tonic:
        return None, None, "key-finding tonic differs from final bass note"
    if r < 0.6:
        return None, None, "weak key correlation"
    # Thresholds are looser for part music: Bach's minor chorales end on a Picardy third and use
    # secondary dominants (some major third), raise the 6th melodically and tonicize IV (flat 7th).
    poly = len(pc["parts"]) > 1
    third_tol, alt = (0.35, 2.0) if poly else (0.15, 1.0)
    if mode == "major":
        if M3 <= 0 or m3 > third_tol * M3:
            return None, None, "third unclear"
        if b7 > alt * lt:
            return None, None, "mixolydian"
    else:
        if m3 <= 0 or M3 > third_tol * m3:
            return None, None, "third unclear"
        if M6 > alt * m6 and lt * alt < b7:
            return None, None, "dorian"
    return tonic, mode, "ok"


def melody_fingerprint(notes):
    """Transposition-invariant opening of a melody: the first 12 intervals (by onset)."""
    seq = []
    last_on = None
    for off, dur, m in notes:
        if off == last_on:
            continue  # chords: keep the first pitch
        seq.append(m)
        last_on = off
        if len(seq) > 12:
            break
    if len(seq) < 11:
        return None
    return tuple(b - a for a, b in zip(seq, seq[1:]))


# ----------------------------------------------------------------------------------------------
# Piece split (by tune groups, before any clip is sampled)

def split_pieces(pieces, seed):
    parent = list(range(len(pieces)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_key = {}
    for i, pc in enumerate(pieces):
        keys = []
        t = "".join(ch for ch in pc["title"].lower() if ch.isalnum())
        if len(t) >= 6:
            keys.append(("title", t))
        fp = melody_fingerprint(pc["parts"][0])
        if fp is not None:
            keys.append(("melody", fp))
        for k in keys:
            if k in by_key:
                union(i, by_key[k])
            else:
                by_key[k] = i
    groups = {}
    for i in range(len(pieces)):
        groups.setdefault(find(i), []).append(i)
    assign = {}
    for root, members in groups.items():
        gid = min(pieces[i]["id"] for i in members)
        h = hashlib.sha256(f"{seed}:{gid}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2.0 ** 64
        split = "test" if u < SPLIT_FRACTIONS["test"] else (
            "valid" if u < SPLIT_FRACTIONS["test"] + SPLIT_FRACTIONS["valid"] else "train")
        for i in members:
            assign[pieces[i]["id"]] = split
    return assign, len(groups)


# ----------------------------------------------------------------------------------------------
# Arrangements

def window_notes(notes, start, win, length):
    """Notes sounding in [start, start + win) in piece time, looping the piece when needed.
    Returns [rel_onset, dur, midi] with onsets relative to the window start."""
    out = []
    rep = 0
    while start + win > rep * length and rep < 8:
        shift = rep * length
        for off, dur, m in notes:
            o = off + shift - start
            if o < -1e-6 or o >= win:
                continue
            out.append([o, dur, m])
        rep += 1
    return out


def coverage_ok(parts_w, win, secs_per_ql):
    """Reject windows with long silences (rests): max gap < 1 s and >= 85 % covered."""
    iv = sorted((o, o + d) for ns in parts_w for o, d, _ in ns)
    if not iv:
        return False
    covered, gap_max, cur_end = 0.0, iv[0][0], 0.0
    cur_s, cur_e = iv[0]
    for s, e in iv[1:]:
        if s > cur_e:
            covered += cur_e - cur_s
            gap_max = max(gap_max, s - cur_e)
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    covered += min(cur_e, win) - cur_s
    gap_max = max(gap_max, win - cur_e)
    return gap_max * secs_per_ql < 1.0 and covered / win >= 0.85


def harmonize(melody, tonic, mode, length, bar_ql, beat_ql, rng):
    """Simple folk accompaniment: per harmonic window (a bar, or half a 4-beat bar), the diatonic
    triad that best covers the melody's notes there (I/IV/V preferred; the last window is the
    tonic). Returns a list of (start, dur, root_pc, [chord pcs])."""
    if mode == "major":
        chords = {"I": (0, [0, 4, 7]), "IV": (5, [5, 9, 0]), "V": (7, [7, 11, 2]),
                  "ii": (2, [2, 5, 9]), "vi": (9, [9, 0, 4])}
    else:
        chords = {"I": (0, [0, 3, 7]), "IV": (5, [5, 8, 0]), "V": (7, [7, 11, 2]),
                  "III": (3, [3, 7, 10]), "VI": (8, [8, 0, 3])}
    prior = {"I": 0.12, "IV": 0.06, "V": 0.08}
    nbeats = bar_ql / beat_ql
    hw = bar_ql / 2 if abs(nbeats - 4) < 1e-6 else bar_ql
    out = []
    t = 0.0
    prev = "I"
    while t < length - 1e-6:
        e = min(t + hw, length)
        w = np.zeros(12)
        for off, dur, m in melody:
            a, b = max(off, t), min(off + dur, e)
            if b > a:
                strong = 1.5 if abs(off - t) < 1e-6 else 1.0
                w[(m - tonic) % 12] += (b - a) * strong
        if e >= length - 1e-6:
            name = "I"
        elif w.sum() <= 0:
            name = prev
        else:
            score = {k: sum(w[p] for p in pcs) / w.sum() + prior.get(k, 0)
                     + (0.03 if k == prev else 0) for k, (_, pcs) in chords.items()}
            name = max(score, key=lambda k: (score[k], k))
        root, pcs = chords[name]
        out.append((t, e - t, (root + tonic) % 12, [(p + tonic) % 12 for p in pcs]))
        prev = name
        t = e
    return out


def accompaniment(melody, tonic, mode, pc, rng):
    """Chord part and bass part (note lists in piece time) under a folk melody."""
    bar_ql, beat_ql = pc["bar_ql"], pc["beat_ql"]
    length = pc["length_ql"]
    pickup = pc["pickup_ql"]
    # Harmonic windows aligned to the bar lines (shift by the pickup).
    shifted = [[o - pickup, d, m] for o, d, m in melody]
    windows = harmonize(shifted, tonic, mode, length - pickup, bar_ql, beat_ql, rng)
    mel_lo = min(m for _, _, m in melody)
    top = min(mel_lo - 1, 72)
    style = rng.choice(["sustained", "pulsed"])
    chord_notes, bass_notes = [], []
    for start, dur, root, pcs in windows:
        s = start + pickup
        if s < 0:
            dur += s
            s = 0.0
        if dur <= 1e-6:
            continue
        # Close-position triad just below the melody's lowest note.
        voicing = []
        for p in pcs:
            m = top - ((top - p) % 12)
            voicing.append(m)
        voicing = sorted(voicing)
        while voicing[0] < 48:
            voicing = [v + 12 for v in voicing]
        bass = 36 + ((root - 36) % 12)
        if style == "sustained":
            for v in voicing:
                chord_notes.append([s, dur, v])
            bass_notes.append([s, dur, bass])
        else:
            nb = max(1, int(round(dur / beat_ql)))
            for b in range(nb):
                o = s + b * beat_ql
                if o >= s + dur - 1e-6:
                    break
                if b == 0:
                    bass_notes.append([o, beat_ql * 0.9, bass])
                else:
                    for v in voicing:
                        chord_notes.append([o, beat_ql * 0.6, v])
                    if b % 2 == 0:
                        bass_notes.append([o, beat_ql * 0.9, bass + 7 if bass + 7 < 52 else bass - 5])
    return chord_notes, bass_notes, style


def drum_part(pc, start, win, rng):
    """A simple GM drum beat (channel 10) following the piece's meter, in window time."""
    bar_ql, beat_ql = pc["bar_ql"], pc["beat_ql"]
    nbeats = max(1, int(round(bar_ql / beat_ql)))
    sub = 3 if is_compound(pc) else 2
    sub_ql = beat_ql / sub
    hat = 51 if rng.random() < 0.3 else 42  # ride or closed hi-hat
    notes = []
    # Downbeats: pickup + k*bar in piece time (the piece loops, so use the phase only).
    phase = (pc["pickup_ql"] - start) % bar_ql
    first_bar = phase - bar_ql if phase > 1e-6 else phase
    t_bar = first_bar
    bar_i = 0
    while t_bar < win:
        for b in range(nbeats):
            tb = t_bar + b * beat_ql
            for s in range(sub):
                t = tb + s * sub_ql
                if t < -1e-6 or t >= win:
                    continue
                notes.append([t, sub_ql * 0.5, hat, 70 if s == 0 else 52])
            if tb < -1e-6 or tb >= win:
                continue
            if b == 0:
                if nbeats == 1 and bar_i % 2 == 1:
                    notes.append([tb, beat_ql * 0.5, 38, 96])
                else:
                    notes.append([tb, beat_ql * 0.5, 36, 110])
            elif nbeats == 4 and b == 2:
                notes.append([tb, beat_ql * 0.5, 36, 100])
            elif nbeats == 3:
                notes.append([tb, beat_ql * 0.5, 38, 70])
            else:
                notes.append([tb, beat_ql * 0.5, 38, 100])
        t_bar += bar_ql
        bar_i += 1
    first_down = first_bar if first_bar >= -1e-6 else first_bar + bar_ql
    if first_down < win:
        notes.append([first_down, beat_ql, 49, 100])  # crash on the first downbeat
    return notes


def is_compound(pc):
    """Compound meter: the beat divides in three (6/8, 9/8, 12/8, 3/8, 6/4, 6/2)."""
    den = int(pc["meter"].split("/")[1])
    return abs(pc["beat_ql"] / (4.0 / den) - 3.0) < 1e-6


def fit_octave(notes, prog):
    lo, hi = RANGES[prog]
    best = None
    for k in (0, -1, 1, -2, 2, -3, 3):
        inr = sum(1 for _, _, m in notes if lo <= m + 12 * k <= hi) / max(1, len(notes))
        if best is None or inr > best[1] + 1e-9:
            best = (k, inr)
    return best


def choose_program(fam, kind, notes, rng):
    """A program of the family (from the split's preset set) whose register suits the part."""
    progs = FAMILIES[fam][kind]
    fits = {p: fit_octave(notes, p) for p in progs}
    # Prefer presets that play the part in its written octave (fewest octave moves), so that
    # ensemble voices keep their order; among those, any preset.
    ok = [p for p in progs if fits[p][1] >= 0.85]
    if ok:
        best = min(abs(fits[p][0]) for p in ok)
        prog = rng.choice([p for p in ok if abs(fits[p][0]) == best])
    else:
        top = max(fits[p][1] for p in progs)
        prog = rng.choice([p for p in progs if fits[p][1] == top])
    return prog, fits[prog][0]


# ----------------------------------------------------------------------------------------------
# MIDI writer (format 0, one tempo event, channel 10 = drums)

def _vlq(n):
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def write_midi(tracks, drums, qpm, ts_num, ts_den, end_ql, div=480):
    """tracks: list of (program, [[onset_ql, dur_ql, midi, velocity], ...]); drums: same list or
    None. Returns the bytes of a standard MIDI file."""
    ev = []  # (tick, order, bytes)
    us = int(round(60_000_000 / qpm))
    ev.append((0, 0, b"\xff\x51\x03" + us.to_bytes(3, "big")))
    dd = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4, 32: 5}.get(ts_den, 2)
    ev.append((0, 0, bytes([0xFF, 0x58, 0x04, ts_num & 0x7F, dd, 24, 8])))
    chans = [c for c in range(16) if c != 9]
    allt = [(prog, notes, chans[i]) for i, (prog, notes) in enumerate(tracks)]
    if drums:
        allt.append((0, drums, 9))
    for prog, notes, ch in allt:
        ev.append((0, 1, bytes([0xC0 | ch, prog & 0x7F])))
        ev.append((0, 1, bytes([0xB0 | ch, 7, 100])))
        ev.append((0, 1, bytes([0xB0 | ch, 91, 40])))
        # Same pitch overlapping on one channel: cut the earlier note at the later onset.
        notes = sorted(notes, key=lambda x: (x[0], x[2]))
        last = {}
        cleaned = []
        for n in notes:
            on = int(round(n[0] * div))
            off = max(on + 1, int(round((n[0] + n[1]) * div)))
            key = n[2]
            if key in last:
                prev = cleaned[last[key]]
                if prev[0] == on:
                    continue
                if prev[1] > on:
                    prev[1] = max(prev[0] + 1, on)
            last[key] = len(cleaned)
            cleaned.append([on, off, n[2], n[3]])
        for on, off, m, v in cleaned:
            ev.append((on, 3, bytes([0x90 | ch, m & 0x7F, max(1, min(127, v))])))
            ev.append((off, 2, bytes([0x80 | ch, m & 0x7F, 0])))
    # All Sound Off on every channel at the window end: the clip is cut there anyway, and it
    # spares fluidsynth rendering seconds of release tails.
    win_tick = int(round(end_ql * div))
    for _, _, ch in allt:
        ev.append((win_tick, 4, bytes([0xB0 | ch, 120, 0])))
    end_tick = max([win_tick] + [t for t, _, _ in ev])
    ev.append((end_tick, 9, b"\xff\x2f\x00"))
    ev.sort(key=lambda e: (e[0], e[1]))
    body = bytearray()
    t = 0
    for tick, _, data in ev:
        body += _vlq(tick - t) + data
        t = tick
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, div)
            + b"MTrk" + struct.pack(">I", len(body)) + bytes(body))


# ----------------------------------------------------------------------------------------------
# Planning

class Planner:
    def __init__(self, pieces, modes, assign, seed, seconds):
        self.seconds = seconds
        self.seed = seed
        self.pieces = {pc["id"]: pc for pc in pieces}
        self.modes = modes
        # pools[split][source][mode] -> ordered list of piece ids (seeded order)
        self.pools = {s: {} for s in SPLITS}
        for pc in pieces:
            if pc["id"] not in modes:
                continue
            src = "chorale" if pc["corpus"] == "bach-chorales" else "folk"
            if src == "folk" and len(pc["parts"]) != 1:
                continue
            if src == "chorale" and len(pc["parts"]) != 4:
                continue  # SATB only (a few chorales carry extra instrumental parts)
            mode = modes[pc["id"]][1]
            self.pools[assign[pc["id"]]].setdefault(src, {}).setdefault(mode, []).append(pc["id"])
        for s in SPLITS:
            for src in self.pools[s]:
                for mode, ids in self.pools[s][src].items():
                    ids.sort()
                    random.Random(f"{seed}:order:{s}:{src}:{mode}").shuffle(ids)
        self.uses = {}
        self.rejects = {}

    def _deck(self, split, name, i, items):
        block = random.Random(f"{self.seed}:{name}:{split}:{i // len(items)}").sample(items, len(items))
        return block[i % len(items)]

    def _reject(self, split, source, why):
        k = f"{split}/{source}/{why}"
        self.rejects[k] = self.rejects.get(k, 0) + 1
        return None

    def pool_sizes(self):
        return {s: {src: {m: len(v) for m, v in d.items()} for src, d in self.pools[s].items()}
                for s in SPLITS}

    def starts(self, pc):
        """Candidate window starts: the beginning, then phrase starts (after fermatas, for
        chorales) or every 4th bar line (folk)."""
        c = [0.0]
        if pc["corpus"] == "bach-chorales":
            c += [f for f in pc["fermatas"] if f < pc["length_ql"] - 4 * pc["beat_ql"]]
        else:
            t = pc["pickup_ql"] + 4 * pc["bar_ql"]
            while t < pc["length_ql"] - 4 * pc["bar_ql"]:
                c.append(t)
                t += 4 * pc["bar_ql"]
        return c

    def plan_split(self, split, n):
        return [self.plan_clip(split, i) for i in range(n)]

    def plan_clip(self, split, i, alt=0):
        """Recipe of clip i. alt > 0: a replacement for a recipe whose render failed its checks;
        it depends only on (seed, split, i, alt), not on which pieces were used before."""
        rng = random.Random(f"{self.seed}:clip:{split}:{i}" + (f":alt{alt}" if alt else ""))
        kind = SPLIT_KIND[split]
        for attempt in range(200):
            # Texture and tempo class come from shuffled blocks of 20 clips with exact
            # proportions (solo 40 %; slow 40 %, middle 20 %, fast 40 %), so every split gets the
            # same mix; a clip's recipe still depends only on the seed, split and index.
            if attempt == 0:
                texture = self._deck(split, "texture", i, ["solo"] * 8 + ["ensemble"] * 12)
                tclass = self._deck(split, "tempo", i, ["slow"] * 8 + ["mid"] * 4 + ["fast"] * 8)
            else:
                texture = "solo" if rng.random() < 0.40 else "ensemble"
                u = rng.random()
                tclass = "slow" if u < 0.4 else ("mid" if u < 0.6 else "fast")
            drums = texture == "ensemble" and rng.random() < 0.45
            if texture == "solo":
                fam = rng.choice(FAMILY_NAMES)
                fams = [fam]
                v = rng.random()
                if v < 0.65:
                    source = "folk-melody"
                elif v < 0.82 or fam not in POLYPHONIC_SOLO:
                    source = "chorale-soprano"
                else:
                    source = "chorale-reduction"
            else:
                v = rng.random()
                if drums and v < 0.15:
                    source = "folk-melody"
                elif v < 0.55:
                    source = "chorale-satb"
                else:
                    source = "folk-accompanied"
                k = 1 if source == "folk-melody" else rng.choices([1, 2, 3], [0.3, 0.45, 0.25])[0]
                fams = rng.sample(FAMILY_NAMES, k)
            # Minor is rarer among clear-mode folk tunes: ask for less of it there.
            p_minor = 0.45 if source.startswith("chorale") else 0.35
            mode = "minor" if rng.random() < p_minor else "major"
            src = "chorale" if source.startswith("chorale") else "folk"
            ids = self.pools[split].get(src, {}).get(mode, [])
            if not ids:
                continue
            # Least-used piece first (seeded order breaks ties).
            if alt:
                order = rng.sample(range(len(ids)), len(ids))
            else:
                order = sorted(range(len(ids)), key=lambda j: (self.uses.get(ids[j], 0), j))
            for j in order[:40]:
                pid = ids[j]
                recipe = self._try_piece(rng, split, kind, pid, texture, source, fams, tclass,
                                         drums, mode, alt)
                if recipe is not None:
                    if not alt:
                        self.uses[pid] = self.uses.get(pid, 0) + 1
                    recipe["clip"] = f"{split}_{i:05d}"
                    recipe["soundfont"] = self._deck(split, "soundfont", i, SPLIT_SOUNDFONTS[split])
                    recipe["alt"] = alt
                    return recipe
        raise RuntimeError(f"could not plan clip {split} {i}")

    def _try_piece(self, rng, split, kind, pid, texture, source, fams, tclass, drums, mode, alt=0):
        pc = self.pieces[pid]
        tonic, _ = self.modes[pid]
        lo, hi = TEMPO_CLASSES[tclass]
        bpm = rng.randint(lo, hi)
        beat_ql = pc["beat_ql"]
        secs_per_ql = 60.0 / (bpm * beat_ql)
        win = self.seconds / secs_per_ql
        if pc["length_ql"] < 0.5 * win:
            return self._reject(split, source, "too short")  # even when repeated
        # Which parts.
        parts = pc["parts"]
        if source in ("folk-melody", "chorale-soprano"):
            layers = [("melody", parts[0])]
        elif source == "chorale-reduction":
            layers = [("reduction", [x for ns in parts for x in ns])]
        elif source == "chorale-satb":
            layers = list(zip(["soprano", "alto", "tenor", "bass"], parts))
        else:  # folk-accompanied
            chords, bass, style = accompaniment(parts[0], tonic, mode, pc, rng)
            layers = [("melody", parts[0]), (f"chords-{style}", chords)]
            if rng.random() < 0.75:
                layers.append(("bass", bass))
        transpose = rng.randint(-5, 6)
        # Window start: the beginning on a piece's first use, later other phrase starts (the
        # piece loops, like a repeated verse, when the window runs past its end). The first
        # start whose excerpt passes the checks is taken.
        starts = self.starts(pc)
        u = self.uses.get(pid, 0)
        if alt:
            r0 = rng.randrange(len(starts))
        else:
            r0 = 0 if u == 0 else (u + rng.randrange(len(starts))) % len(starts)
        why = None
        for start in starts[r0:] + starts[:r0]:
            wl = [(name, window_notes(ns, start, win, pc["length_ql"])) for name, ns in layers]
            if any(not ns for _, ns in wl):
                why = "empty part"
                continue
            if not coverage_ok([ns for _, ns in wl], win, secs_per_ql):
                why = "rests"
                continue
            # Melody note rate must be plausible: 0.7 .. 11 onsets per second.
            onsets = len({round(o, 3) for o, _, _ in wl[0][1]})
            if not (0.7 <= onsets / self.seconds <= 11.0):
                why = "note rate"
                continue
            # The excerpt itself (what is heard) must be in the piece's key and mode.
            t, m, r = kk_best(pc_histogram(x for _, ns in wl for x in ns))
            if t != tonic or m != mode or r < 0.5:
                why = "excerpt key"
                continue
            break
        else:
            return self._reject(split, source, why)
        # Instruments: each chosen family gets at least one part.
        idx = list(range(len(wl)))
        rng.shuffle(idx)
        fam_of = {}
        for j, li in enumerate(idx):
            fam_of[li] = fams[j] if j < len(fams) else rng.choice(fams)
        tracks = []
        for li, (name, ns) in enumerate(wl):
            ns = [[o, d, mm + transpose] for o, d, mm in ns]
            prog, octv = choose_program(fam_of[li], kind, ns, rng)
            vel = rng.randint(64, 100)
            if name.startswith("chords") or name == "bass":
                vel = max(50, vel - 12)
            tracks.append({"part": name, "family": fam_of[li], "program": prog,
                           "octave_shift": octv, "velocity": vel})
        dr_seed = rng.randrange(1 << 30)
        return {
            "piece": pid, "corpus": pc["corpus"], "title": pc["title"], "split": split,
            "source": source,
            "texture": texture if not drums else "ensemble", "mode": mode,
            "tonic_pc": (tonic + transpose) % 12, "transpose": transpose,
            "meter": pc["meter"], "beat_ql": beat_ql, "tempo_bpm": bpm, "tempo_class": tclass,
            "quarter_bpm": round(bpm * beat_ql, 3), "start_ql": start, "window_ql": round(win, 4),
            "drums": drums, "drum_seed": dr_seed, "parts": tracks,
            "vel_seed": rng.randrange(1 << 30), "loudness_dbfs": round(rng.uniform(-24, -16), 2),
        }


def tags_of(rec):
    fams = {p["family"] for p in rec["parts"]}
    t = [f for f in FAMILY_NAMES if f in fams]
    if rec["drums"]:
        t.append("drums")
    t.append(rec["mode"])
    if rec["tempo_class"] in ("slow", "fast"):
        t.append(rec["tempo_class"])
    nparts = len(rec["parts"]) + (1 if rec["drums"] else 0)
    t.append("solo" if nparts == 1 else "ensemble")
    return t


# ----------------------------------------------------------------------------------------------
# Rendering

def build_midi(rec, pc, seconds):
    win = rec["window_ql"]
    layers = []
    parts = pc["parts"]
    src = rec["source"]
    if src in ("folk-melody", "chorale-soprano"):
        layers = [parts[0]]
    elif src == "chorale-reduction":
        layers = [[x for ns in parts for x in ns]]
    elif src == "chorale-satb":
        layers = list(parts)
    else:
        # Re-create the accompaniment exactly as planned: same style recorded in the part name.
        style = next(p["part"] for p in rec["parts"] if p["part"].startswith("chords")).split("-")[1]
        chords, bass = _accomp_with_style(parts[0], rec, pc, style)
        layers = [parts[0], chords] + ([bass] if any(p["part"] == "bass" for p in rec["parts"]) else [])
    vrng = random.Random(rec["vel_seed"])
    tracks = []
    for layer, spec in zip(layers, rec["parts"]):
        ns = window_notes(layer, rec["start_ql"], win, pc["length_ql"])
        shift = rec["transpose"] + 12 * spec["octave_shift"]
        out = []
        for o, d, m in ns:
            mm = m + shift
            while mm < 12:
                mm += 12
            while mm > 120:
                mm -= 12
            v = spec["velocity"] + vrng.randint(-6, 6)
            out.append([o, d, mm, v])
        tracks.append((spec["program"], out))
    drums = None
    if rec["drums"]:
        drums = drum_part(pc, rec["start_ql"], win, random.Random(rec["drum_seed"]))
    num, den = (int(x) for x in rec["meter"].split("/"))
    return write_midi(tracks, drums, rec["quarter_bpm"], num, den, win + 1e-3)


def _accomp_with_style(melody, rec, pc, style):
    class Fixed:
        def choice(self, seq):
            return style
    chords, bass, _ = accompaniment(melody, (rec["tonic_pc"] - rec["transpose"]) % 12,
                                    rec["mode"], pc, Fixed())
    return chords, bass


def render(rec, pc, seconds, wav_path, tmpdir):
    sf2, gain = SOUNDFONTS[rec["soundfont"]]
    mid = build_midi(rec, pc, seconds)
    mid_path = os.path.join(tmpdir, rec["clip"] + ".mid")
    raw_path = os.path.join(tmpdir, rec["clip"] + ".raw.wav")
    with open(mid_path, "wb") as f:
        f.write(mid)
    n = int(round(seconds * SR))
    # fluidsynth writes 32-bit float (-O float): no clipping or quantization in the intermediate
    # file, whatever the preset's level. A peak at or above full scale still halves the gain.
    for attempt in range(4):
        if os.path.exists(raw_path):
            os.unlink(raw_path)
        subprocess.run(["fluidsynth", "-ni", "-q", "-O", "float", "-g", f"{gain:.4f}",
                        "-r", str(SR), "-F", raw_path, sf2, mid_path], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        x, sr = sf.read(raw_path, dtype="float64", always_2d=True)
        assert sr == SR, sr
        if not np.all(np.isfinite(x)):
            return None, "non-finite samples"
        if np.max(np.abs(x)) >= 1.0:
            gain *= 0.5
            continue
        break
    else:
        return None, "clipped"
    y = x.mean(axis=1)
    if len(y) < n:
        y = np.concatenate([y, np.zeros(n - len(y))])
    y = y[:n]
    rms = float(np.sqrt(np.mean(y ** 2)))
    if rms < 1e-4:
        return None, f"silent (rms {20 * np.log10(rms + 1e-12):.0f} dBFS)"
    # Long near-silences (e.g. a fast-decaying preset such as muted guitar or pizzicato on long
    # notes): half-second windows 35 dB or more below the clip's RMS; at most 20 % of them.
    hop = SR // 2
    seg = y[: len(y) // hop * hop].reshape(-1, hop)
    seg_rel = 20 * np.log10((np.sqrt(np.mean(seg ** 2, axis=1)) + 1e-12) / rms)
    if np.mean(seg_rel < -35) > 0.2:
        return None, "too much silence"
    # Loudness: scale to the planned RMS level, keep peaks below -0.5 dBFS.
    target = 10 ** (rec["loudness_dbfs"] / 20)
    y = y * (target / rms)
    peak = float(np.max(np.abs(y)))
    if peak > 0.944:
        y = y * (0.944 / peak)
    fade = int(0.02 * SR)
    y[-fade:] *= np.linspace(1.0, 0.0, fade)
    q = np.clip(np.round(y * 32767), -32767, 32767).astype(np.int16)
    qf = q / 32768.0
    stats = {"fluidsynth_gain": round(gain, 4),
             "rms_dbfs": round(20 * np.log10(np.sqrt(np.mean(qf ** 2)) + 1e-12), 2),
             "peak_dbfs": round(20 * np.log10(np.max(np.abs(qf)) + 1e-12), 2)}
    d = os.path.dirname(wav_path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".wav")
    os.fchmod(fd, 0o666 & ~UMASK)
    os.close(fd)
    try:
        sf.write(tmp, q, SR, subtype="PCM_16")
        rec.update(stats)
        atomic_write_text(wav_path[:-4] + ".json", json.dumps(rec, sort_keys=True) + "\n")
        os.replace(tmp, wav_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for p in (mid_path, raw_path):
        if os.path.exists(p):
            os.unlink(p)
    return rec, None


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.expanduser("~"), ".cache", "mert-data", "tags"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--valid", type=int, default=200)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="clips rendered at once (default: the CPU count)")
    ap.add_argument("--plan-only", action="store_true", help="plan and print counts, render nothing")
    args = ap.parse_args()

    if shutil.which("fluidsynth") is None:
        sys.exit("make_tag_data: fluidsynth not found; run scripts/setup-data")
    for path, _ in SOUNDFONTS.values():
        if not os.path.exists(path):
            sys.exit(f"make_tag_data: missing {path}; run scripts/setup-data")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    t_start = time.time()

    cfg = {"seed": args.seed, "seconds": args.seconds, "catalog_version": CATALOG_VERSION,
           "sample_rate": SR}
    cfg_path = os.path.join(out, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            old = json.load(f)
        if old != cfg:
            sys.exit(f"make_tag_data: {out} was built with {old}, not {cfg}; use another --out")
    else:
        atomic_write_text(cfg_path, json.dumps(cfg, sort_keys=True) + "\n")

    cat = load_catalog(out)
    pieces = cat["pieces"]
    modes = {}
    reasons = {}
    for pc in pieces:
        tonic, mode, why = piece_mode(pc)
        reasons[why] = reasons.get(why, 0) + 1
        if mode is not None:
            modes[pc["id"]] = (tonic, mode)
    log(f"mode check: {len(modes)}/{len(pieces)} pieces clearly major or minor; "
        + ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))
    eligible = [pc for pc in pieces if pc["id"] in modes]
    assign, ngroups = split_pieces(eligible, args.seed)
    planner = Planner(eligible, modes, assign, args.seed, args.seconds)
    log(f"split: {len(eligible)} pieces in {ngroups} tune groups; pools (split/source/mode):")
    for s, d in planner.pool_sizes().items():
        log(f"  {s}: {json.dumps(d, sort_keys=True)}")
    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    plans = {}
    t0 = time.time()
    for s in SPLITS:
        plans[s] = planner.plan_split(s, counts[s])
    log(f"planned {sum(counts.values())} clips in {time.time() - t0:.1f} s; candidates rejected: "
        + ", ".join(f"{k} {v}" for k, v in sorted(planner.rejects.items())))
    # Piece-level leakage check.
    used = {s: {r["piece"] for r in plans[s]} for s in SPLITS}
    assert not (used["test"] & (used["train"] | used["valid"])), "test piece leaked"
    assert not (used["valid"] & used["train"]), "valid piece leaked"
    if args.plan_only:
        print_table({s: [dict(r, tags=tags_of(r)) for r in plans[s]] for s in SPLITS})
        return

    tmpdir = tempfile.mkdtemp(prefix="mert-tags-")
    done = {s: [] for s in SPLITS}
    total = sum(counts.values())
    t_render = time.time()
    failures = []
    progress = {"k": 0, "rendered": 0}

    def make_clip(s, rec):
        """Render clip `rec` (or a replacement recipe when its render fails the checks); a
        clip already on disk is read back. Returns (manifest entry or None, error)."""
        wav = os.path.join(out, "audio", s, rec["clip"] + ".wav")
        side = wav[:-4] + ".json"
        if os.path.exists(wav) and os.path.exists(side):
            with open(side) as f:
                return json.load(f), None
        idx = int(rec["clip"].split("_")[1])
        r, err = None, None
        for alt in range(6):
            cand = rec if alt == 0 else planner.plan_clip(s, idx, alt=alt)
            cand = dict(cand, tags=tags_of(cand))
            r, err = render(cand, planner.pieces[cand["piece"]], args.seconds, wav, tmpdir)
            progress["rendered"] += 1
            if r is not None:
                break
            log(f"  {cand['clip']} alt {alt} ({cand['piece']}, {cand['source']},"
                f" programs {[p['program'] for p in cand['parts']]}): {err};"
                f" taking a replacement recipe")
        return r, err

    try:
        # fluidsynth runs as a subprocess, so threads render clips in parallel; results are
        # collected in clip order, so the outputs do not depend on --jobs.
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for s in SPLITS:
                os.makedirs(os.path.join(out, "audio", s), exist_ok=True)
                for rec, (r, err) in zip(plans[s], pool.map(lambda rc: make_clip(s, rc), plans[s])):
                    progress["k"] += 1
                    k = progress["k"]
                    if r is None:
                        failures.append((rec["clip"], err))
                        log(f"  FAILED {rec['clip']}: {err}")
                        continue
                    done[s].append(r)
                    if k % 50 == 0 or k == total:
                        el = time.time() - t_render
                        n = progress["rendered"]
                        eta = el / max(1, n) * (total - k) if n else 0
                        log(f"  {k}/{total} clips ({n} rendered this run), {el:.0f} s,"
                            f" eta {eta:.0f} s")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    for s in SPLITS:
        lines = [f"audio/{s}/{r['clip']}.wav,{';'.join(r['tags'])}" for r in done[s]]
        atomic_write_text(os.path.join(out, f"{s}.csv"), "".join(l + "\n" for l in lines))
    manifest = "".join(json.dumps(r, sort_keys=True) + "\n" for s in SPLITS for r in done[s])
    atomic_write_text(os.path.join(out, "manifest.jsonl"), manifest)
    print_table(done)
    if failures:
        log(f"{len(failures)} clips failed: {failures[:10]}")
    log(f"done in {time.time() - t_start:.0f} s -> {out}")


def print_table(done):
    cols = ["clips"] + TAGS
    w = max(len(c) for c in cols) + 1
    log("split".ljust(8) + "".join(c.rjust(w) for c in cols))
    for s in SPLITS:
        row = [len(done[s])] + [sum(1 for r in done[s] if t in r["tags"]) for t in TAGS]
        log(s.ljust(8) + "".join(str(v).rjust(w) for v in row))
    pieces = {s: len({r["piece"] for r in done[s]}) for s in SPLITS}
    log("distinct pieces: " + ", ".join(f"{s} {pieces[s]}" for s in SPLITS))


if __name__ == "__main__":
    main()
