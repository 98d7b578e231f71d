"""SevenNet's side of the SevenNet oracle: run by the Python of the environment that has sevenn
(``.venv-sevenn``, made by scripts/setup.sh: sevenn needs e3nn >= 0.5, mace-torch pins 0.4.4).

It imports nothing of al-loop. Protocol, one JSON object per line:

- ``--describe``: prints ``{"version", "weights_file", "weights_sha256"}`` and exits;
- otherwise it loads the model, prints ``{"ready": true, ...the description}``, then answers
  each request ``{"numbers", "positions", "cell", "pbc"}`` on stdin with ``{"energy",
  "forces", "stress"}`` (eV, eV/Å, eV/Å³ Voigt, ASE's signs) or ``{"error": "..."}`` on stdout,
  until stdin closes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import traceback
from importlib.metadata import version


def describe(model: str) -> dict:
    from sevenn.util import pretrained_name_to_path

    path = pretrained_name_to_path(model)
    with open(path, "rb") as handle:
        sha = hashlib.sha256(handle.read()).hexdigest()
    return {"version": version("sevenn"), "weights_file": path, "weights_sha256": sha}


def serve(model: str, modal: str | None, device: str) -> None:
    import numpy as np
    from ase import Atoms
    from sevenn.calculator import SevenNetCalculator

    info = describe(model)
    kwargs = {"modal": modal} if modal else {}
    calc = SevenNetCalculator(info["weights_file"], device=device, **kwargs)
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            atoms = Atoms(
                numbers=request["numbers"],
                positions=request["positions"],
                cell=request["cell"],
                pbc=request["pbc"],
            )
            atoms.calc = calc
            answer = {
                "energy": float(atoms.get_potential_energy()),
                "forces": np.asarray(atoms.get_forces()).tolist(),
                "stress": np.asarray(atoms.get_stress()).tolist(),
            }
        except Exception as exc:  # a failure is an answer: the worker lives on
            answer = {"error": "".join(traceback.format_exception(exc))}
        print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--modal", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--describe", action="store_true")
    args = parser.parse_args()
    if args.describe:
        print(json.dumps(describe(args.model)), flush=True)
        return
    serve(args.model, args.modal, args.device)


if __name__ == "__main__":
    main()
