#!/usr/bin/env bash
# Create .venv and install al-loop with every dependency pinned (requirements.lock).
# torch comes first, from the CPU wheel (a range that admits a newer torch would pull a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.al-loop-installed"
FINGERPRINT=$(cat pyproject.toml requirements.lock scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$FINGERPRINT" ]]; then
    echo "setup: $VENV is up to date"
    exit 0
fi

echo "setup: creating $VENV with $($PYTHON --version)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24"
"${PIP[@]}" install -q "torch==2.13.0"
"${PIP[@]}" install -q -c requirements.lock -e ".[dev]"
"${PIP[@]}" check
echo "$FINGERPRINT" > "$STAMP"
echo "setup: done ($("$VENV/bin/python" -c 'import al_loop; print("al-loop", al_loop.__version__)'))"
