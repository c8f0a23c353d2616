#!/usr/bin/env python3
"""Reference fixture for MERT's pretraining loss (spec sections 4.4-4.5), plain torch.

Seeded inputs (torch.Generator, seed 0) and the loss terms as the reference recipe defines them:
for each of K codebooks, logits = cosine_similarity(final_proj(x)[k], label_embs[k]) / 0.1 over all
V classes, cross-entropy summed over masked frames; the CQT head's MSE (mean over masked frames x
bins); features_pen = mean(conv_features ** 2) over the whole batch; and

    loss = sum_k sum_t CE_k(t) + 10 * features_pen * N + 1 * MSE * N,   N = masked frames.

Writes DIR/loss_io.safetensors (float32 unless stated):
  conv_features (B, T, C)    conv output before the feature LayerNorm
  last          (B, T, D)    final encoder output
  mask          (B, T) u8    1 = masked frame
  final_proj.weight (K*F, D), final_proj.bias (K*F,)   torch layout [out, in]
  label_embs    (K*V, F)
  cqt_head.weight (BINS, D), cqt_head.bias (BINS,)
  codes         (B, T, K) i64   targets in 0..V
  cqt           (B, T, BINS)    targets
  n_masked, ce_sum, features_pen, mse, loss, loss_per_n   (1,) float64 scalars

Usage: gen_loss.py --out tests/fixtures/pretrain_loss
"""

import argparse
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

B, T, C, D = 2, 40, 16, 32
K, V, FD, BINS = 8, 1028, 16, 336


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)

    conv = torch.randn(B, T, C, generator=g)
    last = torch.randn(B, T, D, generator=g)
    mask = torch.rand(B, T, generator=g) < 0.55
    w_proj = torch.randn(K * FD, D, generator=g) * 0.2
    b_proj = torch.randn(K * FD, generator=g) * 0.1
    label_embs = torch.rand(K * V, FD, generator=g)
    w_cqt = torch.randn(BINS, D, generator=g) * 0.2
    b_cqt = torch.randn(BINS, generator=g) * 0.1
    codes = torch.randint(0, V, (B, T, K), generator=g)
    cqt = torch.randn(B, T, BINS, generator=g).abs()

    x = last[mask]  # (N, D), row-major over (b, t)
    n = x.shape[0]
    proj = F.linear(x, w_proj, b_proj).view(n, K, FD)
    targets = codes[mask]  # (N, K)
    ce_sum = torch.zeros((), dtype=torch.float64)
    for k in range(K):
        emb = label_embs[k * V:(k + 1) * V]
        logits = F.cosine_similarity(proj[:, k].unsqueeze(1), emb.unsqueeze(0), dim=-1) / 0.1
        ce_sum += F.cross_entropy(logits, targets[:, k], reduction="sum").double()
    features_pen = conv.pow(2).mean().double()
    mse = F.mse_loss(F.linear(x, w_cqt, b_cqt), cqt[mask]).double()
    loss = ce_sum + 10 * features_pen * n + mse * n

    scalar = lambda v: torch.tensor([float(v)], dtype=torch.float64)
    tensors = {
        "conv_features": conv,
        "last": last,
        "mask": mask.to(torch.uint8),
        "final_proj.weight": w_proj,
        "final_proj.bias": b_proj,
        "label_embs": label_embs,
        "cqt_head.weight": w_cqt,
        "cqt_head.bias": b_cqt,
        "codes": codes,
        "cqt": cqt,
        "n_masked": scalar(n),
        "ce_sum": scalar(ce_sum),
        "features_pen": scalar(features_pen),
        "mse": scalar(mse),
        "loss": scalar(loss),
        "loss_per_n": scalar(loss / n),
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "loss_io.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path,
              metadata={"generator": "tests/reference/gen_loss.py", "torch": torch.__version__})
    print(f"{path}: N={n} ce_sum={float(ce_sum):.6f} features_pen={float(features_pen):.6f} "
          f"mse={float(mse):.6f} loss/N={float(loss / n):.6f}")


if __name__ == "__main__":
    main()
