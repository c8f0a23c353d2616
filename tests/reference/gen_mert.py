#!/usr/bin/env python3
"""Reference-fixture generator for the MERT encoder (HuBERT architecture).

Builds a randomly initialised `transformers.HubertModel` for a MERT config preset,
perturbs its normalisation/bias parameters so that wiring mistakes show, and writes:

  DIR/config.json           MERT-style config (official field names, model_type "mert_model")
  DIR/model.safetensors     state dict, legacy weight-norm names (weight_g / weight_v)
  DIR/pytorch_model.bin     torch.save of the same state dict (zip layout, prefix "pytorch_model/")
  DIR/reference.safetensors inputs, conv features, every hidden state, padded-batch case
  DIR/input0.wav            row 0 of input_raw, 24 kHz mono 32-bit float
  DIR/input0_16k_pcm16.wav  same signal synthesised at 44.1 kHz, 16-bit PCM stereo
  DIR_param/ (tiny only)    config.json + pytorch_model.bin with parametrization names
                            (zip prefix "archive/")

Usage:
  gen_mert.py --preset {tiny,tiny_preln,tiny_layer,95m,330m} --out DIR [--seconds S]
  gen_mert.py --all-small       # the three tiny presets into tests/fixtures/
"""

import argparse
import copy
import json
import os
import struct
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor  # noqa: E402

SAMPLE_RATE = 24000
ALT_RATE = 44100
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")

# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------

# MERT-v1-95M config.json fields (spec section 1.2).
CONFIG_95M = {
    "activation_dropout": 0.0,
    "apply_spec_augment": True,
    "architectures": ["MERTModel"],
    "attention_dropout": 0.1,
    "attention_relax": -1.0,
    "auto_map": {
        "AutoConfig": "configuration_MERT.MERTConfig",
        "AutoModel": "modeling_MERT.MERTModel",
    },
    "bos_token_id": 1,
    "classifier_proj_size": 256,
    "conv_bias": False,
    "conv_dim": [512, 512, 512, 512, 512, 512, 512],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "ctc_loss_reduction": "sum",
    "ctc_zero_infinity": False,
    "deepnorm": False,
    "do_stable_layer_norm": False,
    "eos_token_id": 2,
    "feat_extract_activation": "gelu",
    "feat_extract_dropout": 0.0,
    "feat_extract_norm": "group",
    "feat_proj_dropout": 0.1,
    "feat_proj_layer_norm": True,
    "feature_extractor_cqt": False,
    "feature_extractor_cqt_bins": 336,
    "final_dropout": 0.1,
    "gradient_checkpointing": False,
    "hidden_act": "gelu",
    "hidden_dropout": 0.1,
    "hidden_dropout_prob": 0.1,
    "hidden_size": 768,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "layerdrop": 0.05,
    "mask_feature_length": 10,
    "mask_feature_min_masks": 0,
    "mask_feature_prob": 0.0,
    "mask_time_length": 10,
    "mask_time_min_masks": 2,
    "mask_time_prob": 0.05,
    "model_type": "mert_model",
    "num_attention_heads": 12,
    "num_conv_pos_embedding_groups": 16,
    "num_conv_pos_embeddings": 128,
    "num_feat_extract_layers": 7,
    "num_hidden_layers": 12,
    "pad_token_id": 0,
    "sample_rate": 24000,
    "tokenizer_class": "Wav2Vec2CTCTokenizer",
    "torch_dtype": "float32",
    "transformers_version": transformers.__version__,
    "use_weighted_layer_sum": False,
    "vocab_size": 32,
}


def _derive(base, **changes):
    cfg = copy.deepcopy(base)
    cfg.update(changes)
    return cfg


CONFIG_330M = _derive(
    CONFIG_95M,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    do_stable_layer_norm=True,
    attention_relax=32.0,
    mask_time_prob=0.075,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    final_dropout=0.0,
    layerdrop=0.0,
)

