#!/usr/bin/env python3
"""Reference-fixture generator for MERT's CQT teacher (nnAudio CQT1992v2, spec section 4.3).

Runs `nnAudio.features.cqt.CQT` (= CQT1992v2, time-domain kernels) with exactly MERT's arguments
on three inputs and writes DIR/reference.safetensors (all float32):

  det.input   (2, 48000)   spec section 6.5 input: row b = 0.4 sin(2pi 220(b+1) t)
                           + 0.2 sin(3 * 2pi 220(b+1) t) + 0.05 N(0,1), numpy default_rng(1234),
                           t = n/24000, computed in f64, stored f32 (equals mert_tiny's input_raw)
  det.cqt     (2, 336, 151)
  odd.input   (1, 24321)   odd length, not a multiple of 320: exponential chirp 40 Hz -> 6 kHz
                           (amplitude 0.3) + 0.02 N(0,1) from default_rng(4321)
  odd.cqt     (1, 336, 77)
  music.input (1, 72000)   3 s of real music (see LICENSE.md), 48 kHz stereo -> mono (channel
                           mean) -> 24 kHz with scipy.signal.resample_poly(up=1, down=2)
  music.cqt   (1, 336, 226)
  *.cqt_f64   same shapes: an independent float64 evaluation of the same transform (kernels rebuilt
              in numpy from the spec facts, direct strided dot products in f64), stored as f32.
              nnAudio's own output carries float32 accumulation error over up to 50 460 taps; the
              metadata `check.*` entries say how large it is.
  lengths     (336,)       nnAudio's `lenghts` buffer (sic): l_k = ceil(Q sr / f_k)
  freqs       (336,)       centre frequencies f_k = 32.7 * 2^(k/48) (float64 cast to f32)

The music track is decoded from the Debian package `singularity-music`
(`apt-get install -y singularity-music`), never committed as a whole.

Usage:
  gen_cqt.py --out tests/fixtures/cqt [--music-file PATH] [--no-check]
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import scipy
import scipy.signal
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

import nnAudio
from nnAudio.features.cqt import CQT

SAMPLE_RATE = 24000
HOP = 320
CQT_ARGS = dict(
    sr=SAMPLE_RATE,
    hop_length=HOP,
    fmin=32.7,
    fmax=None,
    n_bins=336,
    bins_per_octave=48,
    filter_scale=1,
    norm=1,
    window="hann",
    center=True,
    pad_mode="constant",
    trainable=False,
    output_format="Magnitude",
    verbose=False,
)
KERNEL_WIDTH = 65536

# Spec section 6.5: "any correct CQT must reproduce these".
SPEC_DET_MEAN = 0.175890
SPEC_DET_MAX = 17.377108

MUSIC_DIR = "/usr/share/games/singularity/music"
MUSIC_TRACK = "Deprecation.ogg"
MUSIC_START_S = 30.0
MUSIC_SECONDS = 3.0
MUSIC_LICENSE = "CC BY-SA 3.0 (https://creativecommons.org/licenses/by-sa/3.0/)"
MUSIC_ATTRIBUTION = (
    "\"Deprecation\" by Max McCracken, from the Endgame: Singularity soundtrack "
    "(Copyright (C) 2007-2008,2012 Max McCracken), Debian package singularity-music {deb_version}"
)
MUSIC_CHANGES = (
    "3 s excerpt from 30 s, stereo downmixed to mono (channel mean), resampled 48 kHz -> 24 kHz "
    "(scipy.signal.resample_poly up=1 down=2, default Kaiser window), stored as float32"
)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def det_input(n_samples=48000, rows=2):
    """Spec section 6.5 input (identical to gen_mert.synth at 24 kHz)."""
    rng = np.random.default_rng(1234)
    noise = rng.standard_normal((rows, n_samples))
    t = np.arange(n_samples, dtype=np.float64) / SAMPLE_RATE
    out = np.empty((rows, n_samples), dtype=np.float64)
    for b in range(rows):
        w = 2.0 * np.pi * 220.0 * (b + 1) * t
        out[b] = 0.4 * np.sin(w) + 0.2 * np.sin(3.0 * w) + 0.05 * noise[b]
    return out.astype(np.float32)


def odd_input(n_samples=24321):
    """Exponential chirp 40 Hz -> 6 kHz over the whole length (amplitude 0.3) + 0.02 N(0,1)."""
    rng = np.random.default_rng(4321)
    noise = rng.standard_normal(n_samples)
    t = np.arange(n_samples, dtype=np.float64) / SAMPLE_RATE
    dur = n_samples / SAMPLE_RATE
    f0, f1 = 40.0, 6000.0
    k = f1 / f0
    phase = 2.0 * np.pi * f0 * dur / np.log(k) * (np.power(k, t / dur) - 1.0)
    out = 0.3 * np.sin(phase) + 0.02 * noise
    return out.astype(np.float32)[None, :]


def music_input(path):
    """3 s from 30 s of a 48 kHz track, mono, resampled to 24 kHz with resample_poly.

    0.1 s of context is decoded on both sides and cropped after resampling, so the excerpt has
    no resampler edge transient.
    """
    info = sf.info(path)
    if info.samplerate != 48000:
        raise SystemExit(f"{path}: expected 48 kHz, got {info.samplerate}")
    margin = 4800  # 0.1 s at 48 kHz
    start = int(MUSIC_START_S * 48000) - margin
    frames = int(MUSIC_SECONDS * 48000) + 2 * margin
    x, sr = sf.read(path, start=start, frames=frames, dtype="float64", always_2d=True)
    assert x.shape[0] == frames, (x.shape, frames)
    mono = x.mean(axis=1)
    y = scipy.signal.resample_poly(mono, up=1, down=2)
    m = margin // 2
    n = int(MUSIC_SECONDS * SAMPLE_RATE)
    y = y[m : m + n]
    assert y.shape[0] == n
    return y.astype(np.float32)[None, :]


# ---------------------------------------------------------------------------
# Independent float64 evaluation (from the spec facts, not from nnAudio's buffers)
# ---------------------------------------------------------------------------


def kernels_f64():
    """Rebuild the kernels in float64 exactly as spec section 4.3 describes them.

    Returns (freqs, lengths, starts, list of complex128 taps of length l_k).
    """
    bpo, n_bins, fmin, sr = 48, 336, 32.7, SAMPLE_RATE
    q = 1.0 / (2.0 ** (1.0 / bpo) - 1.0)
    freqs = fmin * 2.0 ** (np.arange(n_bins) / np.double(bpo))
    lengths = np.ceil(q * sr / freqs)
    width = int(2 ** np.ceil(np.log2(lengths.max())))
    assert width == KERNEL_WIDTH, width
    starts, taps = [], []
    for k in range(n_bins):
        l = int(lengths[k])
        start = int(np.ceil(width / 2.0 - l / 2.0)) - (1 if l % 2 == 1 else 0)
        w = scipy.signal.get_window("hann", l, fftbins=True)  # periodic Hann
        # n_j = floor(-l/2) + j, j = 0..l-1 (float, like nnAudio's np.r_[-l // 2 : l // 2]); the
        # operation order below is nnAudio's, so the complex64 cast matches bit for bit.
        n = np.arange(-(l // 2) - (l % 2), l - (l // 2) - (l % 2)).astype(np.float64)
        s = w * np.exp(n * 1j * 2 * np.pi * freqs[k] / sr) / float(l)
        s = s / np.abs(s).sum()  # L1 norm (norm=1)
        starts.append(start)
        taps.append(s)
    return freqs, lengths, starts, taps


def cqt_f64(x, kern):
    """Magnitude CQT in float64 by direct strided dot products (no FFT): x (B, L) float32."""
    freqs, lengths, starts, taps = kern
    b, n = x.shape
    half = KERNEL_WIDTH // 2
    frames = 1 + n // HOP
    out = np.empty((b, len(taps), frames), dtype=np.float64)
    for r in range(b):
        xp = np.concatenate([np.zeros(half), x[r].astype(np.float64), np.zeros(half)])
        for k, (start, s) in enumerate(zip(starts, taps)):
            l = s.shape[0]
            win = np.lib.stride_tricks.sliding_window_view(xp[start:], l)[::HOP][:frames]
            m = np.ascontiguousarray(win) @ np.stack([s.real, s.imag], axis=1)
            out[r, k] = np.sqrt(lengths[k]) * np.hypot(m[:, 0], m[:, 1])
    return out


def compare(name, got, ref):
    """Error of nnAudio's float32 output against the float64 evaluation."""
    got = got.astype(np.float64)
    diff = np.abs(got - ref)
    peak = np.abs(ref).max()
    big = ref > 1e-3 * peak
    stats = {
        "max_abs": float(diff.max()),
        "max_abs_over_peak": float(diff.max() / peak),
        "max_rel_where_ref_gt_1e-3_peak": float((diff[big] / ref[big]).max()),
        "rel_l1": float(diff.sum() / np.abs(ref).sum()),
    }
    print(
        f"  {name}: nnAudio f32 vs f64: max|d| {stats['max_abs']:.3e} "
        f"(/peak {stats['max_abs_over_peak']:.3e}), max rel (ref>1e-3 peak) "
        f"{stats['max_rel_where_ref_gt_1e-3_peak']:.3e}, rel L1 {stats['rel_l1']:.3e}"
    )
    return stats


