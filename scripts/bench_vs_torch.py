#!/usr/bin/env python3
"""Forward-pass speed of `mert bench` against PyTorch `transformers` on the same CPU (issue 11).

For each shape (MERT-v1-95M, MERT-v1-330M) the same randomly initialised weights are run by
transformers' HubertModel (f32, eager attention, inference mode) and by `mert bench` on the
same audio lengths with the same thread count; both take the median of several timed passes
after a warm-up. Runs alternate (torch, mert, torch, mert ...) so that load from other
processes on a shared machine hits both alike. The figure is the ratio mert / torch.

Needs the reference environment (tests/reference/setup.sh: torch, transformers) and a release
build of `mert`. Optionally a q8 row: the same weights quantized by `mert quantize`.

    ~/.cache/mert-ref-venv/bin/python scripts/bench_vs_torch.py \
        [--shapes 95m,330m] [--seconds 5,30,120] [--threads 2] [--repeats 3] [--q8] [--json OUT]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="95m,330m")
    p.add_argument("--seconds", default="5,30,120")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--q8", action="store_true", help="also time the q8-quantized kit file")
    p.add_argument("--work", default=os.path.expanduser("~/.cache/mert-bench"))
    p.add_argument("--mert", default=None, help="path of the mert binary")
    p.add_argument("--json", default=None, help="write the rows as JSON here")
    return p.parse_args()


def main():
    args = parse()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch  # noqa: E402 (after OMP_NUM_THREADS)
    import gen_mert  # the fixture generator's model builder: same weights, same config

    torch.set_num_threads(args.threads)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    mert = args.mert or os.path.join(target, "release", "mert")
    if not os.path.exists(mert):
        sys.exit(f"{mert}: not found; build it with `cargo build --release -p mert-train`")
    rows = []
    for shape in args.shapes.split(","):
        cfg, _ = gen_mert.PRESETS[shape]
        folder = os.path.join(args.work, f"hf-{shape}")
        os.makedirs(folder, exist_ok=True)
        model = gen_mert.build_model(cfg)
        gen_mert.write_config(os.path.join(folder, "config.json"), cfg)
        from safetensors.torch import save_file

        save_file(gen_mert.legacy_state_dict(model), os.path.join(folder, "model.safetensors"))
        models = {"f32": folder}
        if args.q8:
            q8 = os.path.join(args.work, f"{shape}-q8.safetensors")
            subprocess.run(
                [mert, "quantize", folder, "--scheme", "q8", "--out", q8], check=True
            )
            models["q8"] = q8
        for seconds in [float(s) for s in args.seconds.split(",")]:
            x = torch.from_numpy(gen_mert.synth(int(seconds * 24000), 24000, rows=1))
            with torch.inference_mode():
                model(x)  # warm-up

                def torch_once():
                    t = time.perf_counter()
                    model(x)
                    return time.perf_counter() - t

                def mert_once(path):
                    out = subprocess.run(
                        [mert, "--quiet", "bench", "--model", path, "--seconds", str(seconds),
                         "--threads", str(args.threads), "--repeats", "1", "--json"],
                        check=True, capture_output=True, text=True,
                    ).stdout
                    return json.loads(out)

                torch_t, mert_t = [], {k: [] for k in models}
                rss = {}
                for _ in range(args.repeats):
                    torch_t.append(torch_once())
                    for name, path in models.items():
                        r = mert_once(path)
                        mert_t[name].append(r["forward_s_median"])
                        rss[name] = r["peak_rss_mb"]
            t_med = statistics.median(torch_t)
            for name in models:
                m_med = statistics.median(mert_t[name])
                row = {
                    "shape": shape, "weights": name, "seconds": seconds,
                    "threads": args.threads, "torch_s": t_med, "mert_s": m_med,
                    "ratio": m_med / t_med, "mert_peak_rss_mb": rss[name],
                }
                rows.append(row)
                print(f"{shape:>5} {name:>4} {seconds:6.0f} s audio  torch {t_med:7.3f} s  "
                      f"mert {m_med:7.3f} s  ratio {m_med / t_med:5.2f}  "
                      f"(mert peak RSS {rss[name]:.0f} MB)", flush=True)
        del model
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