CONFIG_TINY = _derive(
    CONFIG_95M,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=[32] * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)

PRESETS = {
    "tiny": (CONFIG_TINY, 2.0),
    "tiny_preln": (_derive(CONFIG_TINY, do_stable_layer_norm=True), 2.0),
    "tiny_layer": (_derive(CONFIG_TINY, feat_extract_norm="layer", conv_bias=True), 2.0),
    "95m": (CONFIG_95M, 5.0),
    "330m": (CONFIG_330M, 5.0),
}

SMALL_DIRS = {"tiny": "mert_tiny", "tiny_preln": "mert_tiny_preln", "tiny_layer": "mert_tiny_layer"}

# Keys of the MERT config that HubertConfig must not receive (class-level / informational).
NON_HF_KEYS = ("model_type", "auto_map", "transformers_version")


def hubert_config(mert_cfg):
    kwargs = {k: v for k, v in mert_cfg.items() if k not in NON_HF_KEYS}
    cfg = HubertConfig(**kwargs)
    cfg._attn_implementation = "eager"
    return cfg


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

PARAM_G = "encoder.pos_conv_embed.conv.parametrizations.weight.original0"
PARAM_V = "encoder.pos_conv_embed.conv.parametrizations.weight.original1"
LEGACY_G = "encoder.pos_conv_embed.conv.weight_g"
LEGACY_V = "encoder.pos_conv_embed.conv.weight_v"


def build_model(mert_cfg):
    torch.manual_seed(0)
    model = HubertModel(hubert_config(mert_cfg))
    model.eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    gen = torch.Generator().manual_seed(1)

    def randn(shape):
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    with torch.no_grad():
        for _, mod in model.named_modules():
            if isinstance(mod, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                mod.weight.copy_(1.0 + 0.2 * randn(mod.weight.shape))
                mod.bias.copy_(0.1 * randn(mod.bias.shape))
            elif isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d)) and mod.bias is not None:
                mod.bias.copy_(0.05 * randn(mod.bias.shape))
        conv = model.encoder.pos_conv_embed.conv
        g = conv.parametrizations.weight.original0
        u = torch.rand(g.shape, generator=gen, dtype=torch.float32)
        g.copy_(g * (0.5 + u))  # positive, varies per kernel tap
    return model


def legacy_state_dict(model):
    sd = {}
    for k, v in model.state_dict().items():
        k = {PARAM_G: LEGACY_G, PARAM_V: LEGACY_V}.get(k, k)
        sd[k] = v.detach().clone().contiguous()
    assert LEGACY_G in sd and LEGACY_V in sd and "masked_spec_embed" in sd
    return sd


def param_state_dict(model):
    # model.state_dict() as is: an OrderedDict carrying its `_metadata` attribute, as a plain
    # torch.save(model.state_dict()) writes it (the legacy file holds a plain dict instead)
    return model.state_dict()


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def synth(n_samples, rate, rows=2):
    """0.4 sin(2pi f t) + 0.2 sin(3 * 2pi f t) + 0.05 N(0,1), f = 220 (b+1), rng 1234."""
    rng = np.random.default_rng(1234)
    noise = rng.standard_normal((rows, n_samples))
    t = np.arange(n_samples, dtype=np.float64) / rate
    out = np.empty((rows, n_samples), dtype=np.float64)
    for b in range(rows):
        w = 2.0 * np.pi * 220.0 * (b + 1) * t
        out[b] = 0.4 * np.sin(w) + 0.2 * np.sin(3.0 * w) + 0.05 * noise[b]
    return out.astype(np.float32)


def extractor():
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


# ---------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------


def run_model(model, x, attention_mask=None):
    captured = {}

    def hook(_m, _inp, out):
        captured["extract_features"] = out.transpose(1, 2).detach().clone()

    h = model.feature_extractor.register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = model(
                torch.from_numpy(x),
                attention_mask=None if attention_mask is None else torch.from_numpy(attention_mask),
                output_hidden_states=True,
                return_dict=True,
            )
    finally:
        h.remove()
    return {
        "extract_features": captured["extract_features"],
        "hidden_states": [t.detach().clone() for t in out.hidden_states],
        "last_hidden_state": out.last_hidden_state.detach().clone(),
    }