# ---------------------------------------------------------------------------


def deb_version(package):
    try:
        import subprocess

        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=True
        )
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def canonicalize_safetensors_metadata(path):
    """Sort the __metadata__ keys in the header so that reruns give identical bytes."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        text = raw.rstrip(b" ")
        header = json.loads(text, object_pairs_hook=dict)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        new = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        assert len(new) == len(text), (len(new), len(text))
        f.seek(8)
        f.write(new + b" " * (n - len(new)))


LICENSE_MD = """# Licence of the music excerpt in this folder

`reference.safetensors` holds, under the keys `music.input` and `music.cqt` (and
`music.cqt_f64`), a 3-second excerpt of a recording nobody on this project made, and its CQT:

- Track: **{track}** (file `{path}`)
- Attribution: {attribution}
- Upstream: Endgame: Singularity, http://emhsoft.com/singularity/
- Licence: **{license}**. Treat the excerpt and the tensors derived from it
  (`music.*`) as covered by that licence (ShareAlike); it concerns those tensors only.
- Changes: {changes}.

The other tensors (`det.*`, `odd.*`, `lengths`, `freqs`) are synthetic or computed by the
generator `tests/reference/gen_cqt.py`.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "cqt"))
    ap.add_argument("--music-file", default=os.path.join(MUSIC_DIR, MUSIC_TRACK))
    ap.add_argument("--no-check", action="store_true", help="skip the float64 cross-check (and *.cqt_f64)")
    args = ap.parse_args()

    if not os.path.exists(args.music_file):
        raise SystemExit(
            f"{args.music_file} not found: install it with `apt-get install -y singularity-music`"
        )

    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cqt = CQT(**CQT_ARGS).eval()
    assert cqt.kernel_width == KERNEL_WIDTH, cqt.kernel_width
    assert cqt.cqt_kernels_real.dtype == torch.float32

    inputs = {
        "det": det_input(),
        "odd": odd_input(),
        "music": music_input(args.music_file),
    }
    tensors = {}
    outputs = {}
    with torch.inference_mode():
        for name, x in inputs.items():
            y = cqt(torch.from_numpy(x)).contiguous()  # default normalization_type="librosa"
            frames = 1 + x.shape[1] // HOP
            assert tuple(y.shape) == (x.shape[0], 336, frames), (name, tuple(y.shape))
            assert y.dtype == torch.float32
            tensors[f"{name}.input"] = torch.from_numpy(x).contiguous()
            tensors[f"{name}.cqt"] = y
            outputs[name] = y.numpy()
            print(
                f"{name}: input {tuple(x.shape)} -> cqt {tuple(y.shape)}  "
                f"mean {y.mean().item():.6f} max {y.max().item():.6f}"
            )

    det = tensors["det.cqt"]
    det_mean, det_max = det.mean().item(), det.max().item()
    ok = abs(det_mean - SPEC_DET_MEAN) < 5e-6 and abs(det_max - SPEC_DET_MAX) < 5e-5
    print(
        f"det reference stats: mean {det_mean:.6f} (spec {SPEC_DET_MEAN}), "
        f"max {det_max:.6f} (spec {SPEC_DET_MAX}) -> {'OK' if ok else 'MISMATCH'}"
    )
    if not ok:
        raise SystemExit("det CQT does not reproduce the spec's reference values")

    lengths = cqt.lenghts.detach().clone().float()
    freqs = np.asarray(cqt.frequencies, dtype=np.float64)
    tensors["lengths"] = lengths.contiguous()
    tensors["freqs"] = torch.from_numpy(freqs.astype(np.float32))

    meta = {
        "nnAudio": nnAudio.__version__ if hasattr(nnAudio, "__version__") else "0.3.4",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "soundfile": sf.__version__,
        "libsndfile": sf.__libsndfile_version__,
        "cqt_class": "nnAudio.features.cqt.CQT (CQT1992v2)",
        "cqt_args": json.dumps(CQT_ARGS, sort_keys=True),
        "forward": "cqt(x) with default normalization_type='librosa' (x sqrt(lengths))",
        "kernel_width": str(cqt.kernel_width),
        "hop_length": str(HOP),
        "sample_rate": str(SAMPLE_RATE),
        "frames_rule": "1 + L // 320",
        "det_cqt_mean": f"{det_mean:.6f}",
        "det_cqt_max": f"{det_max:.6f}",
        "det_input": "row b: 0.4 sin(2pi 220(b+1) t) + 0.2 sin(3 2pi 220(b+1) t) + 0.05 N(0,1); "
        "numpy default_rng(1234).standard_normal((2, 48000)); t = n/24000; f64 then f32",
        "odd_input": "0.3 sin(exp chirp 40 Hz -> 6000 Hz over 24321 samples) + 0.02 N(0,1) "
        "from numpy default_rng(4321).standard_normal(24321); f64 then f32",
        "music_track": os.path.basename(args.music_file),
        "music_source": f"Debian package singularity-music, {args.music_file}",
        "music_license": MUSIC_LICENSE,
        "music_changes": MUSIC_CHANGES,
        "music_start_s": str(MUSIC_START_S),
        "music_seconds": str(MUSIC_SECONDS),
        "music_resampler": "scipy.signal.resample_poly(mono, up=1, down=2), 0.1 s context each side cropped",
        "freqs_note": "float64 fmin*2^(k/48) from nnAudio, stored as f32",
        "lengths_note": "nnAudio buffer `lenghts` = ceil(Q*sr/f_k), Q = 1/(2^(1/48)-1)",
    }

    attribution = MUSIC_ATTRIBUTION.format(deb_version=deb_version("singularity-music"))
    meta["music_attribution"] = attribution

    if not args.no_check:
        kern = kernels_f64()
        # The rebuilt kernels must equal nnAudio's (complex128 -> complex64 as nnAudio stores them).
        kr = cqt.cqt_kernels_real[:, 0, :].numpy()
        ki = cqt.cqt_kernels_imag[:, 0, :].numpy()
        kmax = 0.0
        for k, (start, s) in enumerate(zip(kern[2], kern[3])):
            full = np.zeros(KERNEL_WIDTH, dtype=np.complex64)
            full[start : start + s.shape[0]] = s
            kmax = max(kmax, float(np.abs(full.real - kr[k]).max()), float(np.abs(full.imag - ki[k]).max()))
        print(f"rebuilt kernels vs nnAudio buffers: max |diff| {kmax:.3e}")
        assert kmax == 0.0, "kernel facts do not reproduce nnAudio's kernels bit for bit"
        assert np.array_equal(kern[1].astype(np.float32), lengths.numpy())
        assert np.array_equal(kern[0], freqs)
        meta["check.kernels_vs_nnaudio_max_abs"] = f"{kmax:.3e}"
        for name, x in inputs.items():
            ref = cqt_f64(x, kern)
            tensors[f"{name}.cqt_f64"] = torch.from_numpy(ref.astype(np.float32))
            meta[f"check.{name}.nnaudio_vs_f64"] = json.dumps(compare(name, outputs[name], ref), sort_keys=True)
            if name == "det":
                print(f"  det f64: mean {ref.mean():.6f} max {ref.max():.6f}")

    os.makedirs(args.out, exist_ok=True)
    ref_path = os.path.join(args.out, "reference.safetensors")
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, ref_path, metadata=meta)
    canonicalize_safetensors_metadata(ref_path)
    os.chmod(ref_path, 0o644)
    back = load_file(ref_path)
    for k, v in tensors.items():
        assert torch.equal(back[k], v), k

    with open(os.path.join(args.out, "LICENSE.md"), "w") as f:
        f.write(
            LICENSE_MD.format(
                track=os.path.splitext(os.path.basename(args.music_file))[0],
                path=args.music_file,
                attribution=attribution,
                license=MUSIC_LICENSE,
                changes=MUSIC_CHANGES,
            )
        )
    size = os.path.getsize(ref_path)
    print(f"wrote {ref_path} ({size / 1e6:.2f} MB, {len(tensors)} tensors) and LICENSE.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
