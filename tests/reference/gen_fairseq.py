#!/usr/bin/env python3
"""fairseq-layout training checkpoints of the tiny reference models.

For each tiny fixture folder (mert_tiny, mert_tiny_preln, mert_tiny_layer) this writes
DIR/checkpoint_fairseq.pt: the same weights as DIR/model.safetensors, saved with torch.save in
the layout fairseq's trainer writes (`Trainer.state_dict`): `cfg` (the resolved hydra config as
plain containers, MERT's `model` and `task` fields), `model` (an OrderedDict under the fairseq
module names of MERT's `mert_fairseq` model, pretraining heads and the CQT teacher's buffers
included), `optimizer_history`, `extra_state` (with numpy scalars, as fairseq's meters leave
them) and `last_optimizer_state` (Adam moments under integer keys). Its hidden states are
therefore DIR/reference.safetensors, so a loader is checked against transformers' outputs.

The module names follow MERT's fairseq model (`mert_fairseq/models/mert/mert_model.py`, built
on fairseq's wav2vec2 modules) and its official conversion map (`scripts/convert_MERT_HF.py`):
fairseq itself does not install on the pinned Python, so the file is written by torch.

Also tests/fixtures/fairseq_bad/: small fairseq-layout files to refuse (an `args`-only
checkpoint, a conformer model, an unknown module, and os.system payloads inside and outside
`model`, inside a numpy scalar's arguments and inside an argparse namespace's state).

Usage: gen_fairseq.py [--check]   (--check: regenerate in memory and compare with the files)
"""

import argparse
import collections
import io
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures")
FOLDERS = ["mert_tiny", "mert_tiny_preln", "mert_tiny_layer"]
CODEBOOKS, CODEBOOK_SIZE, FINAL_DIM, CQT_BINS = 8, 16, 8, 12


def fairseq_name(key, group_norm):
    """Reference (Hugging Face) key -> fairseq module path."""
    if key == "masked_spec_embed":
        return "mask_emb"
    for hf, fs in [
        ("feature_projection.layer_norm.", "layer_norm."),
        ("feature_projection.projection.", "post_extract_proj."),
        ("encoder.pos_conv_embed.conv.", "encoder.pos_conv.0."),
    ]:
        if key.startswith(hf):
            return fs + key[len(hf):]
    if key.startswith("feature_extractor.conv_layers."):
        i, kind, p = key[len("feature_extractor.conv_layers."):].split(".")
        if kind == "conv":
            return f"feature_extractor.conv_layers.{i}.0.{p}"
        # default mode: GroupNorm at index 2 of conv block 0; layer_norm mode: a
        # Sequential(TransposeLast, LayerNorm, TransposeLast) at index 2 of every block
        return f"feature_extractor.conv_layers.{i}.2.{p}" if group_norm else \
            f"feature_extractor.conv_layers.{i}.2.1.{p}"
    if key.startswith("encoder.layers."):
        i, rest = key[len("encoder.layers."):].split(".", 1)
        for hf, fs in [
            ("attention.", "self_attn."),
            ("layer_norm.", "self_attn_layer_norm."),
            ("feed_forward.intermediate_dense.", "fc1."),
            ("feed_forward.output_dense.", "fc2."),
            ("final_layer_norm.", "final_layer_norm."),
        ]:
            if rest.startswith(hf):
                return f"encoder.layers.{i}.{fs}{rest[len(hf):]}"
    if key.startswith("encoder.layer_norm."):
        return key
    raise KeyError(key)


