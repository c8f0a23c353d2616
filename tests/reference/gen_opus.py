#!/usr/bin/env python3
"""Opus fixtures and their reference decode by libopus's own tools.

Writes into tests/fixtures/audio/:
  opus_24000_mono.opus       wav_s16_24000_mono.wav through opusenc (32 kbit/s, mono)
  opus_24000_mono_gain.opus  the same stream with the OpusHead output gain set to -6 dB (the
                             header patched and the page CRC recomputed; opusenc has no option)
  opus_24000_mono_empty.opus the same stream with five 0-byte packets after the tenth packet
                             of its third page (carrying no audio; a decoder must not invent
                             any for them)
  opus_22050_6ch.opus        wav_f32_22050_6ch.wav through opusenc (96 kbit/s: 6 channels, so
                             channel mapping family 1, four streams of which two coupled)
  opus_48000_stereo.webm     gen_audio.py's opus_48000_stereo.opus remuxed by mkvmerge (WebM)
  opus_48000_stereo.mp4      gen_audio.py's opus_48000_stereo.opus remuxed by ffmpeg 5.1 (MP4:
                             `dOps` big-endian, the pre-skip also in the edit list)
  opus_24000_mono.mka        opus_24000_mono.opus remuxed by mkvmerge (Matroska; the container
                             records the input's 24 kHz, the stream decodes at 48 kHz). The same
                             packets as the Ogg files, so their reference is the Ogg one (Matroska
                             carries no end trim here: up to one frame of padding follows).
  opus_reference.safetensors float32 `<name>.decoded` for the Ogg files and for gen_audio.py's
                             opus_48000_stereo.opus: `opusdec --float --rate 48000` (libopus:
                             pre-skip and end trim from the granule positions, header gain
                             applied), downmixed to mono by the channel mean in float64.

Needs opus-tools, mkvtoolnix and ffmpeg from apt (opusenc/opusdec 0.2 with libopus 1.3.1, mkvmerge
v74 with `--engage no_variable_data` for reproducible files) and the reference venv
(numpy, soundfile, safetensors). opusenc runs with a fixed serial, so reruns give identical
bytes (`--check` compares them with the committed files).

Usage: gen_opus.py [--check]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
from safetensors.numpy import save_file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
AUDIO = os.path.join(REPO_ROOT, "tests", "fixtures", "audio")
ENCODED = [
    ("opus_24000_mono.opus", "wav_s16_24000_mono.wav", 32),
    ("opus_22050_6ch.opus", "wav_f32_22050_6ch.wav", 96),
]


def ogg_crc(page):
    """The Ogg page checksum (CRC-32, polynomial 0x04c11db7, no reflection, zero init)."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def with_gain(data, gain_q8):
    """The Ogg Opus file `data` with its OpusHead output gain set to `gain_q8` (Q7.8 dB)."""
    data = bytearray(data)
    assert data[:4] == b"OggS"
    segments = data[26]
    body = 27 + segments
    assert data[body:body + 8] == b"OpusHead"
    data[body + 16:body + 18] = int(gain_q8).to_bytes(2, "little", signed=True)
    page_len = body + sum(data[27:27 + segments])
    data[22:26] = b"\0\0\0\0"
    data[22:26] = ogg_crc(bytes(data[:page_len])).to_bytes(4, "little")
    return bytes(data)


def ogg_pages(data):
    """(header, lacing values, body) of each Ogg page."""
    at = 0
    while at < len(data):
        assert data[at:at + 4] == b"OggS", at
        n = data[at + 26]
        lacing = list(data[at + 27:at + 27 + n])
        start = at + 27 + n
        yield bytearray(data[at:at + 27]), lacing, data[start:start + sum(lacing)]
        at = start + sum(lacing)


def with_empty_packets(data, page, after, count):
    """`count` 0-byte packets inserted into page `page` after its `after`-th packet (an empty
    packet is a 0 in the lacing table), the page's CRC recomputed."""
    out = b""
    for k, (header, lacing, body) in enumerate(ogg_pages(data)):
        if k == page:
            ends = [i for i, v in enumerate(lacing) if v < 255]
            cut = ends[after - 1] + 1
            lacing = lacing[:cut] + [0] * count + lacing[cut:]
        header[26] = len(lacing)
        header[22:26] = b"\0\0\0\0"
        page_bytes = bytes(header) + bytes(lacing) + body
        out += page_bytes[:22] + ogg_crc(page_bytes).to_bytes(4, "little") + page_bytes[26:]
    return out


def decoded_mono(path):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.wav")
        subprocess.run(["opusdec", "--quiet", "--float", "--rate", "48000", path, out], check=True)
        samples, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == 48000
    return samples.astype(np.float64).mean(axis=1).astype(np.float32)


def build(tmp):
    """Encoded files into `tmp`; returns their names (plus the ffmpeg-made stereo file)."""
    for name, source, kbps in ENCODED:
        subprocess.run(["opusenc", "--quiet", "--serial", "7", "--bitrate", str(kbps),
                        os.path.join(AUDIO, source), os.path.join(tmp, name)], check=True)
    with open(os.path.join(tmp, "opus_24000_mono.opus"), "rb") as f:
        mono = f.read()
    with open(os.path.join(tmp, "opus_24000_mono_gain.opus"), "wb") as f:
        f.write(with_gain(mono, -6 * 256))
    with open(os.path.join(tmp, "opus_24000_mono_empty.opus"), "wb") as f:
        f.write(with_empty_packets(mono, 2, 10, 5))
    for out, source in [("opus_48000_stereo.webm", os.path.join(AUDIO, "opus_48000_stereo.opus")),
                        ("opus_24000_mono.mka", os.path.join(tmp, "opus_24000_mono.opus"))]:
        subprocess.run(["mkvmerge", "-q", "--engage", "no_variable_data"]
                       + (["--webm"] if out.endswith(".webm") else [])
                       + ["-o", os.path.join(tmp, out), source], check=True)
    # MP4 (ffmpeg's muxer, stream copy): the OpusHead fields move into a big-endian `dOps` box
    # and the pre-skip is repeated as the edit list's media time
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", os.path.join(AUDIO, "opus_48000_stereo.opus"),
                    "-c:a", "copy", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
                    "-f", "mp4", os.path.join(tmp, "opus_48000_stereo.mp4")], check=True)
    return [n for n, _, _ in ENCODED] + ["opus_24000_mono_gain.opus", "opus_24000_mono_empty.opus",
                                         "opus_48000_stereo.webm",
                                         "opus_24000_mono.mka", "opus_48000_stereo.mp4"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    version = subprocess.run(["opusenc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        names = build(tmp)
        if args.check:
            same = all(open(os.path.join(tmp, n), "rb").read() == open(os.path.join(AUDIO, n), "rb").read()
                       for n in names)
            print("identical" if same else "DIFFERS")
            sys.exit(0 if same else 1)
        for n in names:
            os.replace(os.path.join(tmp, n), os.path.join(AUDIO, n))
    tensors = {}
    for n in sorted(n for n in names + ["opus_48000_stereo.opus"] if n.endswith(".opus")):
        tensors[f"{n}.decoded"] = decoded_mono(os.path.join(AUDIO, n))
        print(f"{n}: {len(tensors[f'{n}.decoded'])} samples at 48000 Hz")
    meta = {"decoder": version + " (opusdec --float --rate 48000)", "downmix": "channel mean, float64",
            "files": json.dumps(sorted(tensors), sort_keys=True)}
    save_file(tensors, os.path.join(AUDIO, "opus_reference.safetensors"), metadata=meta)


if __name__ == "__main__":
    main()
