#!/usr/bin/env python3
"""CQT throughput: nnAudio (MERT's teacher, torch CPU) vs the Rust CQT in mert-core.

nnAudio half: `nnAudio.features.cqt.CQT` with MERT's arguments (spec section 4.3), torch CPU,
float32, `torch.inference_mode()`, on S seconds of deterministic noise (numpy default_rng(0),
uniform in [-0.5, 0.5)), batch 1. For 1 and then 2 torch threads: one warm-up call, then the median
(and min) of 5 timed calls.

Rust half: `cargo run --release -q -p mert-core --example bench_cqt -- --seconds S --threads N`
(or `--bin PATH` to a prebuilt binary taking the same flags), which prints one JSON line
`{"seconds_audio":S,"threads":N,"elapsed_s_median":X,"elapsed_s_min":Y,"audio_s_per_s":Z}`.
If the example does not exist yet, only the nnAudio half is printed (exit 0).

Run with the reference venv:
  ~/.cache/mert-ref-venv/bin/python scripts/bench_cqt.py [--seconds 60] [--bin PATH] [--json]
      [--threads 1,2] [--repeats 5] [--no-rust]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
RUST_EXAMPLE = os.path.join(REPO_ROOT, "core", "examples", "bench_cqt.rs")
SAMPLE_RATE = 24000
CQT_ARGS = dict(
    sr=SAMPLE_RATE,
    hop_length=320,
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


def bench_nnaudio(seconds, threads_list, repeats):
    import numpy as np
    import torch
    from nnAudio.features.cqt import CQT

    n = int(round(seconds * SAMPLE_RATE))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(1, n)).astype(np.float32)
    xt = torch.from_numpy(x)
    cqt = CQT(**CQT_ARGS).eval()
    rows = []
    for threads in threads_list:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            y = cqt(xt)  # warm-up
            assert tuple(y.shape) == (1, 336, 1 + n // 320) and y.dtype == torch.float32
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                y = cqt(xt)
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append(
            {
                "seconds_audio": seconds,
                "threads": threads,
                "elapsed_s_median": med,
                "elapsed_s_min": min(times),
                "audio_s_per_s": seconds / med,
            }
        )
        print(
            f"nnAudio  threads={threads}: median {med:.3f} s, min {min(times):.3f} s, "
            f"{seconds / med:.2f} audio-s/s",
            file=sys.stderr,
        )
    from importlib.metadata import version

    return rows, {"torch": torch.__version__, "nnaudio": version("nnAudio")}


def rust_command(args, threads):
    flags = ["--seconds", f"{args.seconds:g}", "--threads", str(threads)]
    if args.bin:
        return [args.bin] + flags
    return ["cargo", "run", "--release", "-q", "-p", "mert-core", "--example", "bench_cqt", "--"] + flags


def rust_available(args):
    """(available, reason)"""
    if args.no_rust:
        return False, "skipped (--no-rust)"
    if args.bin:
        if os.path.isfile(args.bin) and os.access(args.bin, os.X_OK):
            return True, ""
        return False, f"--bin {args.bin} is not an executable file"
    if not os.path.isfile(RUST_EXAMPLE):
        return False, "missing: core/examples/bench_cqt.rs does not exist yet"
    if shutil.which("cargo") is None:
        return False, "missing: cargo not on PATH"
    return True, ""


def bench_rust(args, threads_list):
    rows = []
    for threads in threads_list:
        cmd = rust_command(args, threads)
        print("running: " + " ".join(cmd), file=sys.stderr)
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"Rust bench failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}"
            )
        line = None
        for cand in reversed(proc.stdout.strip().splitlines()):
            cand = cand.strip()
            if cand.startswith("{") and cand.endswith("}"):
                line = cand
                break
        if line is None:
            raise RuntimeError(f"Rust bench printed no JSON line:\n{proc.stdout[-2000:]}")
        row = json.loads(line)
        for key in ("seconds_audio", "threads", "elapsed_s_median", "elapsed_s_min", "audio_s_per_s"):
            if key not in row:
                raise RuntimeError(f"Rust bench JSON lacks {key!r}: {line}")
        if int(row["threads"]) != threads:
            raise RuntimeError(f"Rust bench ran with threads={row['threads']}, asked {threads}")
        rows.append(row)
        print(
            f"Rust     threads={threads}: median {row['elapsed_s_median']:.3f} s, "
            f"min {row['elapsed_s_min']:.3f} s, {row['audio_s_per_s']:.2f} audio-s/s",
            file=sys.stderr,
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of audio (default 60)")
    ap.add_argument("--bin", help="prebuilt Rust bench binary (same flags as the cargo example)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default 5)")
    ap.add_argument("--no-rust", action="store_true", help="run the nnAudio half only")
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = ap.parse_args()
    threads_list = [int(t) for t in args.threads.split(",") if t.strip()]

    nn_rows, versions = bench_nnaudio(args.seconds, threads_list, args.repeats)
    ok, reason = rust_available(args)
    rust_rows, rust_error = None, None
    if ok:
        try:
            rust_rows = bench_rust(args, threads_list)
        except RuntimeError as e:
            rust_error = str(e)
            reason = "failed"
    else:
        print(f"Rust half {reason}", file=sys.stderr)

    results = []
    for i, nn in enumerate(nn_rows):
        entry = {"threads": nn["threads"], "nnaudio": nn}
        if rust_rows is not None:
            rs = rust_rows[i]
            entry["rust"] = rs
            entry["ratio_rust_over_nnaudio"] = rs["elapsed_s_median"] / nn["elapsed_s_median"]
        results.append(entry)

    if args.json:
        out = {
            "seconds_audio": args.seconds,
            "repeats": args.repeats,
            "cqt_args": CQT_ARGS,
            "torch": versions["torch"],
            "nnaudio": versions["nnaudio"],
            "rust": "ok" if rust_rows is not None else reason,
            "results": results,
        }
        if rust_error:
            out["rust_error"] = rust_error
        print(json.dumps(out, indent=2))
    else:
        print(f"CQT (MERT args), {args.seconds:g} s of audio at 24 kHz, median of {args.repeats} after 1 warm-up")
        head = f"{'threads':>7} | {'nnAudio s':>10} {'audio-s/s':>10} | {'Rust s':>10} {'audio-s/s':>10} | {'rust/nnAudio':>12}"
        print(head)
        print("-" * len(head))
        for e in results:
            nn = e["nnaudio"]
            if "rust" in e:
                rs = e["rust"]
                rust_part = f"{rs['elapsed_s_median']:>10.3f} {rs['audio_s_per_s']:>10.2f} | {e['ratio_rust_over_nnaudio']:>12.3f}"
            else:
                rust_part = f"{'-':>10} {'-':>10} | {'-':>12}"
            print(f"{e['threads']:>7} | {nn['elapsed_s_median']:>10.3f} {nn['audio_s_per_s']:>10.2f} | {rust_part}")
        if rust_rows is None:
            print(f"Rust half {reason}")
    if rust_error:
        print(rust_error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
