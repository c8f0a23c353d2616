#!/usr/bin/env python3
"""Audio-loader test matrix: synthesised files in many containers/codecs plus their reference decode.

Writes DIR (default tests/fixtures/audio):

  *.wav / *.flac / *.aiff / *.caf / *.ogg / *.mp3 / *.m4a / *.mkv / *.opus (the Opus file's
      reference decode is written by gen_opus.py, with libopus's opusdec)
      0.5 s each (edge cases aside) of one deterministic music-like signal (harmonic tones with
      note envelopes + a little white noise from numpy default_rng(42), peak 0.5), see `synth`.
  reference.safetensors   all float32:
      <name>.decoded    the reference decode, downmixed to mono by the channel mean (computed in
                        float64 from the decoded samples, rounded once to float32), at the file's
                        own rate. Decoder: soundfile (libsndfile) for what it reads (WAV, FLAC,
                        AIFF, CAF, Ogg Vorbis); ffmpeg's decode to f32 for the rest (MP3, AAC/ALAC
                        in MP4, FLAC in Matroska). `files[name].decoder` says which.
      <name>.resampled  <name>.decoded resampled to 24000 Hz by torchaudio.functional.resample
                        with default arguments (sinc_interp_hann, lowpass_filter_width 6,
                        rolloff 0.99), float32 in and out (the resampler of MERT's own data prep).
      __metadata__:
        files  JSON: name -> {rate, channels, format, subtype, frames, decoder, bytes, ...}
        bad    JSON: name -> why loading it must fail
        plus generator versions.
  LICENSE.md   CC0: everything here is synthesised by this script.

Encoded files are made with ffmpeg (bitexact flags) where libsndfile's output would not be
byte-reproducible (its Ogg writer picks a random stream serial) or cannot write the format.
Reruns with the same library versions give identical bytes (`--check-repro` verifies this).

`--snr` also measures how close other high-quality resamplers come to torchaudio on these signals
(SNR in dB over the full output and without 200 samples at each edge): scipy.signal.resample_poly,
libsamplerate sinc_best (PyPI `samplerate`), and a numpy emulation of rubato 5.1's `Fft`
resampler exactly as core/src/audio/resample.rs drives it.

Usage:
  gen_audio.py --out tests/fixtures/audio [--snr] [--check-repro]
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
import torch
import torchaudio
from safetensors.numpy import save_file, load_file

TARGET_RATE = 24000
SECONDS = 0.5
PEAK = 0.5
SEED = 42
RANDOM_BYTES_SEED = 4242
RANDOM_BYTES_LEN = 16384

SOUNDFILE_DECODER = f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__})"

# ---------------------------------------------------------------------------
# Signal
# ---------------------------------------------------------------------------

# Tonal sources: (f0 Hz, harmonic amplitudes, onset s, decay time constant s).
SOURCES = [
    (220.00, [1.0, 0.5, 0.33, 0.25, 0.2, 0.17, 0.14, 0.12], 0.000, 0.60),  # A3, saw-like
    (329.63, [0.8, 0.0, 0.27, 0.0, 0.16, 0.0, 0.11], 0.125, 0.40),  # E4, square-like
    (110.00, [0.9, 0.3, 0.1], 0.000, 1.00),  # A2 bass
    (2637.02, [0.25, 0.08, 0.04], 0.250, 0.15),  # E7 bell, harmonics up to 7.9 kHz
]
# Channel mixes of the 4 sources (rows: L, R, C, LFE, Ls, Rs); mono uses row 0, stereo rows 0-1.
# The rows differ (and some weights are negative) so the channel mean is not any one channel.
MIX = np.array(
    [
        [1.0, 0.3, 0.5, 0.2],
        [0.3, 1.0, 0.5, 0.6],
        [0.8, 0.8, 0.2, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.4, -0.2, 0.0, 0.8],
        [-0.3, 0.5, 0.0, 0.3],
    ]
)
NOISE_LEVEL = 0.03
ATTACK_S = 0.005


def synth(rate, n, channels):
    """(n, channels) float64: tones (harmonics kept below 0.45 rate) + independent white noise per
    channel (numpy default_rng(42).standard_normal((channels, n))), scaled to peak 0.5."""
    t = np.arange(n, dtype=np.float64) / rate
    srcs = []
    for f0, amps, onset, decay in SOURCES:
        s = np.zeros(n)
        for k, a in enumerate(amps, start=1):
            if a and k * f0 < 0.45 * rate:
                s += a * np.sin(2 * np.pi * k * f0 * t + 0.3 * k)
        tau = t - onset
        env = np.where(tau < 0, 0.0, np.exp(-np.maximum(tau - ATTACK_S, 0.0) / decay))
        att = (tau >= 0) & (tau < ATTACK_S)
        env[att] *= 0.5 - 0.5 * np.cos(np.pi * tau[att] / ATTACK_S)
        srcs.append(s * env)
    srcs = np.stack(srcs)  # (4, n)
    rng = np.random.default_rng(SEED)
    noise = rng.standard_normal((channels, n))
    x = MIX[:channels] @ srcs + NOISE_LEVEL * noise  # (channels, n)
    peak = np.max(np.abs(x))
    if peak > 0:
        x *= PEAK / peak
    return np.ascontiguousarray(x.T)


# ---------------------------------------------------------------------------
# The matrix
# ---------------------------------------------------------------------------

CH_NAME = {1: "mono", 2: "stereo", 6: "6ch"}

# (name, writer, rate, channels, subtype/codec, extra)
#   writer "sf": soundfile (format from extension); "ff": ffmpeg from a temp WAV.
MATRIX = [
    # WAV: every bit depth, every rate, mono/stereo/5.1
    ("wav_u8_8000_mono.wav", "sf", 8000, 1, "PCM_U8", {}),
    ("wav_s16_8000_6ch_wavex.wav", "sf", 8000, 6, "PCM_16", {"sf_format": "WAVEX",
        "note": "WAVE_FORMAT_EXTENSIBLE, channel mask 0x3F (FL FR FC LFE BL BR), fact chunk"}),
    ("wav_s16_22050_mono.wav", "sf", 22050, 1, "PCM_16", {}),
    ("wav_s16_24000_mono.wav", "sf", 24000, 1, "PCM_16", {"note": "already at 24 kHz: resampling is the identity"}),
    ("wav_s16_44100_stereo.wav", "sf", 44100, 2, "PCM_16", {}),
    ("wav_s24_96000_mono.wav", "sf", 96000, 1, "PCM_24", {}),
    ("wav_s32_48000_mono.wav", "sf", 48000, 1, "PCM_32", {}),
    ("wav_f32_22050_6ch.wav", "sf", 22050, 6, "FLOAT", {"note": "format tag 3 (IEEE float) with 6 channels, fact + PEAK chunks"}),
    ("wav_f64_22050_mono.wav", "sf", 22050, 1, "DOUBLE", {}),
    # other lossless containers
    ("flac_s16_44100_stereo.flac", "sf", 44100, 2, "PCM_16", {}),
    ("flac_s24_48000_mono.flac", "sf", 48000, 1, "PCM_24", {}),
    ("aiff_s16_22050_stereo.aiff", "sf", 22050, 2, "PCM_16", {}),
    ("caf_s24_8000_stereo.caf", "sf", 8000, 2, "PCM_24", {}),
    ("alac_s16_48000_stereo.m4a", "ff", 48000, 2, "alac", {"args": ["-c:a", "alac"], "src": "PCM_16"}),
    ("mkv_flac_s16_22050_stereo.mkv", "ff", 22050, 2, "flac", {"args": ["-c:a", "flac"], "src": "PCM_16"}),
    # lossy
    ("ogg_vorbis_44100_stereo.ogg", "ff", 44100, 2, "vorbis", {"args": ["-c:a", "libvorbis", "-q:a", "5"]}),
    ("mp3_44100_stereo.mp3", "ff", 44100, 2, "mp3", {"args": ["-c:a", "libmp3lame", "-b:a", "128k"]}),
    ("aac_44100_stereo.m4a", "ff", 44100, 2, "aac", {"args": ["-c:a", "aac", "-b:a", "128k"]}),
    ("opus_48000_stereo.opus", "ff", 48000, 2, "opus", {"args": ["-c:a", "libopus", "-b:a", "96k"]}),
]

SF_FORMAT = {".wav": "WAV", ".flac": "FLAC", ".aiff": "AIFF", ".caf": "CAF"}
# Files decoded by soundfile (what libsndfile reads); the others by ffmpeg.
SF_DECODES = {".wav", ".flac", ".aiff", ".caf", ".ogg"}

# opus_48000_stereo.opus is decoded by the kit (libopus, transpiled); its reference decode, by
# libopus's own opusdec, is gen_opus.py's opus_reference.safetensors.
BAD = {
    "bad_empty_s16_44100_mono.wav": (
        "valid WAV header (PCM 16-bit, 44100 Hz, mono) with a zero-length data chunk: no samples, "
        "must fail ('no audio samples') instead of returning an empty signal"
    ),
    "bad_random_bytes.mp3": (
        f"{RANDOM_BYTES_LEN} random bytes (numpy default_rng({RANDOM_BYTES_SEED}).bytes) named .mp3: "
        "not audio, must fail (probe error or no decodable frame), never yield noise"
    ),
    "bad_nan_f32_22050_mono.wav": (
        "well-formed 32-bit float WAV whose samples 1000..1009 and 5000 are NaN: decodes, but "
        "non-finite input must be rejected (an FFT resampler smears one NaN over the whole output)"
    ),
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def ffmpeg_version():
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
    return out.split("\n", 1)[0].split(" Copyright")[0].replace("ffmpeg version ", "")


def zero_wav_peak_timestamp(path):
    """libsndfile writes a PEAK chunk with a wall-clock timestamp; zero it for reproducible bytes."""
    with open(path, "r+b") as f:
        data = f.read()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
        i = 12
        while i + 8 <= len(data):
            cid, size = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])[0]
            if cid == b"PEAK":
                f.seek(i + 8 + 4)  # version (u32), then timestamp (u32)
                f.write(b"\0\0\0\0")
            i += 8 + size + (size & 1)


def wav_chunks(path):
    with open(path, "rb") as f:
        data = f.read()
    out, i = [], 12
    while i + 8 <= len(data):
        cid, size = data[i : i + 4], struct.unpack("<I", data[i + 4 : i + 8])[0]
        out.append((cid.decode("latin1"), i, size))
        i += 8 + size + (size & 1)
    return data, out


def sf_write(path, x, rate, subtype, fmt=None):
    ext = os.path.splitext(path)[1]
    sf.write(path, x, rate, subtype=subtype, format=fmt or SF_FORMAT[ext])
    if ext == ".wav" and subtype in ("FLOAT", "DOUBLE"):
        zero_wav_peak_timestamp(path)


def ff_encode(src_wav, path, args):
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y",
        "-i", src_wav, "-map", "0:a:0", "-map_metadata", "-1",
        "-fflags", "+bitexact", "-flags:a", "+bitexact", *args, path,
    ]
    subprocess.run(cmd, check=True)


def ffprobe(path):
    cmd = ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_streams", "-show_format", "-of", "json", path]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def ff_decode(path, extra_in=()):
    """ffmpeg's decode to interleaved f32 at the stream's own rate and channel count."""
    info = ffprobe(path)["streams"][0]
    ch = int(info["channels"])
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *extra_in, "-i", path, "-map", "0:a:0",
           "-f", "f32le", "-c:a", "pcm_f32le", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    x = np.frombuffer(raw, dtype="<f4").reshape(-1, ch)
    return x, int(info["sample_rate"]), info


def downmix(x):
    """(frames, channels) -> mono float32: mean over channels in float64, rounded once."""
    return np.asarray(x, dtype=np.float64).mean(axis=1).astype(np.float32)


def ta_resample(mono, rate):
    with torch.no_grad():
        y = torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(mono))[None], rate, TARGET_RATE)
    return y[0].numpy().astype(np.float32)


def lame_gapless(path):
    """Encoder delay and padding from the LAME tag of the first (Info/Xing) frame, if any."""
    with open(path, "rb") as f:
        data = f.read(4096)
    for tag in (b"Info", b"Xing"):
        i = data.find(tag)
        if i < 0:
            continue
        for enc in (b"LAME", b"Lavc", b"Lavf"):
            j = data.find(enc, i)
            if j < 0:
                continue
            b = data[j + 21 : j + 24]
            return {"encoder_delay": (b[0] << 4) | (b[1] >> 4), "padding": ((b[1] & 0x0F) << 8) | b[2]}
    return None


def best_lag(a, b, max_lag=3000):
    """Lag L maximising the correlation of a[n + L] with b[n] (a decoded, b the source)."""
    n_fft = 1 << int(math.ceil(math.log2(len(a) + len(b))))
    c = np.fft.irfft(np.fft.rfft(a, n_fft) * np.conj(np.fft.rfft(b, n_fft)), n_fft)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    vals = c[lags % n_fft]
    return int(lags[np.argmax(vals)])


def snr_db(ref, other):
    ref = np.asarray(ref, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    num = np.sum(ref * ref)
    den = np.sum((ref - other) ** 2)
    if den == 0:
        return math.inf
    if num == 0:
        return -math.inf
    return 10 * math.log10(num / den)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


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


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def n_frames(rate, seconds=SECONDS):
    return int(round(rate * seconds))


def make_files(out, tmp):
    """Writes every audio file; returns name -> dict of generation facts (source signal etc.)."""
    gen = {}
    for name, writer, rate, ch, subtype, extra in MATRIX:
        path = os.path.join(out, name)
        n = n_frames(rate)
        x = synth(rate, n, ch)
        if writer == "sf":
            sf_write(path, x, rate, subtype, extra.get("sf_format"))
        else:
            src = os.path.join(tmp, name + ".src.wav")
            sf.write(src, x, rate, subtype=extra.get("src", "FLOAT"), format="WAV")
            ff_encode(src, path, extra["args"])
        gen[name] = {"source": x, "rate": rate, "channels": ch, "subtype": subtype, "extra": extra}

    # Edge cases that decode.
    name = "edge_short10ms_s16_44100_mono.wav"
    x = synth(44100, n_frames(44100, 0.01), 1)
    sf_write(os.path.join(out, name), x, 44100, "PCM_16")
    gen[name] = {"source": x, "rate": 44100, "channels": 1, "subtype": "PCM_16", "extra": {
        "note": "0.01 s: 441 frames -> 240 samples at 24 kHz, shorter than one 400-sample model frame"}}

    name = "edge_silence2s_s16_8000_mono.wav"
    x = np.zeros((n_frames(8000, 2.0), 1))
    sf_write(os.path.join(out, name), x, 8000, "PCM_16")
    gen[name] = {"source": x, "rate": 8000, "channels": 1, "subtype": "PCM_16", "extra": {
        "note": "2 s of digital silence (all-zero samples); per-clip normalisation must not divide by zero"}}

    name = "edge_truncated_s16_44100_stereo.wav"
    with open(os.path.join(out, "wav_s16_44100_stereo.wav"), "rb") as f:
        full = f.read()
    cut = full[: len(full) // 2]
    with open(os.path.join(out, name), "wb") as f:
        f.write(cut)
    data, chunks = wav_chunks(os.path.join(out, "wav_s16_44100_stereo.wav"))
    (_, data_off, data_size), = [c for c in chunks if c[0] == "data"]
    present = len(cut) - (data_off + 8)
    block = 4
    gen[name] = {"source": None, "rate": 44100, "channels": 2, "subtype": "PCM_16", "extra": {
        "note": (
            "the first half of wav_s16_44100_stereo.wav's bytes: the header still says "
            f"{data_size // block} frames ({data_size} data bytes) but only {present} data bytes are present "
            f"({present // block} whole frames and {present % block} stray bytes of a partial frame). "
            "The reference is what libsndfile returns (the whole frames present, which equal the first "
            "frames of wav_s16_44100_stereo.wav). A loader that keeps what it could decode should return "
            "these frames, possibly fewer if it drops the last incomplete packet (symphonia's WAV reader "
            "reads packets of up to 1152 frames); compare the common prefix"),
        "header_frames": data_size // block, "data_bytes_present": present,
        "whole_frames_present": present // block, "stray_bytes": present % block}}

    # Expected failures.
    name = "bad_empty_s16_44100_mono.wav"
    sf_write(os.path.join(out, name), np.zeros((0, 1)), 44100, "PCM_16")

    name = "bad_random_bytes.mp3"
    with open(os.path.join(out, name), "wb") as f:
        f.write(np.random.default_rng(RANDOM_BYTES_SEED).bytes(RANDOM_BYTES_LEN))

    name = "bad_nan_f32_22050_mono.wav"
    x = synth(22050, n_frames(22050), 1)
    x[1000:1010, 0] = np.nan
    x[5000, 0] = np.nan
    sf_write(os.path.join(out, name), x, 22050, "FLOAT")
    return gen


def reference(out, gen, ffver):
    tensors, files = {}, {}
    for name, g in gen.items():
        path = os.path.join(out, name)
        ext = os.path.splitext(name)[1]
        if name in BAD:
            continue
        entry = {}
        if ext in SF_DECODES:
            info = sf.info(path)
            x, rate = sf.read(path, dtype="float64", always_2d=True)
            entry.update(format=info.format, subtype=info.subtype, decoder=SOUNDFILE_DECODER)
            if ext == ".ogg":
                entry["decoder"] += " (libvorbis)"
        else:
            x, rate, st = ff_decode(path)
            fmt = ffprobe(path)["format"]["format_name"]
            entry.update(format=fmt, subtype=st["codec_name"] + (f" ({st['sample_fmt']})" if st.get("sample_fmt") else ""))
            if g["subtype"] == "mp3":
                dec = "ffmpeg {} native mp3float decoder, LAME-tag gapless trimming applied"
            elif g["subtype"] == "aac":
                dec = "ffmpeg {} native aac decoder, MP4 edit list applied (priming removed)"
            else:
                dec = "ffmpeg {} native " + st["codec_name"] + " decoder (lossless; f32 = int / 2^15)"
            entry["decoder"] = dec.format(ffver)
        assert rate == g["rate"], (name, rate, g["rate"])
        assert x.shape[1] == g["channels"], (name, x.shape)
        mono = downmix(x)
        res = ta_resample(mono, rate)
        assert len(res) == math.ceil(len(mono) * TARGET_RATE / rate), (name, len(res), len(mono))
        tensors[f"{name}.decoded"] = mono
        tensors[f"{name}.resampled"] = res
        entry.update(rate=rate, channels=x.shape[1], frames=len(mono), resampled_frames=len(res),
                     bytes=os.path.getsize(path), sha256=sha256(path))
        src = g["source"]
        if src is not None:
            entry["source_frames"] = len(src)
        lossy = g["subtype"] in ("vorbis", "mp3", "aac")
        if lossy:
            s = downmix(src)
            lag = best_lag(mono.astype(np.float64), s.astype(np.float64))
            entry["lossy"] = True
            entry["lag_vs_source"] = lag
            m = min(len(mono), len(s))
            entry["snr_vs_source_db"] = round(snr_db(s[:m], mono[:m]), 2)
        elif src is not None:
            # Lossless: the decode equals the quantised source.
            q = downmix(x)
            err = float(np.max(np.abs(q.astype(np.float64) - downmix(src).astype(np.float64))))
            entry["max_abs_diff_vs_unquantised_source"] = float(f"{err:.3g}")
        if g["subtype"] == "mp3":
            gl = lame_gapless(path)
            if gl:
                entry.update(gl)
        if g["subtype"] == "aac":
            raw, _, _ = ff_decode(path, ["-ignore_editlist", "1"])
            raw = downmix(raw)
            entry["frames_without_edit_list"] = len(raw)
            entry["lag_vs_source_without_edit_list"] = best_lag(raw.astype(np.float64), downmix(src).astype(np.float64))
            dur = float(ffprobe(path)["streams"][0]["duration"])
            entry["edit_list_frames"] = int(round(dur * rate))
            entry["note"] = ("ffmpeg 5.1 applies the start of the MP4 edit list (drops the encoder's 1024 priming "
                             "frames) but not its end, so `frames` (whole 1024-frame AAC packets) exceeds "
                             "edit_list_frames (= source_frames); the extra tail is the encoder's flush. symphonia 0.6's MP4 "
                             "reader ignores edit lists: expect frames_without_edit_list frames, the signal starting "
                             "lag_vs_source_without_edit_list frames late; align before comparing")
        if g["subtype"] == "mp3" and "encoder_delay" in entry:
            entry["note"] = ("ffmpeg and symphonia 0.6 (AudioDecoderOptions::gapless, default true) both use the LAME "
                             "tag: drop encoder_delay + 529 (decoder delay) frames at the start and padding - 529 at "
                             "the end, giving source_frames. libsndfile/mpg123 gives the same samples (124 dB)")
        for k, v in g["extra"].items():
            if k not in ("args", "src", "sf_format"):
                entry[k] = v
        files[name] = dict(sorted(entry.items()))
    return tensors, files


def write_license(out):
    text = """# Licence of the audio test fixtures

