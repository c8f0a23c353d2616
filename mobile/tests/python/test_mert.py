"""The UniFFI Python binding against the `mert` CLI (run by scripts/mobile-test):

    test_mert.py TINY_MODEL_DIR TINY_KIT_FILE TINY_Q8_FILE TAG_MODEL WORKDIR

WORKDIR as for mobile/tests/c/mert_test.c. Standard library only."""

import math
import struct
import sys
import wave

from mert_mobile import Embedding, MertError, Model, Session

failures = 0


def check(cond, msg):
    global failures
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        failures += 1


def read_wav(path):
    """16-bit PCM -> interleaved floats (sample / 32768, as the kit's decoder), rate, channels."""
    with wave.open(path) as w:
        assert w.getsampwidth() == 2, f"{path}: expected 16-bit PCM"
        raw = w.readframes(w.getnframes())
        pcm = [v / 32768.0 for v in struct.unpack(f"<{len(raw) // 2}h", raw)]
        return pcm, w.getframerate(), w.getnchannels()


def read_npy(path):
    with open(path, "rb") as f:
        b = f.read()
    assert b[:6] == b"\x93NUMPY", f"{path}: not .npy"
    header = 10 + struct.unpack("<H", b[8:10])[0]
    assert "'<f4'" in b[10:header].decode(), f"{path}: expected float32"
    n = (len(b) - header) // 4
    return list(struct.unpack(f"<{n}f", b[header:]))


def compare(what, e: Embedding, ref_path):
    ref = read_npy(ref_path)
    check(len(e.data) == e.frames * e.dim, f"{what}: data length")
    check(len(e.data) == len(ref), f"{what}: {len(e.data)} values, reference {len(ref)}")
    if len(e.data) != len(ref):
        return
    scale = max(abs(v) for v in ref)
    err = max(abs(a - b) if not math.isnan(a) else math.inf for a, b in zip(e.data, ref)) / scale
    print(f"{what:<34} {e.frames:5} frames x {e.dim:3}: max rel err {err:.2e}")
    check(err <= 1e-5, f"{what}: max rel err {err:.3e} > 1e-5")


def compare_tags(what, tags, ref_path):
    with open(ref_path) as f:
        want = f.read().split()
    got = [t.name for t in tags[: len(want)]]
    print(f"{what:<34} " + " ".join(f"{t.name} {t.p:.3f}" for t in tags[: len(want)]))
    check(got == want, f"{what}: top tags {got}, mert tag says {want}")
    check(all(a.p >= b.p for a, b in zip(tags, tags[1:])), f"{what}: sorted")


def stream(model, pcm, rate, channels):
    """Push chunks of odd sizes; returns the stitched embedding, the chunks seen before finish
    and the whole-stream tags (tagging models)."""
    s = Session(model, rate, channels)
    data, frames, early = [], 0, 0

    def take(chunks):
        nonlocal frames
        for c in chunks:
            check(c.first_frame == frames, f"chunk at {c.first_frame}, expected {frames}")
            check((c.tags is not None) == bool(model.tag_names()), "chunk tags iff tagging")
            data.extend(c.data)
            frames += c.frames

    sizes = [1, 4410, 333, 44100, 7919, 100000]
    at, k, n_frames = 0, 0, len(pcm) // channels
    while at < n_frames:
        n = min(sizes[k % len(sizes)], n_frames - at)
        k += 1
        chunks = s.push(pcm[at * channels : (at + n) * channels])
        early += len(chunks)
        take(chunks)
        at += n
    take(s.finish())
    check(s.frames() == frames, "frames() counts what was handed out")
    tags = s.tags() if model.tag_names() else None
    e = Embedding(first_frame=0, frames=frames, dim=model.dim(), data=data, tags=None)
    return e, early, tags


