"""Data efficiency of active selection against random selection, with EMT as the ground truth.

Usage::

    python benchmarks/al_efficiency.py [--quick] [--out benchmarks/out] [--seed 0] [--jobs 2]

The question: how many labels does the committee's active selection need to reach the held-out
force error that random labelling reaches with many more? Target: active needs at most 1/5 of
random's labels (``--target-ratio 0.2``).

1. Ground truth and pool. ASE's EMT labels Cu-Ni-Al. NPT MD (ASE's ``NPTBerendsen``, 2 fs) of
   random Cu-Ni-Al alloys (fcc or bcc cells of 4-16 atoms, random compositions, rattled),
   compressed to the target pressure first (``al_loop.exploration.compress``), at every (T, P) of
   ``--temperatures`` x ``--pressures`` (300-2000 K, 0-50 GPa: cold, hot, molten, compressed
   frames): ``--trajectories`` trajectories per (T, P), a frame every ``--interval`` steps after
   ``--equilibration`` steps, each frame labelled by EMT (energy, forces, stress). Whole
   trajectories, ``--test-trajectories`` per (T, P), are held out: the test set. The rest is the
   pool both strategies draw labels from.
2. Committee. ``--models`` members fine-tuned
   (``calculators.models.mace_train.train_mace``, single head,
   E0s from the foundation) from a stand-in foundation (``calculators.models.standin``; no real
   foundation model can be downloaded here) on bootstrap resamples of the labels (out-of-bag
   labels validate, ``al_loop.stages.train.member_split``), ``--epochs`` epochs, member m with seed
   1000 * seed + m: the same settings and seeds for both strategies at every label count.
3. Both strategies start from the same ``--initial`` random pool frames (one shared committee).
   Active, ``--batch`` labels per round up to ``--active-max``: the committee's force spread on
   every unlabelled pool frame, the trust window (``al_loop.selection``: ``[--trust-lo,
   --trust-hi)``, lo moved to the ``--adaptive-percentile`` of the spreads), farthest-point
   sampling on the committee's descriptors among the candidates, starting from the labelled
   frames (``selection.select``, strategy ``window_fps``); when fewer than ``--batch`` frames
   are in the window, FPS picks among the 2 x ``--batch`` highest spreads below ``--trust-hi``
   (strategy ``top_spread_fps``). Random: the first n frames of one random order of
   the pool (nested sets), at the label counts ``--random-schedule``.
4. After every round: the committee-mean force RMSE on the test set (``al_loop.evaluation``).

Figures: both curves; random's final RMSE (at its largest label count n_R); the labels active
needed to reach it (first measured point at or below it; also interpolated, log-log, between
the two points around the crossing); ratio = active labels / n_R; PASS when ratio <= target.
Also the random labels that active's final RMSE is worth (interpolated on the random curve),
when active falls short an extrapolation (log-log through its last two points, marked as such),
per point the rank correlation of the committee's spread with the error on the test frames, and
where active's picks came from (T, P). Runtime on 2 cores: 18-22 min (``--quick``: 2-4 min).
Written to ``--out``: ``al_efficiency.json`` (every number) and ``al_efficiency.png``
(``al_loop.plots.learning_curves_comparison``). Evaluations run in ``--jobs`` worker processes
and members train ``--jobs`` at a time, one torch thread each.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from bench_record import RESULTS, record

from al_loop.evaluation import errors, rank_correlation
from al_loop.exploration import UnphysicalPressure, bulk_modulus_GPa, compress
from al_loop.selection import candidates, select
from al_loop.stages.train import member_split
from calculators.models.committee import CommitteeCalculator, mace_calculator
from calculators.models.mace_train import TrainSettings, labelled_atoms, train_mace
from calculators.models.standin import STANDIN_SETTINGS, build_standin_foundation

ELEMENTS = ("Cu", "Ni", "Al")
A_FCC = {"Cu": 3.61, "Ni": 3.52, "Al": 4.05}  # Å, room-temperature fcc lattice constants
#: Repetitions of the cubic cell (fcc: 4 atoms, bcc: 2) giving 4, 8, 12 and 16 atoms.
REPEATS = {
    ("fcc", 4): (1, 1, 1),
    ("fcc", 8): (1, 1, 2),
    ("fcc", 12): (1, 1, 3),
    ("fcc", 16): (1, 2, 2),
    ("bcc", 4): (1, 1, 2),
    ("bcc", 8): (1, 2, 2),
    ("bcc", 12): (1, 2, 3),
    ("bcc", 16): (2, 2, 2),
}

#: Settings of the full run and of ``--quick`` (explicit options override either).
FULL = {
    "temperatures": "300,1000,2000",
    "pressures": "0,25,50",
    "trajectories": 8,
    "test_trajectories": 2,
    "frames": 12,
    "interval": 10,
    "equilibration": 60,
    "standin_structures": 150,
    "standin_epochs": 30,
    "models": 4,
    "epochs": 10,
    "initial": 10,
    "batch": 10,
    "active_max": 60,
    "random_schedule": "25,50,100,200",
}
QUICK = {
    "temperatures": "300,2000",
    "pressures": "0,50",
    "trajectories": 3,
    "test_trajectories": 1,
    "frames": 8,
    "interval": 10,
    "equilibration": 30,
    "standin_structures": 40,
    "standin_epochs": 4,
    "models": 2,
    "epochs": 2,
    "initial": 6,
    "batch": 6,
    "active_max": 12,
    "random_schedule": "12,24",
}


# -- ground truth: the pool and the test set ------------------------------------------------------


def random_alloy(rng: np.random.Generator) -> Atoms:
    """A random Cu-Ni-Al fcc or bcc cell of 4-16 atoms at its Vegard volume, rattled 0.05 Å."""
    lattice = str(rng.choice(["fcc", "bcc"]))
    n_atoms = int(rng.choice([4, 8, 12, 16]))
    fractions = rng.dirichlet(np.ones(len(ELEMENTS)))
    symbols = [str(s) for s in rng.choice(ELEMENTS, size=n_atoms, p=fractions)]
    a_fcc = float(np.mean([A_FCC[s] for s in symbols]))
    a = a_fcc if lattice == "fcc" else a_fcc / 2 ** (1 / 3)  # same volume per atom
    atoms = bulk("Cu", lattice, a=a, cubic=True).repeat(REPEATS[lattice, n_atoms])
    atoms.set_chemical_symbols(symbols)
    atoms.rattle(0.05, seed=int(rng.integers(2**31)))
    return atoms


def labelled_frame(atoms: Atoms, info: dict[str, Any]) -> Atoms:
    """A copy of ``atoms`` with EMT's energy, forces and stress as a SinglePointCalculator."""
    frame = Atoms(atoms.numbers, atoms.get_positions(), cell=atoms.cell.copy(), pbc=True)
    frame.calc = SinglePointCalculator(
        frame,
        energy=atoms.get_potential_energy(),
        forces=atoms.get_forces(),
        stress=atoms.get_stress(),
    )
    frame.info.update(info)
    frame.info["volume_A3_per_atom"] = frame.get_volume() / len(frame)
    frame.info["P_GPa"] = float(-atoms.get_stress(include_ideal_gas=True)[:3].mean() / units.GPa)
    frame.info["T_K"] = float(atoms.get_temperature())
    return frame


