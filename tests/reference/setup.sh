#!/usr/bin/env bash
# Creates the reference-generator venv at ~/.cache/mert-ref-venv and installs the pinned
# requirements. Idempotent: does nothing when the venv already has the pinned versions.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MERT_REF_VENV:-$HOME/.cache/mert-ref-venv}"
REQ="$HERE/requirements.txt"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi

if "$PY" - "$REQ" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
then
    echo "mert-ref-venv: requirements already installed in $VENV"
else
    "$PY" -m pip install --disable-pip-version-check -q -r "$REQ"
    echo "mert-ref-venv: installed requirements into $VENV"
fi
