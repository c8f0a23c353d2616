#!/usr/bin/env python3
"""Training-step speed of `mert pretrain` against a PyTorch step of the same model (issue 6).

The same shape (MERT-v1-95M by default: 12 x 768, post-LN, dropout 0.1, LayerDrop 0.05) trains
on the same crops per step (batch x crop seconds) with the same thread count:

- torch: transformers' HubertModel in train mode, eager attention, the masked frames replaced
  by its learned mask embedding (80% of frames, as MERT's span masking gives), a linear CQT
  head (hidden -> 336) with MSE on the masked frames, backward, AdamW step.
- mert: `mert pretrain` on a run file of that preset (CQT teacher only, no noise mixture so
  the steps do the same work), its per-step `samples_per_s` from metrics.jsonl.

Both report the median samples/s over the steps after the first (warm-up). The kit's step does
a little more (the conv-feature penalty, the 0.1 gradient scale on the conv features); the
torch step is the lower bound of the recipe's cost. Runs alternate torch, mert, torch, mert.

    ~/.cache/mert-ref-venv/bin/python scripts/bench_train_vs_torch.py \
        --audio /usr/share/games/wesnoth/1.16/data/core/music [--shape 95m] [--batch 2] \
        [--crop 5] [--steps 6] [--threads 2] [--rounds 2] [--cpu | --backend wgpu] [--json OUT]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))

PRESET_NAMES = {"95m": "mert-v1-95m", "330m": "mert-v1-330m", "tiny": "tiny"}


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--audio", required=True, help="a folder of music for the kit's run")
    p.add_argument("--shape", default="95m", choices=sorted(PRESET_NAMES))
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--backend", default="cpu", help="the kit's --backend (torch: cuda when wgpu/cuda and available)")
    p.add_argument("--mert", default=None, help="path of the mert binary")
    p.add_argument("--json", default=None)
    return p.parse_args()


def torch_round(args, gen_mert, torch):
    cfg, _ = gen_mert.PRESETS[args.shape]
    device = "cuda" if args.backend != "cpu" and torch.cuda.is_available() else "cpu"
    model = gen_mert.build_model(cfg).to(device)
    model.config.mask_time_prob = 0.0  # masks come from the step below
    model.train()
    hidden = model.config.hidden_size
    head = torch.nn.Linear(hidden, 336).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    samples = int(args.crop * 24000)
    rates = []
    for _ in range(args.steps):
        audio = torch.randn(args.batch, samples, device=device) * 0.1
        frames = model._get_feat_extract_output_lengths(samples)
        frames = int(frames)
        mask = torch.rand(args.batch, frames, device=device) < 0.8
        target = torch.randn(args.batch, frames, 336, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model(audio, mask_time_indices=mask).last_hidden_state
        loss = torch.nn.functional.mse_loss(head(out[mask]), target[mask])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        float(loss.detach())
        if device == "cuda":
            torch.cuda.synchronize()
        rates.append(args.batch / (time.perf_counter() - t0))
    return statistics.median(rates[1:]), device


def mert_round(args, mert, work):
    run_file = os.path.join(work, "run.toml")
    with open(run_file, "w") as f:
        f.write(
            f"""[model]
preset = "{PRESET_NAMES[args.shape]}"
[data]
train = ["{args.audio}"]
crop_seconds = {args.crop}
segment_seconds = 30.0
cache = "{os.path.join(work, 'cache')}"
[train]
max_steps = {args.steps}
batch_size = {args.batch}
log_every = 1
checkpoint_every = 1000000
keep_checkpoints = 1
license = "bench"
[augment]
enabled = false
[teachers]
cqt = true
"""
        )
    out = os.path.join(work, f"run-{time.time_ns()}")
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    cmd = ["/usr/bin/time", "-f", "%M", mert, "pretrain", "--config", run_file, "--out", out,
           "--quiet", "--backend", args.backend]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"mert pretrain failed: {res.stderr.strip()}")
    rss_mb = int(res.stderr.strip().splitlines()[-1]) / 1024
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rates = [json.loads(line)["samples_per_s"] for line in f]
    return statistics.median(rates[1:]), rss_mb


def main():
    args = parse()
    if args.steps < 3:
        sys.exit("--steps: expected at least 3 (the first is a warm-up)")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch  # noqa: E402 (after OMP_NUM_THREADS)
    import gen_mert

    torch.set_num_threads(args.threads)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    mert = args.mert or os.path.join(target, "release", "mert")
    if not os.path.exists(mert):
        sys.exit(f"{mert}: not found; build it with `cargo build --release -p mert-train`")
    rows = {"torch": [], "mert": []}
    with tempfile.TemporaryDirectory() as work:
        # The kit's corpus cache is built once, outside the timed rounds.
        mert_round(argparse.Namespace(**{**vars(args), "steps": 3}), mert, work)
        rss = 0.0
        for r in range(args.rounds):
            t, device = torch_round(args, gen_mert, torch)
            m, rss = mert_round(args, mert, work)
            rows["torch"].append(t)
            rows["mert"].append(m)
            print(f"round {r + 1}: torch ({device}) {t:.3f} samples/s, mert ({args.backend}) {m:.3f} samples/s", flush=True)
    torch_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t, m = statistics.median(rows["torch"]), statistics.median(rows["mert"])
    summary = {
        "shape": args.shape,
        "batch": args.batch,
        "crop_seconds": args.crop,
        "threads": args.threads,
        "torch": torch.__version__,
        "torch_samples_per_s": round(t, 4),
        "mert_samples_per_s": round(m, 4),
        "mert_over_torch_speed": round(m / t, 3),
        "torch_peak_rss_mb": round(torch_rss, 1),
        "mert_peak_rss_mb": round(rss, 1),
    }
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
