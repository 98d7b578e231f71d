"""The student's two routes into LAMMPS on the same data: accuracy, fit time and MD speed.

- ``pair`` (al-loop's default): the project's descriptor (152 invariants) and pair style
  ``alloop/student``;
- ``mliap``: ML-IAP ``nn`` on LAMMPS's SNAP descriptor, twojmax 6 (30 bispectrum components).

Data: benchmarks/student_fit.py's 240 EMT Cu-Ni cells (200 fit, 10 % of them validation; 40
test). Both routes: networks of 32x32 tanh, the same loss, Adam, batch 4, rate 1e-2 -> 1e-3, the
same number of epochs (``--epochs``, each value a fit per route), float32 fits, one torch thread
per fit, ``--jobs`` fits at once. Test errors are measured in LAMMPS (library interface) for both
routes. Speed: NVE of 4,000-atom fcc Cu at 300 K on 1 MPI rank with each fitted model (nothing
else running), as in benchmarks/student_speed.py.

Usage: ``python benchmarks/student_routes.py [--epochs 60 300] [--jobs 2]``. Figures: per route
and epochs, test RMSE of energy (meV/atom), force components (eV/Å) and pressure (GPa), fit wall
time, µs per atom-step; ratios mliap / pair.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import units
from bench_record import record
from student_fit import emt_cells
from student_speed import run_lammps

from calculators.models.student import routes
from calculators.models.student.training import StudentSettings

ELEMENTS = ["Cu", "Ni"]
ROUTES = ("pair", "mliap")


def fit_route(route: str, epochs: int, folder: str) -> dict[str, Any]:
    torch.set_num_threads(1)
    cells = emt_cells(240)
    settings = StudentSettings(  # the rate and weights its recorded figures were measured with
        route=route,
        epochs=epochs,
        learning_rate=1e-2,
        final_learning_rate=1e-3,
        force_weight=1.0,
        stress_weight=1000.0,
    )
    started = time.perf_counter()
    files, history = routes.fit(cells[:200], ELEMENTS, settings, Path(folder) / f"{route}-{epochs}")
    wall = time.perf_counter() - started
    calc = routes.in_lammps(route, files, ELEMENTS)
    e_err, f_err, p_err = [], [], []
    for atoms in cells[200:]:
        got = calc.predict(atoms.copy())
        e_err.append((got["energy"] - atoms.get_potential_energy()) / len(atoms))
        f_err.append((got["forces"] - atoms.get_forces()).ravel())
        p_err.append(-(got["stress"][:3].mean() - atoms.get_stress()[:3].mean()) / units.GPa)
    return {
        "route": route,
        "epochs": epochs,
        "files": [str(p) for p in files],
        "energy_rmse_meV_atom": 1000 * float(np.sqrt(np.mean(np.square(e_err)))),
        "force_rmse_eV_A": float(np.sqrt(np.mean(np.square(np.concatenate(f_err))))),
        "pressure_rmse_GPa": float(np.sqrt(np.mean(np.square(p_err)))),
        "fit_s": wall,
        "fit_loop_s": history.wall_s,
        "best_epoch": history.best_epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[60, 300])
    parser.add_argument("--jobs", type=int, default=2, help="fits at once")
    parser.add_argument("--steps", type=int, default=None, help="MD steps (default: ~20 s)")
    parser.add_argument("--record", default="student_routes")
    opts = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="student-routes-")
    with concurrent.futures.ProcessPoolExecutor(opts.jobs) as pool:
        futures = {
            (route, epochs): pool.submit(fit_route, route, epochs, folder)
            for epochs in opts.epochs
            for route in ROUTES
        }
        fits = {key: future.result() for key, future in futures.items()}
    speed = {}
    for route in ROUTES:  # one run each, nothing else running: the last fit's model
        result = fits[(route, opts.epochs[-1])]
        pair = routes.pair_lines(route, [Path(p) for p in result["files"]], ["Cu"])
        steps = opts.steps or {"pair": 200, "mliap": 30}[route]
        run = run_lammps(pair, 10, 1, steps, max(1, steps // 10), False, Path(folder) / route)
        speed[route] = run["us_per_atom_step_core"]
        print(f"{route}: {run['atoms']} atoms, {steps} steps, {speed[route]:.1f} µs/atom-step")
    print(
        f"{'route':6} {'epochs':>6} {'E meV/at':>9} {'F eV/Å':>7} {'P GPa':>6} {'fit s':>6} "
        f"{'best':>5}"
    )
    for (route, epochs), r in fits.items():
        print(
            f"{route:6} {epochs:>6} {r['energy_rmse_meV_atom']:9.2f} {r['force_rmse_eV_A']:7.3f} "
            f"{r['pressure_rmse_GPa']:6.2f} {r['fit_s']:6.0f} {r['best_epoch']:>5}"
        )
    ratios = {
        f"mliap_over_pair_{key}_{n}": fits[("mliap", n)][key] / fits[("pair", n)][key]
        for n in opts.epochs
        for key in ("force_rmse_eV_A", "energy_rmse_meV_atom", "pressure_rmse_GPa", "fit_s")
    }
    ratios["mliap_over_pair_us_per_atom_step"] = speed["mliap"] / speed["pair"]
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    record(
        opts.record,
        {
            "data": "240 EMT Cu-Ni cells of 32 atoms: 200 fit, 40 test (benchmarks/student_fit.py)",
            "fits": [{k: v for k, v in r.items() if k != "files"} for r in fits.values()],
            "us_per_atom_step_1_rank_4000_atoms": speed,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