def trajectory(
    temperature_K: float, pressure_GPa: float, args: dict[str, Any], name: str, seed: int
) -> list[Atoms]:
    """Frames of one EMT NPT trajectory (compressed to the pressure first); ``args``: the
    timestep, equilibration, frames and interval options."""
    args = argparse.Namespace(**args)
    rng = np.random.default_rng(seed)
    atoms = random_alloy(rng)
    atoms.calc = EMT()
    try:
        for _ in compress(atoms, pressure_GPa, steps=15):
            pass
    except UnphysicalPressure:
        return []
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    dyn = NPTBerendsen(
        atoms,
        args.timestep * units.fs,
        temperature_K=temperature_K,
        pressure_au=pressure_GPa * units.GPa,
        taut=100 * units.fs,
        taup=500 * units.fs,
        compressibility_au=1.0 / (bulk_modulus_GPa(pressure_GPa) * units.GPa),
    )
    base = {"trajectory": name, "target_T_K": temperature_K, "target_P_GPa": pressure_GPa}
    frames = []
    try:
        dyn.run(args.equilibration)
        for k in range(args.frames):
            dyn.run(args.interval)
            volume = atoms.get_volume() / len(atoms)
            if not (np.isfinite(atoms.positions).all() and 4.0 < volume < 40.0):
                break  # the cell blew up: keep what came before
            step = args.equilibration + (k + 1) * args.interval
            frames.append(labelled_frame(atoms, {**base, "step": step}))
    except (ValueError, FloatingPointError, RuntimeError):
        pass
    return frames


