"""Transition pressures of the student and the teacher against the oracle itself (DFT).

Usage (after ``al-loop run`` and ``al-loop distil`` of the campaign)::

    python benchmarks/phase_dft_check.py configs/cafeni-small.yaml [--prototypes fcc,bcc,hcp]
        [--pressures 0,10,20,30,40,50] [--fmax 0.1] [--target-GPa 3] [--name NAME]
        [--only student|teacher|oracle]

The phase stage runs three times with the same candidates (the campaign's elements on
``--prototypes``, no campaign structures), the same pressure grid and the same relaxation
settings: ``phase.model`` student, teacher, then oracle. The default force tolerance is 0.1
eV/Å (a stress of ~1.6 GPa on 10 Å³/atom): pw.x's k-point mesh, set from a k-spacing, changes
as the cell relaxes and the stress jumps by ~1 GPa with it, so BFGS cycled between two meshes
for hundreds of SCFs at 0.005 and at 0.05 (hcp Fe at 20 GPa). A cell left ~1 GPa off its
pressure has an enthalpy off only at second order (~0.2 meV/atom). The teacher's check is
opened wide, so that every model's own cells are compared (its gaps are recorded). The
oracle's runs are labels in the dataset (campaign ``<name>/phase``), never repeated: a rerun
of the same grid and tolerance costs seconds.

Printed and recorded (docs/results/<NAME>.json; default ``phase_dft_check``): per model,
its transitions; per transition the oracle finds, the student's and the teacher's pressure and
their difference (target: within ``--target-GPa``); the RMS difference of every ΔH(P) (each phase
against the one the oracle finds lowest at the lowest pressure) from the oracle's; wall times.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_record import record

from al_loop.config import load_campaign
from al_loop.loop import phase_campaign
from al_loop.phase.compare import delta_h_rms, transitions_against

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

MODELS = ("student", "teacher", "oracle")
WIDE = {"max_teacher_gap_meV_atom": 1e6, "max_teacher_spread_eV_A": 1e6}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/cafeni-small.yaml")
    parser.add_argument("--prototypes", default="fcc,bcc,hcp")
    parser.add_argument("--pressures", default="0,10,20,30,40,50")
    parser.add_argument("--fmax", type=float, default=0.1)
    parser.add_argument("--target-GPa", type=float, default=3.0)
    parser.add_argument("--name", default=None)
    parser.add_argument(
        "--only",
        choices=MODELS,
        help="run this model's stage and stop, recording nothing (e.g. the oracle's runs first, "
        "while the student is being distilled: the full check then recalls them)",
    )
    args = parser.parse_args(argv)
    base = load_campaign(args.config)
    settings = {
        "prototypes": args.prototypes.split(","),
        "pressures_GPa": [float(p) for p in args.pressures.split(",")],
        "fmax_eV_A": args.fmax,
        "from_campaign": 0,
        "files": [],
        **WIDE,
    }
    results: dict[str, dict[str, Any]] = {}
    walls: dict[str, float] = {}
    for model in (args.only,) if args.only else MODELS:
        started = time.perf_counter()
        results[model] = phase_campaign(base, model=model, **settings)
        walls[model] = round(time.perf_counter() - started, 1)
    if args.only:
        print(json.dumps({"transitions": results[args.only]["transitions"], "wall_s": walls}))
        return results[args.only]
    figures = {
        "campaign": base.name,
        "settings": {k: v for k, v in settings.items() if k not in WIDE},
        "transitions": {m: results[m]["transitions"] for m in MODELS},
        "unconverged": {m: results[m]["unconverged"] for m in MODELS},
        "compared": transitions_against(
            {m: results[m] for m in MODELS[:2]}, results["oracle"], args.target_GPa
        ),
        "delta_h_vs_oracle": {m: delta_h_rms(results[m], results["oracle"]) for m in MODELS[:2]},
        "model_vs_teacher_enthalpy_meV_atom": {
            m: results[m]["model_vs_teacher_enthalpy_meV_atom"] for m in MODELS
        },
        "oracle_runs": results["oracle"].get("oracle_runs"),
        "stage_wall_s": walls,
    }
    print(json.dumps({k: figures[k] for k in ("compared", "delta_h_vs_oracle")}, indent=1))
    record(args.name or "phase_dft_check", figures)
    return figures


if __name__ == "__main__":
    main()
