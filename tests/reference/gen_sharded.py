#!/usr/bin/env python3
"""Sharded Hugging Face checkpoints of the tiny MERT fixture, as `save_pretrained` writes them.

Loads tests/fixtures/mert_tiny (config.json + model.safetensors) into a
`transformers.HubertModel` and saves it with a small `max_shard_size`, once with safetensors
and once with torch pickles:

  tests/fixtures/mert_tiny_sharded/safetensors/  model-0000i-of-0000n.safetensors
                                                 + model.safetensors.index.json
  tests/fixtures/mert_tiny_sharded/bin/          pytorch_model-0000i-of-0000n.bin
                                                 + pytorch_model.bin.index.json

Each folder gets mert_tiny's own config.json (transformers writes a HubertConfig one). The
tests load both and require the same tensors as the unsharded folder.

Usage: gen_sharded.py   (in the venv of tests/reference/setup.sh)
"""

import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from safetensors.torch import load_file  # noqa: E402
from transformers import HubertConfig, HubertModel  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRC = os.path.join(REPO_ROOT, "tests", "fixtures", "mert_tiny")
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "mert_tiny_sharded")
# about 410 kB of weights: three shards each
MAX_SHARD_SIZE = "150KB"


def main():
    with open(os.path.join(SRC, "config.json")) as f:
        config = json.load(f)
    model = HubertModel(HubertConfig(**config))
    missing, unexpected = model.load_state_dict(
        load_file(os.path.join(SRC, "model.safetensors")), strict=False
    )
    assert not missing and not unexpected, (missing, unexpected)
    for name, safe in (("safetensors", True), ("bin", False)):
        out = os.path.join(OUT, name)
        shutil.rmtree(out, ignore_errors=True)
        model.save_pretrained(out, max_shard_size=MAX_SHARD_SIZE, safe_serialization=safe)
        shutil.copyfile(os.path.join(SRC, "config.json"), os.path.join(out, "config.json"))
        print(out, sorted(os.listdir(out)))


if __name__ == "__main__":
    main()