def make_pool(
    args: argparse.Namespace, workers: ProcessPoolExecutor
) -> tuple[list[Atoms], list[Atoms]]:
    """(pool, test): EMT MD frames, trajectories run by ``workers``; whole trajectories go to
    the test set."""
    md = {k: getattr(args, k) for k in ("timestep", "equilibration", "frames", "interval")}
    jobs = []
    index = 0
    for temperature in args.temperature_list:
        for pressure in args.pressure_list:
            for k in range(args.trajectories):
                name = f"{index:03d}-{temperature:g}K-{pressure:g}GPa"
                future = workers.submit(
                    trajectory, temperature, pressure, md, name, args.seed * 10_000 + index
                )
                jobs.append((k < args.test_trajectories, future))
                index += 1
    pool: list[Atoms] = []
    test: list[Atoms] = []
    for held_out, future in jobs:
        (test if held_out else pool).extend(future.result())
    return pool, test


def describe_frames(frames: Sequence[Atoms]) -> dict[str, Any]:
    """Ranges of the frames' conditions (JSON-able)."""

    def rng_of(key: str) -> list[float]:
        values = np.array([f.info[key] for f in frames], dtype=float)
        return [round(float(values.min()), 2), round(float(values.max()), 2)]

    forces = np.concatenate([f.get_forces() for f in frames])
    return {
        "frames": len(frames),
        "trajectories": len({f.info["trajectory"] for f in frames}),
        "atoms_per_frame": sorted({len(f) for f in frames}),
        "T_K": rng_of("T_K"),
        "P_GPa": rng_of("P_GPa"),
        "volume_A3_per_atom": rng_of("volume_A3_per_atom"),
        "force_rms_eV_A": float(np.sqrt((forces**2).mean())),
    }


# -- committee: training, and evaluation in worker processes -----------------------------------


def train_committee(
    labelled: Sequence[Atoms],
    workdir: Path,
    args: argparse.Namespace,
    settings: TrainSettings,
    foundation: Path,
    workers: ProcessPoolExecutor,
    replay: Path | None = None,
) -> list[Path]:
    """``args.models`` members fine-tuned on bootstrap resamples of ``labelled`` (with
    ``replay``: multi-head, replaying it), by ``workers`` (processes; each member's training
    is a subprocess of one of them)."""
    train = [
        labelled_atoms(a, a.get_potential_energy(), a.get_forces(), a.get_stress())
        for a in labelled
    ]
    futures = []
    for m in range(args.models):
        picked, out_of_bag = member_split(train, m, args.seed, bootstrap=True)
        futures.append(
            workers.submit(
                _train_member,
                [train[i] for i in picked],
                [train[i] for i in out_of_bag],
                workdir / f"member-{m}",
                1000 * args.seed + m,
                settings,
                foundation,
                replay,
            )
        )
    return [f.result() for f in futures]


def _train_member(
    train: list[Atoms],
    valid: list[Atoms],
    workdir: Path,
    seed: int,
    settings: TrainSettings,
    foundation: Path,
    replay: Path | None,
) -> Path:
    return train_mace(train, valid, workdir, seed, settings, foundation, replay, threads=1).path


_WORKER_CALC: dict[tuple[tuple[str, ...], str], CommitteeCalculator] = {}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _committee(paths: Sequence[str], dtype: str) -> CommitteeCalculator:
    key = (tuple(paths), dtype)
    if key not in _WORKER_CALC:
        _WORKER_CALC.clear()
        _WORKER_CALC[key] = CommitteeCalculator(list(paths), device="cpu", dtype=dtype)
    return _WORKER_CALC[key]


def _spreads(paths: Sequence[str], dtype: str, frames: Sequence[Atoms]) -> list[float]:
    """The committee's force spread on each frame (NaN if the evaluation fails)."""
    calc = _committee(paths, dtype)
    out = []
    for frame in frames:
        atoms = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=True)
        atoms.calc = calc
        try:
            atoms.get_forces()
            out.append(float(calc.results["force_spread"]))
        except (ValueError, RuntimeError):
            out.append(float("nan"))
    return out


def _errors(paths: Sequence[str], dtype: str, frames: Sequence[Atoms]) -> dict[str, Any]:
    """``al_loop.evaluation.errors`` of the committee on ``frames`` (the parts to combine)."""
    result = errors(_committee(paths, dtype), frames)
    return {
        "n": result["n"],
        "energy_rmse_meV_atom": result["energy_rmse_meV_atom"],
        "forces_reference": result["forces_reference"],
        "forces_predicted": result["forces_predicted"],
        "pressure_error_GPa": result["pressure_predicted_GPa"] - result["pressure_reference_GPa"],
        "force_spread_eV_A": result["force_spread_eV_A"],
        "max_force_error_eV_A": result["max_force_error_eV_A"],
    }