def expect(what, kind, f):
    try:
        f()
    except kind as e:
        msg = str(e)
        check(msg and "\n" not in msg, f"{what}: one-line message, got {msg!r}")
        print(f"  bad input ok: {what:<32} -> {type(e).__name__}: {msg}")
        return
    except Exception as e:  # noqa: BLE001 - the wrong kind of error is a failure too
        check(False, f"{what}: raised {type(e).__name__} ({e}), expected {kind.__name__}")
        return
    check(False, f"{what}: no error, expected {kind.__name__}")


def main():
    tiny_dir, kit, q8, tagger_path, work = sys.argv[1:6]
    pcm, rate, ch = read_wav(f"{work}/phrase.wav")
    long_pcm, long_rate, long_ch = read_wav(f"{work}/long.wav")

    tiny = Model.from_path(tiny_dir)
    compare("embed pcm (folder model)", tiny.embed(pcm, rate, ch), f"{work}/phrase.npy")
    compare("embed file (folder model)", tiny.embed_file(f"{work}/phrase.wav"), f"{work}/phrase.npy")
    with open(kit, "rb") as f:
        kit_bytes = f.read()
    compare("embed pcm (kit bytes)", Model.from_bytes(kit_bytes).embed(pcm, rate, ch), f"{work}/phrase.npy")
    compare("embed pcm (q8 kit file)", Model.from_path(q8).embed(pcm, rate, ch), f"{work}/phrase-q8.npy")

    e, early, _ = stream(tiny, long_pcm, long_rate, long_ch)
    compare("stream (24 s, odd chunks)", e, f"{work}/long.npy")
    check(early >= 3, f"expected chunks while pushing, got {early}")

    tagger = Model.from_path(tagger_path)
    compare_tags("tag pcm", tagger.tag(pcm, rate, ch), f"{work}/phrase.tags")
    compare_tags("tag file", tagger.tag_file(f"{work}/phrase.wav"), f"{work}/phrase.tags")
    _, _, tags = stream(tagger, long_pcm, long_rate, long_ch)
    compare_tags("stream tags (24 s)", tags, f"{work}/long.tags")

    nan_pcm = list(pcm)
    nan_pcm[1001] = math.nan
    expect("missing model file", MertError.ModelLoad, lambda: Model.from_path("/nonexistent/m.safetensors"))
    expect("truncated model bytes", MertError.ModelLoad, lambda: Model.from_bytes(kit_bytes[: len(kit_bytes) // 2]))
    expect("empty model bytes", MertError.ModelLoad, lambda: Model.from_bytes(b""))
    expect("NaN pcm", MertError.Audio, lambda: tiny.embed(nan_pcm, rate, ch))
    expect("zero channels", MertError.InvalidArgument, lambda: tiny.embed(pcm, rate, 0))
    expect("absurd sample rate", MertError.InvalidArgument, lambda: tiny.embed(pcm, 4_000_000_000, ch))
    expect("not whole frames", MertError.InvalidArgument, lambda: tiny.embed(pcm[:-1], rate, 2))
    expect("too short", MertError.Audio, lambda: tiny.embed(pcm[:20], rate, ch))
    expect("missing audio file", MertError.Audio, lambda: tiny.embed_file("/nonexistent/a.wav"))
    expect("empty model path", MertError.InvalidArgument, lambda: Model.from_path(""))
    expect("empty audio path", MertError.InvalidArgument, lambda: tiny.embed_file(""))
    expect("tag without a head", MertError.State, lambda: tiny.tag(pcm, rate, ch))
    s = Session(tiny, rate, ch)
    expect("session push NaN", MertError.Audio, lambda: s.push(nan_pcm))
    check(s.push(pcm) == [], "a refused chunk leaves the session usable")
    expect("session tags before finish", MertError.State, lambda: s.tags())
    s.finish()
    expect("push after finish", MertError.State, lambda: s.push(pcm))
    expect("finish twice", MertError.State, lambda: s.finish())
    expect("session zero channels", MertError.InvalidArgument, lambda: Session(tiny, rate, 0))

    if failures:
        print(f"{failures} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("Python binding: all checks passed")


if __name__ == "__main__":
    main()
