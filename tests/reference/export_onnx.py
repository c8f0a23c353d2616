#!/usr/bin/env python3
"""Export a kit model file's backbone to ONNX through the reference `transformers` HubertModel.

The kit file is a safetensors file with Hugging Face Hubert key names and its MERT config in
the `mert.config` metadata (core/src/load/kit.rs); `head.*` tensors (the tagging head) are
left out. Only f32 kit files are exported (quantized ones would need dequantizing first).
The graph takes `input_values` [1, samples] (normalised audio at the model's rate; the sample
axis is dynamic) and gives `last_hidden_state` [1, frames, hidden], or with `--part features`
only the conv feature encoder's output `features` [1, channels, frames]. Used by
scripts/bench-web to time onnxruntime-web against the kit's own WASM build on the same weights.

Usage: export_onnx.py MODEL.safetensors OUT.onnx [--part backbone|features] [--seconds S] [--opset N]
"""

import argparse
import warnings
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402
from transformers import HubertConfig, HubertModel  # noqa: E402

# The TorchScript exporter is deprecated but gives a plain graph with a dynamic sample axis; its
# tracer notes about shape asserts in the attention are expected.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

# MERT config keys HubertConfig must not receive (informational or MERT-only, unused at
# inference for the exported shapes).
NON_HF_KEYS = ("model_type", "auto_map", "transformers_version")


def load_kit(path):
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if "mert.config" not in meta:
            sys.exit(f"{path}: not a kit model file (no mert.config metadata)")
        quant = meta.get("mert.quant", "f32")
        if quant != "f32":
            sys.exit(f"{path}: {quant} weights; export an f32 kit file")
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("head.")}
    return json.loads(meta["mert.config"]), tensors


def build(config, tensors):
    kwargs = {k: v for k, v in config.items() if k not in NON_HF_KEYS}
    cfg = HubertConfig(**kwargs)
    cfg._attn_implementation = "eager"
    model = HubertModel(cfg).eval()
    # The kit stores the positional conv's weight with the weight norm folded in.
    conv = model.encoder.pos_conv_embed.conv
    if parametrize.is_parametrized(conv):
        parametrize.remove_parametrizations(conv, "weight")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k != "masked_spec_embed"]
    if missing or unexpected:
        sys.exit(f"weights do not fit HubertModel: missing {missing}, unexpected {unexpected}")
    return model


class LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values):
        return self.model(input_values).last_hidden_state


class Features(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.encoder = model.feature_extractor

    def forward(self, input_values):
        return self.encoder(input_values)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--part", choices=("backbone", "features"), default="backbone")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of the tracing input")
    ap.add_argument("--opset", type=int, default=18)
    args = ap.parse_args()

    config, tensors = load_kit(args.model)
    model = build(config, tensors)
    wrapped = (LastHidden(model) if args.part == "backbone" else Features(model)).eval()
    output = "last_hidden_state" if args.part == "backbone" else "features"
    frames_axis = 1 if args.part == "backbone" else 2
    n = int(round(args.seconds * config["sample_rate"]))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, n)).astype(np.float32))
    with torch.no_grad():
        torch.onnx.export(
            wrapped,
            (x,),
            args.out,
            input_names=["input_values"],
            output_names=[output],
            dynamic_axes={"input_values": {1: "samples"}, output: {frames_axis: "frames"}},
            opset_version=args.opset,
            dynamo=False,
        )
        y = wrapped(x)
    onnx.checker.check_model(onnx.load(args.out))
    print(json.dumps({
        "onnx": args.out,
        "part": args.part,
        "bytes": os.path.getsize(args.out),
        "torch": torch.__version__,
        "onnx_version": onnx.__version__,
        "opset": args.opset,
        "input": [1, n],
        "output": list(y.shape),
        "parameters": sum(p.numel() for p in wrapped.parameters()),
    }))


if __name__ == "__main__":
    main()