def max_diff(a, b):
    return float((a - b).abs().max().item())


def outputs_diff(ref, new):
    d = max_diff(ref["last_hidden_state"], new["last_hidden_state"])
    d = max(d, max_diff(ref["extract_features"], new["extract_features"]))
    for a, b in zip(ref["hidden_states"], new["hidden_states"]):
        d = max(d, max_diff(a, b))
    return d


def fresh_model(mert_cfg, sd):
    torch.manual_seed(4321)  # different init, so the loaded weights must carry everything
    m = HubertModel(hubert_config(mert_cfg))
    m.eval()
    m.load_state_dict(sd, strict=True)
    return m


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def canonicalize_safetensors_metadata(path):
    """Sort the __metadata__ keys in the header so that reruns give identical bytes.

    The safetensors writer emits __metadata__ in hash-map order; sorting keeps the
    header length, so only the header bytes are rewritten in place.
    """
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


def write_config(path, mert_cfg):
    with open(path, "w") as f:
        json.dump(mert_cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def generate(preset, out_dir, seconds=None, param_dir=None):
    mert_cfg, default_seconds = PRESETS[preset]
    seconds = default_seconds if seconds is None else float(seconds)
    os.makedirs(out_dir, exist_ok=True)
    n = int(round(seconds * SAMPLE_RATE))

    model = build_model(mert_cfg)
    sd = legacy_state_dict(model)

    write_config(os.path.join(out_dir, "config.json"), mert_cfg)
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    torch.save(sd, os.path.join(out_dir, "pytorch_model.bin"))  # zip prefix "pytorch_model/"

    # --- unpadded batch
    x_raw = synth(n, SAMPLE_RATE)
    fe = extractor()
    enc = fe(list(x_raw), sampling_rate=SAMPLE_RATE, padding=True, return_tensors="np")
    x = np.ascontiguousarray(enc["input_values"].astype(np.float32))
    ref = run_model(model, x)

    # --- padded batch: row 1 keeps its first 60 % of samples
    n1 = int(0.6 * n)
    enc_m = fe([x_raw[0], x_raw[1, :n1]], sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="np")
    xm = np.ascontiguousarray(enc_m["input_values"].astype(np.float32))
    am = enc_m["attention_mask"].astype(np.int64)
    assert xm.shape == (2, n) and int(am[1].sum()) == n1 and float(np.abs(xm[1, n1:]).max()) == 0.0
    ref_m = run_model(model, xm, am)
    frames = ref["last_hidden_state"].shape[1]
    frame_mask = model._get_feature_vector_attention_mask(frames, torch.from_numpy(am)).to(torch.float32)

    # --- round trip through the written files into freshly initialised models
    rt = {}
    sd_file = load_file(os.path.join(out_dir, "model.safetensors"))
    m2 = fresh_model(mert_cfg, sd_file)
    rt["safetensors"] = max(outputs_diff(ref, run_model(m2, x)), outputs_diff(ref_m, run_model(m2, xm, am)))
    sd_bin = torch.load(os.path.join(out_dir, "pytorch_model.bin"), weights_only=True)
    m3 = fresh_model(mert_cfg, sd_bin)
    rt["bin"] = outputs_diff(ref, run_model(m3, x))
    if param_dir is not None:
        os.makedirs(param_dir, exist_ok=True)
        write_config(os.path.join(param_dir, "config.json"), mert_cfg)
        with open(os.path.join(param_dir, "pytorch_model.bin"), "wb") as f:
            torch.save(param_state_dict(model), f)  # file object -> zip prefix "archive/"
        sd_p = torch.load(os.path.join(param_dir, "pytorch_model.bin"), weights_only=True)
        assert PARAM_G in sd_p and LEGACY_G not in sd_p
        rt["param_bin"] = outputs_diff(ref, run_model(fresh_model(mert_cfg, sd_p), x))
    roundtrip = max(rt.values())

    tensors = {
        "input_raw": torch.from_numpy(x_raw),
        "input": torch.from_numpy(x),
        "extract_features": ref["extract_features"],
        "last_hidden_state": ref["last_hidden_state"],
        "masked.input": torch.from_numpy(xm),
        "masked.attention_mask": torch.from_numpy(am.astype(np.float32)),
        "masked.frame_mask": frame_mask,
    }
    for i, h in enumerate(ref["hidden_states"]):
        tensors[f"hidden_states.{i}"] = h
    for i, h in enumerate(ref_m["hidden_states"]):
        tensors[f"masked.hidden_states.{i}"] = h
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {
        "preset": preset,
        "seconds": repr(seconds),
        "sample_rate": str(SAMPLE_RATE),
        "samples": str(n),
        "frames": str(frames),
        "num_hidden_states": str(len(ref["hidden_states"])),
        "masked_row1_samples": str(n1),
        "masked_attention_mask_dtype": "float32 (1.0 = real sample, 0.0 = padding)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "attn_implementation": "eager",
        "roundtrip_max_diff": repr(roundtrip),
        "roundtrip_max_diff_detail": json.dumps(rt, sort_keys=True),
    }
    ref_path = os.path.join(out_dir, "reference.safetensors")
    save_file(tensors, ref_path, metadata=meta)
    canonicalize_safetensors_metadata(ref_path)

    # --- audio files
    wav_path = os.path.join(out_dir, "input0.wav")
    sf.write(wav_path, x_raw[0], SAMPLE_RATE, subtype="FLOAT", format="WAV")
    zero_wav_peak_timestamp(wav_path)
    alt = synth(int(round(seconds * ALT_RATE)), ALT_RATE)[0]
    sf.write(
        os.path.join(out_dir, "input0_16k_pcm16.wav"),
        np.stack([alt, alt], axis=1),
        ALT_RATE,
        subtype="PCM_16",
        format="WAV",
    )

    summarize(preset, out_dir, ref, rt, param_dir)
    return ref, rt


def summarize(preset, out_dir, ref, rt, param_dir):
    hs = ref["hidden_states"]
    print(f"== {preset} -> {out_dir}")
    print(f"   frames {hs[0].shape[1]}, hidden states {len(hs)}, D {hs[0].shape[2]}")
    for i, h in enumerate(hs):
        print(f"   hidden_states[{i:2d}] mean {h.mean().item():+.6f} std {h.std().item():.6f}")
    ef = ref["extract_features"]
    print(f"   extract_features {tuple(ef.shape)} mean {ef.mean().item():+.6f} std {ef.std().item():.6f}")
    print(f"   round-trip max diff {json.dumps(rt, sort_keys=True)}")
    dirs = [out_dir] + ([param_dir] if param_dir else [])
    for d in dirs:
        total = 0
        for name in sorted(os.listdir(d)):
            size = os.path.getsize(os.path.join(d, name))
            total += size
            print(f"   {os.path.relpath(os.path.join(d, name), os.path.dirname(out_dir))}: {size} B")
        print(f"   {os.path.basename(d)} total {total} B")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--out")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--all-small", action="store_true", help="write tiny, tiny_preln, tiny_layer to tests/fixtures/")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    if args.all_small:
        for preset, sub in SMALL_DIRS.items():
            out = os.path.join(FIXTURES, sub)
            param = os.path.join(FIXTURES, sub + "_param") if preset == "tiny" else None
            generate(preset, out, args.seconds, param)
        return
    if not args.preset or not args.out:
        ap.error("--preset and --out are required unless --all-small")
    param = args.out.rstrip("/") + "_param" if args.preset == "tiny" else None
    generate(args.preset, args.out, args.seconds, param)


if __name__ == "__main__":
    main()