class Evaluator:
    """``jobs`` worker processes (one torch thread each) for the MD, the training and the
    committee evaluations."""

    def __init__(self, jobs: int, dtype: str) -> None:
        self.jobs, self.dtype = jobs, dtype
        context = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init)

    def _map(self, fn: Callable[..., Any], paths: Sequence[Path], frames: Sequence[Atoms]) -> list:
        chunks = [list(c) for c in np.array_split(np.arange(len(frames)), self.jobs) if len(c)]
        names = [str(p) for p in paths]
        futures = [self.pool.submit(fn, names, self.dtype, [frames[i] for i in c]) for c in chunks]
        return [f.result() for f in futures]

    def spreads(self, paths: Sequence[Path], frames: Sequence[Atoms]) -> np.ndarray:
        return np.concatenate([np.asarray(s, float) for s in self._map(_spreads, paths, frames)])

    def errors(self, paths: Sequence[Path], frames: Sequence[Atoms]) -> dict[str, float]:
        parts = self._map(_errors, paths, frames)
        f_ref = np.concatenate([p["forces_reference"] for p in parts])
        f_pred = np.concatenate([p["forces_predicted"] for p in parts])
        n = sum(p["n"] for p in parts)
        e2 = sum(p["n"] * p["energy_rmse_meV_atom"] ** 2 for p in parts) / n
        spreads = np.concatenate([p["force_spread_eV_A"] for p in parts])
        worst = np.concatenate([p["max_force_error_eV_A"] for p in parts])
        p_err = np.concatenate([p["pressure_error_GPa"] for p in parts])
        return {
            "force_rmse_eV_A": float(np.sqrt(((f_pred - f_ref) ** 2).mean())),
            "energy_rmse_meV_atom": float(math.sqrt(e2)),
            "pressure_rmse_GPa": float(np.sqrt((p_err**2).mean())) if p_err.size else None,
            "median_test_spread_eV_A": float(np.nanmedian(spreads)),
            "spread_error_rank_correlation": rank_correlation(spreads, worst),
        }

    def close(self) -> None:
        self.pool.shutdown()


def descriptors(paths: Sequence[Path], dtype: str, frames: Sequence[Atoms]) -> np.ndarray:
    """``CommitteeCalculator.descriptor`` of each frame: the first member's invariant features
    averaged over atoms (computed with that member alone, which gives the same numbers)."""
    calc = mace_calculator([paths[0]], device="cpu", dtype=dtype)
    rows = []
    for frame in frames:
        atoms = Atoms(frame.numbers, frame.positions, cell=frame.cell, pbc=True)
        rows.append(np.asarray(calc.get_descriptors(atoms, invariants_only=True)).mean(axis=0))
    return np.array(rows)


# -- the two strategies ---------------------------------------------------------------------------


@dataclass
class Point:
    labels: int
    force_rmse_eV_A: float
    energy_rmse_meV_atom: float
    median_test_spread_eV_A: float
    #: Spearman's rho, per test frame: committee force spread against the max atomic force error
    spread_error_rank_correlation: float | None
    train_s: float
    selection: dict[str, Any] = field(default_factory=dict)


#: What docs/results/al_efficiency.json keeps of the full document (besides the two curves).
SUMMARY_KEYS = (
    "random_final",
    "active_labels_to_reach_random_final",
    "active_labels_to_reach_random_final_interpolated",
    "ratio",
    "target_ratio",
    "passed",
    "active_labels_extrapolated",
    "random_labels_worth_active_final",
    "active_picks_by_T_P",
    "verdict",
    "timings_s",
)