def fairseq_cfg(config):
    """The resolved hydra config fairseq stores (`OmegaConf.to_container`), MERT's fields."""
    layers = list(zip(config["conv_dim"], config["conv_kernel"], config["conv_stride"]))
    first, rest = layers[0], layers[1:]
    # the expression style of MERT's yaml configs: runs of equal layers as `[(...)] * n`
    parts, run = [f"[{first}]"], []
    for layer in rest:
        if run and layer != run[0]:
            parts.append(f"[{run[0]}] * {len(run)}")
            run = []
        run.append(layer)
    parts.append(f"[{run[0]}] * {len(run)}")
    conv_feature_layers = " + ".join(parts).replace(" ", "").replace("+", " + ").replace("*", " * ")
    model = {
        "_name": "mert",
        "label_rate": 75.0,
        "extractor_mode": "default" if config["feat_extract_norm"] == "group" else "layer_norm",
        "encoder_layers": config["num_hidden_layers"],
        "encoder_embed_dim": config["hidden_size"],
        "encoder_ffn_embed_dim": config["intermediate_size"],
        "encoder_attention_heads": config["num_attention_heads"],
        "activation_fn": "gelu",
        "layer_type": "transformer",
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.05,
        "dropout_input": 0.1,
        "dropout_features": 0.1,
        "final_dim": FINAL_DIM,
        "untie_final_proj": True,
        "layer_norm_first": config["do_stable_layer_norm"],
        "audio_extract_type": "w2v_conv",
        "music_conv_nmel": 80,
        "music_conv_hoplen": 40,
        "conv_feature_layers": conv_feature_layers,
        "conv_bias": config["conv_bias"],
        "logit_temp": 0.1,
        "target_glu": False,
        "feature_grad_mult": 0.1,
        "conv_pos": config["num_conv_pos_embeddings"],
        "conv_pos_groups": config["num_conv_pos_embedding_groups"],
        "pos_conv_depth": 1,
        "mask_length": 5,
        "mask_prob": 0.8,
        "mask_dynamic_prob_step": "[]",
        "mask_dynamic_prob": "[]",
        "mask_selection": "static",
        "mask_other": 0.0,
        "no_mask_overlap": False,
        "latent_temp": [2.0, 0.5, 0.999995],
        "required_seq_len_multiple": 2,
        "fp16": True,
        "audio_cqt_loss_m": True,
        "audio_cqt_bins": CQT_BINS,
        "audio_mel_loss_m": False,
        "feature_extractor_cqt": False,
        "feature_extractor_cqt_bins": 336,
        "mixture_prob": 0.5,
        "inbatch_noise_augment_len_range": "[12000, 36000]",
        "inbatch_noise_augment_number_range": "[1, 3]",
        "inbatch_noise_augment_volume": 1.0,
        "learnable_temp": False,
        "chunk_nce_cal": -1,
        "pretrained_weights": "",
        "random_codebook": -1,
        "deepnorm": False,
        "subln": False,
        "attention_relax": -1.0,
        "do_cnn_feat_stable_layernorm": False,
        "wav_normalize": False,
    }
    task = {
        "_name": "mert_pretraining",
        "data": "/data/manifest",
        "label_dir": "/data/labels",
        "labels": [f"encodec_{i}" for i in range(CODEBOOKS)],
        "label_rate": 75.0,
        "sample_rate": config["sample_rate"],
        "normalize": False,
        "enable_padding": False,
        "max_sample_size": 120000,
        "min_sample_size": 72000,
        "random_crop": True,
        "pad_audio": False,
    }
    return {
        "_name": None,
        "common": {"fp16": True, "log_interval": 200, "seed": 1337, "user_dir": "mert_fairseq"},
        "distributed_training": {"distributed_world_size": 64, "ddp_backend": "no_c10d"},
        "dataset": {"max_tokens": 1200000, "num_workers": 6, "valid_subset": "valid"},
        "optimization": {"max_update": 400000, "lr": [0.0005], "clip_norm": 10.0, "update_freq": [1]},
        "checkpoint": {"save_dir": "checkpoints", "save_interval_updates": 10000},
        "task": task,
        "model": model,
        "criterion": {"_name": "mert", "pred_masked_weight": 1.0, "loss_weights": [10.0],
                      "audio_cqt_loss_m": True},
        "optimizer": {"_name": "adam", "adam_betas": "(0.9,0.98)", "adam_eps": 1e-06,
                      "weight_decay": 0.01},
        "lr_scheduler": {"_name": "polynomial_decay", "warmup_updates": 32000},
    }


