#!/usr/bin/env python3
"""ADPCM WAV fixtures and their libsndfile decode.

Encodes the 16-bit WAV fixtures `wav_s16_22050_mono.wav` and `wav_s16_44100_stereo.wav` as
Microsoft ADPCM and IMA ADPCM with soundfile (libsndfile), and writes into tests/fixtures/audio:

  ms_adpcm_22050_mono.wav, ms_adpcm_44100_stereo.wav,
  ima_adpcm_22050_mono.wav, ima_adpcm_44100_stereo.wav
  adpcm_reference.safetensors   <name>.decoded: libsndfile's decode, downmixed to mono by the
                                channel mean (float64, rounded once to float32), float32

libsndfile decodes Microsoft ADPCM as Microsoft's codec does (an arithmetic shift in the
predictor) and IMA ADPCM as the IMA reference does (the difference built by shifts and adds):
the decoders the kit is checked against.

Usage: gen_adpcm.py [--check]   (in the venv of tests/reference/setup.sh; --check compares
                                 with the committed files instead of writing)
"""

import argparse
import io
import os
import sys

import numpy as np
import soundfile as sf
from safetensors.numpy import load_file, save_file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
AUDIO = os.path.join(REPO_ROOT, "tests", "fixtures", "audio")
FILES = [
    ("ms_adpcm_22050_mono.wav", "wav_s16_22050_mono.wav", "MS_ADPCM"),
    ("ms_adpcm_44100_stereo.wav", "wav_s16_44100_stereo.wav", "MS_ADPCM"),
    ("ima_adpcm_22050_mono.wav", "wav_s16_22050_mono.wav", "IMA_ADPCM"),
    ("ima_adpcm_44100_stereo.wav", "wav_s16_44100_stereo.wav", "IMA_ADPCM"),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    tensors, encoded = {}, {}
    for name, source, subtype in FILES:
        x, rate = sf.read(os.path.join(AUDIO, source), dtype="float64", always_2d=True)
        buf = io.BytesIO()
        sf.write(buf, x, rate, format="WAV", subtype=subtype)
        encoded[name] = buf.getvalue()
        y, _ = sf.read(io.BytesIO(encoded[name]), dtype="float64", always_2d=True)
        tensors[f"{name}.decoded"] = y.mean(axis=1).astype(np.float32)
    ref_path = os.path.join(AUDIO, "adpcm_reference.safetensors")
    if args.check:
        old = load_file(ref_path)
        same = all(np.array_equal(old[k], v) for k, v in tensors.items())
        same &= all(open(os.path.join(AUDIO, n), "rb").read() == b for n, b in encoded.items())
        print("identical" if same else "DIFFERENT")
        sys.exit(0 if same else 1)
    for name, data in encoded.items():
        with open(os.path.join(AUDIO, name), "wb") as f:
            f.write(data)
    save_file(tensors, ref_path, metadata={"libsndfile": sf.__libsndfile_version__})
    print("wrote", [f[0] for f in FILES], "and adpcm_reference.safetensors")


if __name__ == "__main__":
    main()