def choose_active(
    spreads: np.ndarray,
    frames: Sequence[Atoms],
    labelled: Sequence[Atoms],
    paths: Sequence[Path],
    args: argparse.Namespace,
    round_seed: int,
) -> tuple[list[int], dict[str, Any]]:
    """Indices into ``frames`` to label, by the product's selector (``selection.select``):
    strategy ``window_fps`` (trust window + FPS), or ``top_spread_fps`` (FPS among the
    2 x ``args.batch`` highest spreads) when the window holds fewer than ``args.batch`` frames.

    Descriptors are computed only for the strategy's candidates (zero rows elsewhere). Unlike
    the benchmark's own fallback before it, ``top_spread_fps`` never draws failed frames
    (spread >= ``--trust-hi``, or non-finite): its pool is the highest spreads below hi.
    """
    window_args = (spreads, args.trust_lo, args.trust_hi, args.batch)
    in_window = candidates(*window_args, "window_fps", args.adaptive_percentile)
    lo, hi = in_window.window
    if in_window.indices.size >= args.batch:
        strategy, pool = "window_fps", in_window
    else:
        strategy = "top_spread_fps"
        pool = candidates(*window_args, strategy, args.adaptive_percentile)
    reference = descriptors(paths, args.eval_dtype, labelled)
    summary = {
        "pool_frames": len(frames),
        "median_spread_eV_A": float(np.nanmedian(spreads)),
        "p90_spread_eV_A": float(np.nanpercentile(spreads, 90)),
        "max_spread_eV_A": float(np.nanmax(spreads)),
        "window_eV_A": [lo, hi],
        "in_window": int(in_window.indices.size),
        "strategy": strategy,
    }
    table = np.zeros((len(frames), reference.shape[1]))
    if pool.indices.size:
        table[pool.indices] = descriptors(paths, args.eval_dtype, [frames[i] for i in pool.indices])
    choice = select(
        spreads,
        table,
        args.trust_lo,
        args.trust_hi,
        args.batch,
        strategy=strategy,
        adaptive_percentile=args.adaptive_percentile,
        reference=reference,
        seed=round_seed,
    )
    picks = choice.indices
    if strategy == "window_fps":
        summary["how"] = "trust window + FPS"
    else:
        summary["how"] = (
            f"window held {in_window.indices.size} < {args.batch}: FPS among top spreads"
        )
    summary["picked_spread_eV_A"] = [round(float(spreads[i]), 4) for i in picks]
    summary["picked_T_P"] = [
        [frames[i].info["target_T_K"], frames[i].info["target_P_GPa"]] for i in picks
    ]
    return [int(i) for i in picks], summary


def evaluate_point(
    n_labels: int,
    paths: list[Path],
    evaluator: Evaluator,
    test: Sequence[Atoms],
    train_s: float,
    selection: dict[str, Any] | None = None,
) -> Point:
    e = evaluator.errors(paths, test)
    return Point(
        n_labels,
        e["force_rmse_eV_A"],
        e["energy_rmse_meV_atom"],
        e["median_test_spread_eV_A"],
        e["spread_error_rank_correlation"],
        round(train_s, 1),
        selection or {},
    )


def log_point(strategy: str, p: Point, t0: float) -> None:
    print(
        f"  {strategy:<6} {p.labels:>4} labels: force RMSE {p.force_rmse_eV_A:.4f} eV/Å, "
        f"energy RMSE {p.energy_rmse_meV_atom:7.1f} meV/atom, median test spread "
        f"{p.median_test_spread_eV_A:.3f} eV/Å, spread-error rank correlation "
        f"{p.spread_error_rank_correlation or float('nan'):.2f} (training {p.train_s:.0f} s; "
        f"{time.perf_counter() - t0:.0f} s elapsed)",
        flush=True,
    )


def first_reaching(curve: Sequence[Point], target: float) -> tuple[int | None, float | None]:
    """(first measured label count with RMSE <= target, log-log interpolated count)."""
    for k, p in enumerate(curve):
        if p.force_rmse_eV_A <= target:
            if k == 0:
                return p.labels, float(p.labels)
            q = curve[k - 1]
            return p.labels, interpolate(q, p, target)
    return None, None


def interpolate(q: Point, p: Point, target: float) -> float:
    """Label count where the log-log line through q and p reaches ``target`` RMSE."""
    y0, y1 = math.log(q.force_rmse_eV_A), math.log(p.force_rmse_eV_A)
    x0, x1 = math.log(q.labels), math.log(p.labels)
    if y0 == y1:
        return float(p.labels)
    return float(math.exp(x0 + (math.log(target) - y0) * (x1 - x0) / (y1 - y0)))


def random_equivalent(curve: Sequence[Point], rmse: float) -> float | None:
    """Random labels (interpolated log-log on the random curve) for ``rmse``; None outside it."""
    for q, p in itertools.pairwise(curve):
        lo, hi = sorted((q.force_rmse_eV_A, p.force_rmse_eV_A))
        if lo <= rmse <= hi:
            return interpolate(q, p, rmse)
    return None


