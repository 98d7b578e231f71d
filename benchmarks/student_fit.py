"""How well the student's fit learns, and which of its design choices made it learn: an ablation
on EMT Cu-Ni data, every variant with the same data, seed, optimiser and number of steps.

Data: 240 cells of 32 atoms (2x2x2 cubic fcc, lattice constant 3.6 Å x U(0.90, 1.02), 40 % Ni at
random, rattled 0.05 Å), labelled by ASE's EMT (energy, forces, stress); 200 fit the student (10 %
of them are its validation set), 40 test it. Fit: Adam, batch 4, rate 1e-2 -> 1e-3 over 60
epochs (3,000 steps), float64, one torch thread per variant.

Variants (the descriptor is the default: cutoff 5 Å, 8 Chebyshev functions, 8 channels, 32x32):

- ``first``: the student as first written: a basis without decay (``decay 0``), every feature
  scaled by its own standard deviation, lmax 3;
- ``decay``: the basis decaying as 1/x^4, features scaled as in ``first``;
- ``default``: decay 4, and the invariants scaled by one common scale (al-loop's default);
- ``radial``: the default with lmax 0 (no angular terms).

Usage: ``python benchmarks/student_fit.py [--jobs 4] [--epochs 60] [--record student_fit]``.
Figures: RMSE on the 40 test cells of energy (meV/atom), force components (eV/Å) and pressure
(GPa), and the fit's wall time; ratios against ``first``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from bench_record import record

from calculators.models.student import network
from calculators.models.student.calculator import StudentCalculator
from calculators.models.student.training import StudentSettings, fit_student

VARIANTS = {
    "first": {"decay": 0, "scaling": "per feature"},
    "decay": {"decay": 4, "scaling": "per feature"},
    "default": {"decay": 4, "scaling": "common"},
    "radial": {"decay": 4, "scaling": "common", "lmax": 0},
}


def emt_cells(n: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    cells = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 * rng.uniform(0.90, 1.02), cubic=True) * (2, 2, 2)
        atoms.symbols[rng.random(len(atoms)) < 0.4] = "Ni"
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **results)
        cells.append(atoms)
    return cells


def per_feature_scaling(model: network.StudentModel, graph: network.Graph) -> None:
    """The first normalisation: every feature by its own standard deviation."""
    with torch.no_grad():
        g = model.atom_features(graph, graph.vectors())
        for a in range(len(model.elements)):
            mine = g[graph.numbers_index == a]
            model.shift[a] = mine.mean(0)
            model.scale[a] = mine.std(0).clamp_min(1e-6)


def fit_variant(name: str, epochs: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    variant = VARIANTS[name]
    if variant["scaling"] == "per feature":  # this process only: one variant per process
        network.StudentModel.set_normalisation = per_feature_scaling  # type: ignore[method-assign]
    cells = emt_cells(240)
    settings = replace(
        StudentSettings(  # the rate and weights its recorded figures were measured with
            epochs=epochs,
            learning_rate=1e-2,
            final_learning_rate=1e-3,
            force_weight=1.0,
            stress_weight=1000.0,
        ),
        decay=variant["decay"],
        lmax=variant.get("lmax", 3),
    )
    started = time.perf_counter()
    model, history = fit_student(cells[:200], ["Cu", "Ni"], settings)
    wall = time.perf_counter() - started
    calc = StudentCalculator(model)
    e_err, f_err, p_err = [], [], []
    for atoms in cells[200:]:
        got = calc.predict(atoms.copy())
        e_err.append((got["energy"] - atoms.get_potential_energy()) / len(atoms))
        f_err.append((got["forces"] - atoms.get_forces()).ravel())
        p_err.append(-(got["stress"][:3].mean() - atoms.get_stress()[:3].mean()) / units.GPa)
    return {
        **variant,
        "lmax": settings.lmax,
        "energy_rmse_meV_atom": 1000 * float(np.sqrt(np.mean(np.square(e_err)))),
        "force_rmse_eV_A": float(np.sqrt(np.mean(np.square(np.concatenate(f_err))))),
        "pressure_rmse_GPa": float(np.sqrt(np.mean(np.square(p_err)))),
        "fit_s": wall,
        "best_epoch": history.best_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="variants fitted at once")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--record", default="student_fit")
    opts = parser.parse_args()
    forces = np.concatenate([a.get_forces().ravel() for a in emt_cells(240)])
    # a fresh process per variant: a variant may replace the normalisation in its process
    with concurrent.futures.ProcessPoolExecutor(opts.jobs, max_tasks_per_child=1) as pool:
        futures = {name: pool.submit(fit_variant, name, opts.epochs) for name in VARIANTS}
        results = {name: future.result() for name, future in futures.items()}
    first = results["first"]
    print(f"EMT force RMS of the data: {np.sqrt(np.mean(forces**2)):.3f} eV/Å")
    print(
        f"{'variant':9} {'decay':>5} {'scaling':>11} {'lmax':>4} {'E meV/at':>9} "
        f"{'F eV/Å':>7} {'P GPa':>6} {'F vs first':>10} {'fit s':>6}"
    )
    for name, r in results.items():
        r["force_ratio_to_first"] = r["force_rmse_eV_A"] / first["force_rmse_eV_A"]
        print(
            f"{name:9} {r['decay']:>5} {r['scaling']:>11} {r['lmax']:>4} "
            f"{r['energy_rmse_meV_atom']:9.2f} {r['force_rmse_eV_A']:7.3f} "
            f"{r['pressure_rmse_GPa']:6.2f} {r['force_ratio_to_first']:10.2f} {r['fit_s']:6.0f}"
        )
    record(
        opts.record,
        {
            "data": "240 EMT Cu-Ni cells of 32 atoms: 200 fit, 40 test",
            "force_rms_eV_A": float(np.sqrt(np.mean(forces**2))),
            "epochs": opts.epochs,
            "variants": results,
        },
    )


if __name__ == "__main__":
    main()
