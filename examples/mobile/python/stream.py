"""Streaming with the Python binding: feed a WAV file in 100 ms chunks, as a microphone
callback would, print each chunk of frames as it becomes final (with its top tag when the
model has a tagging head), then the whole stream's tags.

    scripts/mobile-bindings            # writes $CARGO_TARGET_DIR/mobile-bindings/python
    PYTHONPATH=target/mobile-bindings/python python3 examples/mobile/python/stream.py \\
        models/default/mert-tag-default.safetensors examples/audio/phrase.wav
"""

import struct
import sys
import wave

from mert_mobile import MertError, Model, Session


def show(chunks):
    for c in chunks:  # 75 frames per second of audio
        top = f"  top tag: {c.tags[0].name} {c.tags[0].p:.2f}" if c.tags else ""
        a, b = c.first_frame, c.first_frame + c.frames
        print(f"frames {a:5}..{b:<5} ({a / 75:6.2f}-{b / 75:6.2f} s) x {c.dim}{top}")


def main(model_path, wav_path):
    model = Model.from_path(model_path)
    with wave.open(wav_path) as w:
        rate, channels = w.getframerate(), w.getnchannels()
        session = Session(model, rate, channels)
        while raw := w.readframes(rate // 10):  # 100 ms
            pcm = [v / 32768.0 for v in struct.unpack(f"<{len(raw) // 2}h", raw)]
            show(session.push(pcm))
    show(session.finish())
    if model.tag_names():
        print("whole stream:", " ".join(f"{t.name} {t.p:.2f}" for t in session.tags()[:5]))


if __name__ == "__main__":
    try:
        main(*sys.argv[1:3])
    except MertError as e:
        sys.exit(f"error: {e}")