# -- main -----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a small smoke run (a few minutes)")
    add("--out", type=Path, default=Path("benchmarks/out"), help="where the JSON and PNG go")
    add("--seed", type=int, default=0)
    add("--jobs", type=int, default=2, help="worker processes / members trained at a time (2)")
    add("--foundation", type=Path, help="an existing stand-in .model (default: build one)")
    add("--temperatures", help=f"K, comma-separated ({FULL['temperatures']})")
    add("--pressures", help=f"GPa, comma-separated ({FULL['pressures']})")
    add("--trajectories", type=int, help="per (T, P), test ones included (8)")
    add("--test-trajectories", type=int, help="per (T, P), held out (2)")
    add("--frames", type=int, help="recorded frames per trajectory (12)")
    add("--interval", type=int, help="MD steps between frames (10)")
    add("--equilibration", type=int, help="MD steps before the first frame (60)")
    add("--timestep", type=float, default=2.0, help="MD time step, fs (2)")
    add("--standin-structures", type=int, help="EMT cells of the stand-in (150)")
    add("--standin-epochs", type=int, help="stand-in pre-training epochs (30)")
    add("--models", type=int, help="committee members (4)")
    add("--epochs", type=int, help="fine-tuning epochs of every member (10)")
    add("--batch-size", type=int, default=5, help="training batch size (5)")
    add("--learning-rate", type=float, default=0.01)
    add("--initial", type=int, help="random labels both strategies start from (10)")
    add("--batch", type=int, help="labels per active round (10)")
    add("--active-max", type=int, help="active labels at the end (60)")
    add("--random-schedule", help="random label counts after the initial ones (25,50,100,200)")
    add("--trust-lo", type=float, default=0.05, help="eV/Å (0.05)")
    add("--trust-hi", type=float, default=2.0, help="eV/Å (2.0)")
    add(
        "--adaptive-percentile",
        type=float,
        default=80.0,
        help="lo moves to this percentile of the spreads below hi; -1: fixed lo (80)",
    )
    add("--eval-dtype", default="float64", choices=["float32", "float64"])
    add("--target-ratio", type=float, default=0.2, help="PASS when active/random <= this (0.2)")
    add("--keep", action="store_true", help="keep the temporary folder (models, logs)")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.adaptive_percentile is not None and args.adaptive_percentile < 0:
        args.adaptive_percentile = None
    args.temperature_list = [float(t) for t in str(args.temperatures).split(",")]
    args.pressure_list = [float(p) for p in str(args.pressures).split(",")]
    args.random_list = [int(n) for n in str(args.random_schedule).split(",")]
    if args.models < 2:
        parser.error("a committee needs at least 2 members")
    if args.test_trajectories >= args.trajectories:
        parser.error("--test-trajectories must leave trajectories for the pool")
    if sorted(set(args.random_list)) != args.random_list or args.random_list[0] <= args.initial:
        parser.error("--random-schedule: increasing label counts above --initial")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    t0 = time.perf_counter()
    mode = "quick" if args.quick else "full"
    print(
        f"al_efficiency ({mode}): {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}; seed {args.seed}, {args.jobs} jobs; load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="al-efficiency-"))
    evaluator = None
    timings: dict[str, float] = {}
    try:
        evaluator = Evaluator(args.jobs, args.eval_dtype)
        # the stand-in foundation trains (a subprocess) while the workers run the EMT MD
        foundation = args.foundation
        build: dict[str, Any] = {}
        builder = None
        if foundation is None:
            foundation = tmp / "standin.model"
            settings0 = replace(STANDIN_SETTINGS, max_epochs=args.standin_epochs)

            def build_foundation() -> None:
                t = time.perf_counter()
                try:
                    build_standin_foundation(
                        ELEMENTS, foundation, args.standin_structures, args.seed, settings0, 1
                    )
                except Exception as exc:  # re-raised below, in the main thread
                    build["error"] = exc
                build["s"] = time.perf_counter() - t

            builder = threading.Thread(target=build_foundation)
            builder.start()
        t = time.perf_counter()
        pool, test = make_pool(args, evaluator.pool)
        timings["pool_md_s"] = time.perf_counter() - t
        pool_info, test_info = describe_frames(pool), describe_frames(test)
        print(f"pool: {pool_info}\ntest: {test_info}", flush=True)
        print(f"EMT MD: {timings['pool_md_s']:.0f} s", flush=True)
        if builder is not None:
            builder.join()
            if "error" in build:
                raise build["error"]
            timings["standin_s"] = build["s"]
            print(f"stand-in foundation: {build['s']:.0f} s (in parallel with the MD)")
        if args.random_list[-1] > len(pool):
            raise SystemExit(f"the pool has {len(pool)} frames, fewer than the random schedule")

        settings = TrainSettings(
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
        )
        rng = np.random.default_rng(args.seed)
        order = [int(i) for i in rng.permutation(len(pool))]  # random's order; its head: initial
        initial = order[: args.initial]

        def committee(indices: Sequence[int], name: str) -> tuple[list[Path], float]:
            t = time.perf_counter()
            paths = train_committee(
                [pool[i] for i in indices], tmp / name, args, settings, foundation, evaluator.pool
            )
            return paths, time.perf_counter() - t

        paths0, s0 = committee(initial, f"labels-{args.initial:04d}-shared")
        start = evaluate_point(args.initial, paths0, evaluator, test, s0)
        log_point("both", start, t0)

        # random: nested sets, the first n frames of one random order
        t = time.perf_counter()
        random_curve = [start]
        for n in args.random_list:
            paths, s = committee(order[:n], f"random-{n:04d}")
            random_curve.append(evaluate_point(n, paths, evaluator, test, s))
            log_point("random", random_curve[-1], t0)
        timings["random_s"] = time.perf_counter() - t

        # active: spread on the unlabelled pool, window + FPS, batch by batch
        t = time.perf_counter()
        active_curve = [start]
        labelled = list(initial)
        paths = paths0
        round_ = 0
        checked = False
        while len(labelled) < args.active_max:
            round_ += 1
            taken = set(labelled)
            rest = [i for i in range(len(pool)) if i not in taken]
            ts = time.perf_counter()
            spreads = evaluator.spreads(paths, [pool[i] for i in rest])
            score_s = time.perf_counter() - ts
            if not checked:  # the descriptors used are CommitteeCalculator.descriptor's
                mine = descriptors(paths, args.eval_dtype, [pool[rest[0]]])[0]
                calc = CommitteeCalculator(paths, device="cpu", dtype=args.eval_dtype)
                assert np.allclose(mine, calc.descriptor(pool[rest[0]].copy()), atol=1e-8)
                checked = True
            batch = min(args.batch, args.active_max - len(labelled))
            picks, summary = choose_active(
                spreads,
                [pool[i] for i in rest],
                [pool[i] for i in labelled],
                paths,
                replace_batch(args, batch),
                args.seed * 1000 + round_,
            )
            summary["scoring_s"] = round(score_s, 1)
            labelled += [rest[i] for i in picks]
            paths, s = committee(labelled, f"active-{len(labelled):04d}")
            active_curve.append(evaluate_point(len(labelled), paths, evaluator, test, s, summary))
            print(
                f"  active round {round_}: pool spread median {summary['median_spread_eV_A']:.3f}"
                f" / p90 {summary['p90_spread_eV_A']:.3f} eV/Å, window "
                f"[{summary['window_eV_A'][0]:.3f}, {summary['window_eV_A'][1]:.3f}) holds "
                f"{summary['in_window']}, {summary['how']}; scoring {score_s:.0f} s",
                flush=True,
            )
            log_point("active", active_curve[-1], t0)
        timings["active_s"] = time.perf_counter() - t
    finally:
        if evaluator is not None:
            evaluator.close()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    timings["total_s"] = time.perf_counter() - t0
    return report(args, active_curve, random_curve, pool_info, test_info, timings)


def replace_batch(args: argparse.Namespace, batch: int) -> argparse.Namespace:
    copy = argparse.Namespace(**vars(args))
    copy.batch = batch
    return copy


def report(
    args: argparse.Namespace,
    active: list[Point],
    random: list[Point],
    pool_info: dict[str, Any],
    test_info: dict[str, Any],
    timings: dict[str, float],
) -> int:
    from al_loop.plots import learning_curves_comparison

    n_random = random[-1].labels
    target_rmse = random[-1].force_rmse_eV_A
    needed, needed_interp = first_reaching(active, target_rmse)
    extrapolated = None
    ratio = needed / n_random if needed is not None else None
    passed = ratio is not None and ratio <= args.target_ratio
    worth = random_equivalent(random, active[-1].force_rmse_eV_A)
    if worth is None and active[-1].force_rmse_eV_A < target_rmse:
        worth_text = f"> {n_random} (below random's final RMSE)"
    elif worth is None:
        worth_text = f"< {random[0].labels} (above random's first point)"
    else:
        worth_text = f"{worth:.0f}"

    print()
    print(f"{'labels':>6}  {'active RMSE':>11}  {'random RMSE':>11}   (force, eV/Å, test set)")
    counts = sorted({p.labels for p in active} | {p.labels for p in random})
    by_a = {p.labels: p for p in active}
    by_r = {p.labels: p for p in random}
    for n in counts:
        a = f"{by_a[n].force_rmse_eV_A:.4f}" if n in by_a else ""
        r = f"{by_r[n].force_rmse_eV_A:.4f}" if n in by_r else ""
        print(f"{n:>6}  {a:>11}  {r:>11}")
    print()
    print(f"random's final force RMSE: {target_rmse:.4f} eV/Å with {n_random} labels")
    if target_rmse >= random[0].force_rmse_eV_A:
        print("random's labels did not improve on the initial committee: no comparison")
        needed = needed_interp = ratio = None
        passed = False
        verdict = "INCONCLUSIVE (random never beat the shared initial committee)"
    elif needed is None:
        print(
            f"active did not reach it within {active[-1].labels} labels (final "
            f"{active[-1].force_rmse_eV_A:.4f} eV/Å): ratio > {active[-1].labels / n_random:.3f}"
        )
        if len(active) >= 3 and active[-1].force_rmse_eV_A < active[-2].force_rmse_eV_A:
            extrapolated = interpolate(active[-2], active[-1], target_rmse)
            print(
                f"  extrapolated (log-log through active's last two points): ~{extrapolated:.0f} "
                f"labels, ratio ~{extrapolated / n_random:.2f} (an estimate, not a measurement)"
            )
        verdict = f"FAIL (target ratio <= {args.target_ratio:g})"
    else:
        print(
            f"active reached it with {needed} labels (interpolated {needed_interp:.1f}): "
            f"ratio {needed}/{n_random} = {ratio:.3f}"
        )
        verdict = f"{'PASS' if passed else 'FAIL'} (target ratio <= {args.target_ratio:g})"
    print(
        f"active's final RMSE ({active[-1].force_rmse_eV_A:.4f} eV/Å at {active[-1].labels} "
        f"labels) is worth {worth_text} random labels"
    )
    picked: dict[str, int] = {}
    for p in active:
        for t, pr in p.selection.get("picked_T_P", []):
            key = f"{t:g} K, {pr:g} GPa"
            picked[key] = picked.get(key, 0) + 1
    if picked:
        print(
            "active's picks by (T, P) of their trajectory: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(picked.items(), key=lambda kv: -kv[1]))
        )
    print(f"verdict: {verdict}")
    print(
        "timings: "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        + f" (wall time {timings['total_s'] / 60:.1f} min; load average "
        f"{os.getloadavg()[0]:.1f}, other processes share the cores)"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    png = learning_curves_comparison(
        {
            "active (committee spread + FPS)": (
                [p.labels for p in active],
                [p.force_rmse_eV_A for p in active],
            ),
            "random": ([p.labels for p in random], [p.force_rmse_eV_A for p in random]),
        },
        args.out / "al_efficiency.png",
        target=target_rmse,
    )
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("temperature_list", "pressure_list", "random_list")
    }
    document = {
        "benchmark": "al_efficiency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg()[0],
        },
        "settings": settings,
        "pool": pool_info,
        "test": test_info,
        "active": [asdict(p) for p in active],
        "random": [asdict(p) for p in random],
        "random_final": {"labels": n_random, "force_rmse_eV_A": target_rmse},
        "active_labels_to_reach_random_final": needed,
        "active_labels_to_reach_random_final_interpolated": needed_interp,
        "ratio": ratio,
        "target_ratio": args.target_ratio,
        "passed": passed,
        "active_labels_extrapolated": extrapolated,
        "random_labels_worth_active_final": worth,
        "active_picks_by_T_P": picked,
        "verdict": verdict,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    path = args.out / "al_efficiency.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path} and {png}")
    if not args.quick:  # the figures of a full run, and its plot, beside the docs
        curve = [
            "labels",
            "force_rmse_eV_A",
            "energy_rmse_meV_atom",
            "spread_error_rank_correlation",
        ]
        figures = {k: document[k] for k in SUMMARY_KEYS}
        figures["active"] = [{k: asdict(p)[k] for k in curve} for p in active]
        figures["random"] = [{k: asdict(p)[k] for k in curve} for p in random]
        record("al_efficiency", figures)
        shutil.copyfile(png, RESULTS / "al_efficiency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
