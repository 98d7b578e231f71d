#!/usr/bin/env bash
# Create .venv and install al-loop with every dependency pinned (requirements.lock).
# torch comes first, from the CPU wheel (a range that admits a newer torch would pull a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.al-loop-installed"
FINGERPRINT=$(cat pyproject.toml requirements.lock scripts/setup.sh | sha256sum | cut -d' ' -f1)

# The student's LAMMPS pair style is compiled from source on every machine (cmake, g++).
build_plugin() {
    if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
        if [[ $(id -u) == 0 ]]; then
            apt-get update -qq && apt-get install -y -qq cmake g++ >/dev/null
        else
            echo "setup: cmake and g++ are needed to build the student's LAMMPS plugin" >&2
            exit 1
        fi
    fi
    "$VENV/bin/python" -m calculators.models.student.lammps_run >/dev/null
    echo "setup: student LAMMPS plugin built"
}

# The test suite's single-node SLURM cluster (tests/helpers/slurm_cluster.py): Debian's
# slurm-wlm and munge, installed when we are root and they are missing.
install_slurm() {
    if command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "slurm-wlm=22.05.*" "munge=0.5.*" >/dev/null
        echo "setup: slurm-wlm and munge installed"
    else
        echo "setup: SLURM (slurm-wlm, munge) is missing; tests/integration/test_slurm.py needs it" >&2
    fi
}
install_slurm

# SevenNet (the sevennet oracle) needs e3nn >= 0.5, mace-torch pins 0.4.4: it gets an environment
# of its own, run as an external program (calculators/oracles/sevennet_worker.py).
SEVENN_VENV=${SEVENN_VENV:-.venv-sevenn}
SEVENN_STAMP="$SEVENN_VENV/.al-loop-installed"
SEVENN_FINGERPRINT=$(cat requirements-sevenn.lock | sha256sum | cut -d' ' -f1)
install_sevenn() {
    if [[ -f "$SEVENN_STAMP" && "$(cat "$SEVENN_STAMP")" == "$SEVENN_FINGERPRINT" ]]; then
        return
    fi
    echo "setup: creating $SEVENN_VENV (sevenn, for the sevennet oracle)"
    "$PYTHON" -m venv "$SEVENN_VENV"
    local pip=("$SEVENN_VENV/bin/python" -m pip --disable-pip-version-check)
    "${pip[@]}" install -q --upgrade "pip>=24"
    "${pip[@]}" install -q "torch==2.13.0"
    "${pip[@]}" install -q -r requirements-sevenn.lock
    "${pip[@]}" check
    echo "$SEVENN_FINGERPRINT" > "$SEVENN_STAMP"
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$FINGERPRINT" ]]; then
    echo "setup: $VENV is up to date"
    install_sevenn
    build_plugin
    exit 0
fi

echo "setup: creating $VENV with $($PYTHON --version)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24"
"${PIP[@]}" install -q "torch==2.13.0"
"${PIP[@]}" install -q -c requirements.lock -e ".[dev]"
"${PIP[@]}" check
build_plugin
install_sevenn
echo "$FINGERPRINT" > "$STAMP"
echo "setup: done ($("$VENV/bin/python" -c 'import al_loop; print("al-loop", al_loop.__version__)'))"