def checkpoint(folder):
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    weights = load_file(os.path.join(folder, "model.safetensors"))
    group_norm = config["feat_extract_norm"] == "group"
    g = torch.Generator().manual_seed(7)
    hidden = config["hidden_size"]
    state = collections.OrderedDict()
    for key in sorted(weights):
        state[fairseq_name(key, group_norm)] = weights[key].clone()
    # pretraining heads (untied final_proj, label embeddings, the CQT head) and the CQT
    # teacher's fixed kernels, as MERTModel.state_dict() holds them
    state["final_proj.weight"] = torch.randn(FINAL_DIM * CODEBOOKS, hidden, generator=g)
    state["final_proj.bias"] = torch.randn(FINAL_DIM * CODEBOOKS, generator=g)
    state["label_embs_concat"] = torch.rand(CODEBOOKS * CODEBOOK_SIZE, FINAL_DIM, generator=g)
    state["encoder_cqt_model.spec_layer.cqt_kernels_real"] = torch.randn(CQT_BINS, 1, 64, generator=g)
    state["encoder_cqt_model.spec_layer.cqt_kernels_imag"] = torch.randn(CQT_BINS, 1, 64, generator=g)
    state["encoder_cqt_model.spec_layer.lenghts"] = torch.rand(CQT_BINS, generator=g)
    state["encoder_cqt_model.fc.weight"] = torch.randn(CQT_BINS, hidden, generator=g)
    state["encoder_cqt_model.fc.bias"] = torch.randn(CQT_BINS, generator=g)
    params = [v for k, v in state.items() if "spec_layer" not in k]
    optimizer = {
        "state": {i: {"step": 1000, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                  for i, p in enumerate(params[:4])},
        "param_groups": [{"lr": 0.0005, "betas": (0.9, 0.98), "eps": 1e-06, "weight_decay": 0.01,
                          "amsgrad": False, "params": list(range(len(params)))}],
    }
    return {
        "args": None,
        "cfg": fairseq_cfg(config),
        "model": state,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "MERTCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": np.float64(3.25)},
                               "num_updates": 1000}],
        "task_state": {},
        "extra_state": {
            "metrics": {},
            "previous_training_time": np.float64(5123.5),
            "train_iterator": {"epoch": 2, "iterations_in_epoch": 17, "shuffle": True},
            "val_loss": np.float32(3.25),
        },
        "last_optimizer_state": optimizer,
    }


class SystemPayload:
    """Would run `touch /tmp/mert_pwned` if the file were unpickled by Python."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/mert_pwned",))


class HiddenInScalar:
    """Pickles as a numpy scalar whose argument is the payload (a reader that keeps only the
    outer callable's name would let it through)."""

    def __reduce__(self):
        return (np.float64(0).__reduce__()[0], (SystemPayload(),))


def bad_checkpoints():
    """Small fairseq-layout files a loader must refuse, each for one named reason."""
    with open(os.path.join(FIXTURES, "mert_tiny", "config.json")) as f:
        cfg = fairseq_cfg(json.load(f))
    one = collections.OrderedDict(mask_emb=torch.zeros(64))
    conformer = json.loads(json.dumps(cfg))
    conformer["model"]["layer_type"] = "conformer"
    return {
        # a pre-hydra checkpoint: the run's settings as an argparse namespace, no cfg
        "args_only.pt": {"args": argparse.Namespace(arch="hubert", encoder_layers=2),
                         "cfg": None, "model": one},
        "conformer.pt": {"cfg": conformer, "model": one},
        "unknown_key.pt": {"cfg": cfg, "model": collections.OrderedDict(
            [("mask_emb", torch.zeros(64)), ("target_glu.0.weight", torch.zeros(4, 4))])},
        "payload_model.pt": {"cfg": cfg, "model": {"mask_emb": torch.zeros(64),
                                                   "x": SystemPayload()}},
        "payload_extra.pt": {"cfg": cfg, "model": one, "extra_state": {"x": SystemPayload()}},
        "payload_nested.pt": {"cfg": cfg, "model": one, "extra_state": {"val_loss": HiddenInScalar()}},
        "payload_state.pt": {"cfg": cfg, "model": one,
                             "args": argparse.Namespace(hook=SystemPayload())},
    }


def serialized(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    failed = False
    files = [(os.path.join(FIXTURES, name, "checkpoint_fairseq.pt"),
              checkpoint(os.path.join(FIXTURES, name))) for name in FOLDERS]
    os.makedirs(os.path.join(FIXTURES, "fairseq_bad"), exist_ok=True)
    files += [(os.path.join(FIXTURES, "fairseq_bad", name), obj)
              for name, obj in bad_checkpoints().items()]
    for path, obj in files:
        data = serialized(obj)
        if args.check:
            with open(path, "rb") as f:
                same = f.read() == data
            print(f"{path}: {'identical' if same else 'DIFFERS'}")
            failed |= not same
        else:
            with open(path, "wb") as f:
                f.write(data)
            print(f"wrote {path} ({len(data)} bytes)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
