#!/usr/bin/env python3
"""Writes malicious torch checkpoints for the loader's safety tests.

tests/fixtures/malicious_bin/
  config.json        copy of the tiny preset config
  pytorch_model.bin  torch zip layout (archive/data.pkl, archive/data/0, archive/version, ...)
                     whose data.pkl, if run by Python's pickle, calls os.system (pickled as the
                     global "posix system" on Linux) with "touch /tmp/mert_pwned"
  eval.bin           same layout; the payload calls builtins.eval (pickled as "__builtin__ eval"
                     at pickle protocol 2) on code that runs the same command

Both files also hold a genuine tensor ("masked_spec_embed", 64 floats) so the zip is a
well-formed checkpoint apart from the payload. Nothing here unpickles the files in this
process; `--check` runs torch.load(weights_only=False) in a throw-away subprocess to show
that Python's pickle would execute the payload, then removes the marker file.
"""

import argparse
import io
import os
import pickletools
import subprocess
import sys
import zipfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO_ROOT, "tests", "fixtures", "malicious_bin")
MARKER = "/tmp/mert_pwned"
CMD = "touch " + MARKER


class SystemPayload:
    def __reduce__(self):
        return (os.system, (CMD,))


class EvalPayload:
    def __reduce__(self):
        import builtins

        return (builtins.eval, ("__import__('os').system(%r)" % CMD,))


def write_checkpoint(path, payload):
    # payload first, so a naive unpickler reaches it before anything else
    state = {"encoder.payload": payload, "masked_spec_embed": torch.linspace(0.0, 1.0, 64)}
    buf = io.BytesIO()  # a file object makes torch use the record prefix "archive/"
    torch.save(state, buf)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def describe(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = z.read("archive/data.pkl")
    out = io.StringIO()
    pickletools.dis(pkl, out=out)  # disassembly only, nothing is executed
    globals_ = [line.strip() for line in out.getvalue().splitlines() if "GLOBAL" in line]
    print(f"{os.path.relpath(path, REPO_ROOT)}: {os.path.getsize(path)} B")
    print("   members:", names)
    print("   globals:", globals_)


def check(path):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    code = "import torch, sys; torch.load(sys.argv[1], weights_only=False)"
    subprocess.run([sys.executable, "-c", code, path], check=False, capture_output=True)
    executed = os.path.exists(MARKER)
    if executed:
        os.remove(MARKER)
    code = (
        "import torch, sys\n"
        "try:\n    torch.load(sys.argv[1], weights_only=True); print('loaded')\n"
        "except Exception as e:\n    print('refused:', type(e).__name__)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    refused_marker = os.path.exists(MARKER)
    if refused_marker:
        os.remove(MARKER)
    print(f"   pickle executes payload: {executed}; weights_only=True -> {r.stdout.strip()}"
          f" (marker created: {refused_marker})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="show in a subprocess that pickle would run the payload")
    args = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gen_mert import CONFIG_TINY, write_config

    write_config(os.path.join(OUT, "config.json"), CONFIG_TINY)
    files = {"pytorch_model.bin": SystemPayload(), "eval.bin": EvalPayload()}
    for name, payload in files.items():
        path = os.path.join(OUT, name)
        write_checkpoint(path, payload)
        describe(path)
        if args.check:
            check(path)


if __name__ == "__main__":
    main()