Every audio file in this folder (and `reference.safetensors`) was synthesised by
`tests/reference/gen_audio.py` from sine tones and seeded pseudo-random noise; nothing was recorded
or taken from another work. The encoded files were produced with ffmpeg/libsndfile encoders from
that synthetic signal.

To the extent possible under law, the authors have waived all copyright and related or neighbouring
rights to these files: they are dedicated to the public domain under CC0 1.0 Universal
(https://creativecommons.org/publicdomain/zero/1.0/).
"""
    with open(os.path.join(out, "LICENSE.md"), "w") as f:
        f.write(text)


def generate(out):
    os.makedirs(out, exist_ok=True)
    ffver = ffmpeg_version()
    with tempfile.TemporaryDirectory() as tmp:
        gen = make_files(out, tmp)
    tensors, files = reference(out, gen, ffver)
    bad = {}
    for name, why in BAD.items():
        p = os.path.join(out, name)
        bad[name] = {"why": why, "bytes": os.path.getsize(p), "sha256": sha256(p)}
    meta = {
        "files": json.dumps(files, sort_keys=True),
        "bad": json.dumps(bad, sort_keys=True),
        "target_rate": str(TARGET_RATE),
        "resampler": "torchaudio.functional.resample(x, rate, 24000) defaults: sinc_interp_hann, "
                     "lowpass_filter_width=6, rolloff=0.99; float32 in and out",
        "downmix": "mean over channels in float64 of the decoded samples, rounded to float32",
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "numpy": np.__version__,
        "soundfile": sf.__version__,
        "libsndfile": sf.__libsndfile_version__,
        "ffmpeg": ffver,
    }
    ref = os.path.join(out, "reference.safetensors")
    save_file(dict(sorted(tensors.items())), ref, metadata=meta)
    canonicalize_safetensors_metadata(ref)
    write_license(out)
    return files, bad


# ---------------------------------------------------------------------------
# Resampler comparison
# ---------------------------------------------------------------------------


def rubato_fft_emulation(x, rate, to=TARGET_RATE, chunk=1024, sub_chunks=None):
    """numpy model of rubato 5.1 `Fft::<f32>::new(rate, to, 1024, 1, FixedSync::Input)` as
    core/src/audio/resample.rs uses it: the same sub-chunk sizes, BlackmanHarris^2 windowed sinc,
    cutoff fit, block FFT filtering with spectrum truncation/zero-extension and overlap-add; the
    output_delay (fft_size_out / 2) trimmed; ceil(n * to / rate) samples kept. Computed in float64."""
    g = math.gcd(rate, to)
    if sub_chunks is None:  # Fft::new's choice
        sub_chunks = max(chunk // 256, 1)
    min_in = rate // g
    fft_chunks = max(-(-(chunk // sub_chunks) // min_in), 1)
    n_in, n_out = fft_chunks * rate // g, fft_chunks * to // g

    def cutoff_fit(npts):
        k1, k2, k3 = 13.745202940783823, 121.73532586374934, 5964.163279612051
        return 1.0 / (k1 / npts + k2 / npts**2 + k3 / npts**3 + 1.0)

    cutoff = cutoff_fit(n_out) * n_out / n_in if n_in > n_out else cutoff_fit(n_in)
    # make_sincs(n_in, 1, cutoff, BlackmanHarris2): periodic Blackman-Harris, squared.
    m = np.arange(n_in)
    a0, a1, a2, a3 = 0.35875, 0.48829, 0.14128, 0.01168
    w = a0 - a1 * np.cos(2 * np.pi * m / n_in) + a2 * np.cos(4 * np.pi * m / n_in) - a3 * np.cos(6 * np.pi * m / n_in)
    w = w * w
    h = w * np.sinc((m - n_in // 2) * cutoff)
    h /= h.sum()
    filt_f = np.fft.rfft(np.r_[h / (2 * n_in), np.zeros(n_in)])
    new_len = n_in + 1 if n_in < n_out else n_out
    delay = n_out // 2
    want = -(-len(x) * to // rate)
    blocks = -(-(len(x) + n_in * (delay // n_out + 2)) // n_in) + 1
    xp = np.zeros(blocks * n_in)
    xp[: len(x)] = x
    y = np.zeros((blocks + 1) * n_out)
    for b in range(blocks):
        spec = np.fft.rfft(np.r_[xp[b * n_in : (b + 1) * n_in], np.zeros(n_in)])
        out_f = np.zeros(n_out + 1, dtype=complex)
        out_f[:new_len] = spec[:new_len] * filt_f[:new_len]
        y[b * n_out : b * n_out + 2 * n_out] += np.fft.irfft(out_f, 2 * n_out) * (2 * n_out)
    return y[delay : delay + want], (n_in, n_out, cutoff)


def compare_resamplers(out, files):
    import scipy
    import scipy.signal

    try:
        import samplerate
    except ImportError:  # optional
        samplerate = None
    ref = load_file(os.path.join(out, "reference.safetensors"))
    rows = []
    for name, e in sorted(files.items(), key=lambda kv: (kv[1]["rate"], kv[0])):
        rate = e["rate"]
        if rate == TARGET_RATE:
            continue
        x = ref[f"{name}.decoded"]
        y = ref[f"{name}.resampled"].astype(np.float64)
        g = math.gcd(rate, TARGET_RATE)
        others = {"resample_poly": scipy.signal.resample_poly(x.astype(np.float64), TARGET_RATE // g, rate // g)}
        if samplerate is not None:
            others["libsamplerate_sinc_best"] = samplerate.resample(x.astype(np.float64), TARGET_RATE / rate, "sinc_best")
        others["rubato_fft_emul"], (n_in, n_out, cutoff) = rubato_fft_emulation(x.astype(np.float64), rate)
        row = {"name": name, "rate": rate, "n_out": len(y), "rubato_fft": f"{n_in}->{n_out}, cutoff {cutoff * rate / 2:.0f} Hz"}
        for k, o in others.items():
            m = min(len(o), len(y))
            row[k + ".len"] = len(o)
            row[k + ".full"] = snr_db(y[:m], o[:m])
            row[k + ".inner"] = snr_db(y[200 : m - 200], o[200 : m - 200]) if m > 400 else float("nan")
            row[k + ".lag"] = best_lag(o, y, 50)
        rows.append(row)
    return rows


def print_snr_table(rows):
    keys = ["resample_poly", "libsamplerate_sinc_best", "rubato_fft_emul"]
    keys = [k for k in keys if any(k + ".full" in r for r in rows)]
    head = "| file | rate | out len | " + " | ".join(f"{k} full / inner" for k in keys) + " |"
    print(head)
    print("|" + "---|" * (3 + len(keys)))
    for r in rows:
        cells = []
        for k in keys:
            f, i = r[k + ".full"], r[k + ".inner"]
            extra = "" if (r[k + ".len"] == r["n_out"] and r[k + ".lag"] == 0) else f" (len {r[k + '.len']}, lag {r[k + '.lag']})"
            cells.append(f"{f:.1f} / {i:.1f}{extra}")
        print(f"| {r['name']} | {r['rate']} | {r['n_out']} | " + " | ".join(cells) + " |")
    print()
    for rate, desc in sorted({(r["rate"], r["rubato_fft"]) for r in rows}):
        print(f"rubato Fft (as core/src/audio/resample.rs builds it) {rate} -> {TARGET_RATE}: fft sizes {desc}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/audio")
    ap.add_argument("--snr", action="store_true", help="compare other resamplers with torchaudio")
    ap.add_argument("--check-repro", action="store_true", help="generate twice, compare bytes")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        sys.exit("gen_audio.py needs ffmpeg and ffprobe on PATH (Debian: apt-get install -y ffmpeg)")
    torch.set_num_threads(1)
    files, bad = generate(args.out)
    total = 0
    for name in sorted(os.listdir(args.out)):
        size = os.path.getsize(os.path.join(args.out, name))
        total += size
        print(f"{size:>9}  {name}")
    print(f"{total:>9}  total ({total / 2**20:.2f} MiB)")
    if args.check_repro:
        with tempfile.TemporaryDirectory() as tmp2:
            generate(tmp2)
            diff = [n for n in sorted(os.listdir(args.out))
                    if not os.path.exists(os.path.join(tmp2, n)) or sha256(os.path.join(tmp2, n)) != sha256(os.path.join(args.out, n))]
        print("reproducible: " + ("yes" if not diff else "NO, differs: " + ", ".join(diff)))
    if args.snr:
        print_snr_table(compare_resamplers(args.out, files))


if __name__ == "__main__":
    main()
