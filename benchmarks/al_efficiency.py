"""Data efficiency of active selection against random selection, with EMT as the ground truth.

Usage::

    python benchmarks/al_efficiency.py [--case uniform|redundant] [--quick] [--out benchmarks/out]
        [--seed 0] [--jobs 2]

The question: how many labels does the committee's active selection need to reach the held-out
force error that random labelling reaches with many more? Target: active needs at most 1/5 of
random's labels (``--target-ratio 0.2``). Two cases:

- ``uniform`` (the baseline): the pool's conditions follow the test set's. The verdict is on
  the force RMSE of the whole test set.
- ``redundant`` (the case users face): most of the pool is long, correlated MD at an easy
  condition (``--easy``, 300 K and 0 GPa: ``--easy-trajectories`` trajectories of
  ``--easy-frames`` frames ``--easy-interval`` steps apart), and every other condition has
  ``--hard-trajectories`` short ones. The test set is built as the uniform case's
  (``--test-trajectories`` per condition: uniform over conditions; other random cells, as the
  trajectory seeds follow the pool's). The verdict is on the worst condition's force RMSE.

Both figures (the force RMSE over every atom of the test set, and over its worst condition's)
are reported in both cases, and energy and pressure RMSE per condition.

1. Ground truth and pool. ASE's EMT labels Cu-Ni-Al. NPT MD (ASE's ``NPTBerendsen``, 2 fs) of
   random Cu-Ni-Al alloys (fcc or bcc cells of 4-16 atoms, random compositions, rattled),
   compressed to the target pressure first (``al_loop.exploration.compress``), at every (T, P) of
   ``--temperatures`` x ``--pressures`` (300-2000 K, 0-50 GPa: cold, hot, molten, compressed
   frames): ``--trajectories`` trajectories per (T, P), a frame every ``--interval`` steps after
   ``--equilibration`` steps, each frame labelled by EMT (energy, forces, stress). Whole
   trajectories, ``--test-trajectories`` per (T, P), are held out: the test set. The rest is the
   pool both strategies draw labels from.
2. Committee. ``--models`` members fine-tuned (``calculators.models.mace_train.train_mace``,
   single head, the default loss weights: energy 100, forces 10, stress 1000; E0s from the
   foundation, whose level of theory EMT is) from a stand-in foundation
   (``calculators.models.standin``, or ``--foundation``; no real foundation model can be
   downloaded here) on bootstrap resamples of the labels (out-of-bag
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
(``al_loop.plots.learning_curves_comparison``; the redundant case: ``al_efficiency_redundant``).
Evaluations run in ``--jobs`` worker processes and members train ``--jobs`` at a time, one
torch thread each.
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
#: The redundant case: the full run's conditions and test set, but the pool is mostly long,
#: correlated MD at the easy condition (300 K, 0 GPa); 2 short trajectories per other condition.
REDUNDANT = {
    "easy": "300:0",
    "easy_trajectories": 8,
    "easy_frames": 100,
    "easy_interval": 5,
    "hard_trajectories": 2,
}
QUICK_REDUNDANT = {
    "easy": "300:0",
    "easy_trajectories": 3,
    "easy_frames": 20,
    "easy_interval": 5,
    "hard_trajectories": 1,
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


def random_alloy(rng: np.random.Generator, elements: Sequence[str] = ELEMENTS) -> Atoms:
    """A random fcc or bcc cell of 4-16 atoms of ``elements`` (some of Cu, Ni, Al) at its
    Vegard volume, rattled 0.05 Å."""
    lattice = str(rng.choice(["fcc", "bcc"]))
    n_atoms = int(rng.choice([4, 8, 12, 16]))
    fractions = rng.dirichlet(np.ones(len(elements)))
    symbols = [str(s) for s in rng.choice(list(elements), size=n_atoms, p=fractions)]
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
    elements, timestep, equilibration, frames and interval options."""
    args = argparse.Namespace(**args)
    rng = np.random.default_rng(seed)
    atoms = random_alloy(rng, args.elements)
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
    """(pool, test): EMT MD frames, trajectories run by ``workers``. The test set is
    ``--test-trajectories`` whole trajectories per (T, P) condition, the same for every
    condition. The pool: ``--trajectories`` minus those per condition (case ``uniform``); or
    (case ``redundant``) ``--easy-trajectories`` long ones of ``--easy-frames`` frames every
    ``--easy-interval`` steps at each ``--easy`` condition and ``--hard-trajectories`` per other
    condition."""
    md = {k: getattr(args, k) for k in ("timestep", "equilibration", "frames", "interval")}
    md["elements"] = args.element_list
    easy_md = {**md, "frames": args.easy_frames, "interval": args.easy_interval}
    jobs = []
    index = 0
    for temperature in args.temperature_list:
        for pressure in args.pressure_list:
            n_pool, pool_md = args.trajectories - args.test_trajectories, md
            if args.case == "redundant":
                easy = (temperature, pressure) in args.easy_list
                n_pool = args.easy_trajectories if easy else args.hard_trajectories
                pool_md = easy_md if easy else md
            for k in range(args.test_trajectories + n_pool):
                held_out = k < args.test_trajectories
                name = f"{index:03d}-{temperature:g}K-{pressure:g}GPa"
                future = workers.submit(
                    trajectory,
                    temperature,
                    pressure,
                    md if held_out else pool_md,
                    name,
                    args.seed * 10_000 + index,
                )
                jobs.append((held_out, future))
                index += 1
    pool: list[Atoms] = []
    test: list[Atoms] = []
    for held_out, future in jobs:
        (test if held_out else pool).extend(future.result())
    return pool, test


def condition(frame: Atoms) -> str:
    """The (T, P) condition of a frame's trajectory, as a name."""
    return f"{frame.info['target_T_K']:g} K, {frame.info['target_P_GPa']:g} GPa"


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def describe_frames(frames: Sequence[Atoms]) -> dict[str, Any]:
    """Ranges of the frames' conditions (JSON-able)."""

    def rng_of(key: str) -> list[float]:
        values = np.array([f.info[key] for f in frames], dtype=float)
        return [round(float(values.min()), 2), round(float(values.max()), 2)]

    forces = np.concatenate([f.get_forces() for f in frames])
    counts: dict[str, int] = {}
    for f in frames:
        counts[condition(f)] = counts.get(condition(f), 0) + 1
    return {
        "frames": len(frames),
        "frames_by_condition": counts,
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
        "energy_error_meV_atom": 1000.0
        * (result["energy_predicted_eV_atom"] - result["energy_reference_eV_atom"]),
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

    def errors(self, paths: Sequence[Path], frames: Sequence[Atoms]) -> dict[str, Any]:
        """Force, energy and pressure RMSE on ``frames``, overall and per (T, P) condition of
        their trajectories (``by_condition``; the worst condition's force RMSE too)."""
        parts = self._map(_errors, paths, frames)
        f_err = np.concatenate([p["forces_predicted"] - p["forces_reference"] for p in parts])
        e_err = np.concatenate([p["energy_error_meV_atom"] for p in parts])
        p_err = np.concatenate([p["pressure_error_GPa"] for p in parts])
        spreads = np.concatenate([p["force_spread_eV_A"] for p in parts])
        worst = np.concatenate([p["max_force_error_eV_A"] for p in parts])
        per_frame_f = np.split(f_err, np.cumsum([len(f) for f in frames])[:-1])
        by_condition: dict[str, dict[str, float]] = {}
        for name in dict.fromkeys(condition(f) for f in frames):
            pick = np.array([condition(f) == name for f in frames])
            forces = np.concatenate([e for e, k in zip(per_frame_f, pick, strict=True) if k])
            by_condition[name] = {
                "n": int(pick.sum()),
                "force_rmse_eV_A": rms(forces),
                "energy_rmse_meV_atom": rms(e_err[pick]),
                "pressure_rmse_GPa": rms(p_err[pick]) if p_err.size == len(frames) else None,
            }
        worst_name = max(by_condition, key=lambda k: by_condition[k]["force_rmse_eV_A"])
        return {
            "force_rmse_eV_A": rms(f_err),
            "energy_rmse_meV_atom": rms(e_err),
            "pressure_rmse_GPa": rms(p_err) if p_err.size else None,
            "worst_condition": worst_name,
            "worst_condition_force_rmse_eV_A": by_condition[worst_name]["force_rmse_eV_A"],
            "by_condition": by_condition,
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
    #: over every atom of the test set (frames per condition are equal; atoms per frame vary)
    force_rmse_eV_A: float
    energy_rmse_meV_atom: float
    pressure_rmse_GPa: float | None
    #: the (T, P) condition with the highest force RMSE, and that RMSE
    worst_condition: str
    worst_condition_force_rmse_eV_A: float
    median_test_spread_eV_A: float
    #: Spearman's rho, per test frame: committee force spread against the max atomic force error
    spread_error_rank_correlation: float | None
    train_s: float
    by_condition: dict[str, dict[str, float]] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)


#: The two figures: the force RMSE over every atom of the test set (conditions weigh by their
#: atoms), and over the atoms of its worst (T, P) condition.
METRICS = {
    "whole test set": "force_rmse_eV_A",
    "worst condition": "worst_condition_force_rmse_eV_A",
}
#: Which of them decides the verdict, per case.
PRIMARY = {"uniform": "whole test set", "redundant": "worst condition"}

#: What docs/results/<name>.json keeps of the full document (besides the two curves).
SUMMARY_KEYS = (
    "case",
    "run_date",
    "figures",
    "by_condition",
    "primary",
    "passed",
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
        e["pressure_rmse_GPa"],
        e["worst_condition"],
        e["worst_condition_force_rmse_eV_A"],
        e["median_test_spread_eV_A"],
        e["spread_error_rank_correlation"],
        round(train_s, 1),
        e["by_condition"],
        selection or {},
    )


def log_point(strategy: str, p: Point, t0: float) -> None:
    print(
        f"  {strategy:<6} {p.labels:>4} labels: force RMSE {p.force_rmse_eV_A:.4f} eV/Å (worst "
        f"condition {p.worst_condition}: {p.worst_condition_force_rmse_eV_A:.4f}), energy RMSE "
        f"{p.energy_rmse_meV_atom:6.1f} meV/atom, pressure RMSE {p.pressure_rmse_GPa or 0:.2f} "
        "GPa, median test spread "
        f"{p.median_test_spread_eV_A:.3f} eV/Å, spread-error rank correlation "
        f"{p.spread_error_rank_correlation or float('nan'):.2f} (training {p.train_s:.0f} s; "
        f"{time.perf_counter() - t0:.0f} s elapsed)",
        flush=True,
    )


def first_reaching(
    curve: Sequence[Point], target: float, key: str
) -> tuple[int | None, float | None]:
    """(first measured label count with ``key`` <= target, log-log interpolated count)."""
    for k, p in enumerate(curve):
        if getattr(p, key) <= target:
            if k == 0:
                return p.labels, float(p.labels)
            return p.labels, interpolate(curve[k - 1], p, target, key)
    return None, None


def interpolate(q: Point, p: Point, target: float, key: str) -> float:
    """Label count where the log-log line through q and p reaches ``target`` of ``key``."""
    y0, y1 = math.log(getattr(q, key)), math.log(getattr(p, key))
    x0, x1 = math.log(q.labels), math.log(p.labels)
    if y0 == y1:
        return float(p.labels)
    return float(math.exp(x0 + (math.log(target) - y0) * (x1 - x0) / (y1 - y0)))


def random_equivalent(curve: Sequence[Point], rmse: float, key: str) -> float | None:
    """Random labels (interpolated log-log on the random curve) for ``rmse`` of ``key``; None
    outside the curve."""
    for q, p in itertools.pairwise(curve):
        lo, hi = sorted((getattr(q, key), getattr(p, key)))
        if lo <= rmse <= hi:
            return interpolate(q, p, rmse, key)
    return None


def per_condition(active: Sequence[Point], random: Sequence[Point]) -> dict[str, dict[str, Any]]:
    """Per (T, P) condition of the test set: random's final force RMSE there, active's final,
    and the first active label count at or below random's final (None: not reached, or
    random's final no better than the shared start: nothing to reach)."""
    n_random = random[-1].labels
    out = {}
    for name, final in random[-1].by_condition.items():
        target = final["force_rmse_eV_A"]
        improved = target < random[0].by_condition[name]["force_rmse_eV_A"]
        needed = next(
            (p.labels for p in active if p.by_condition[name]["force_rmse_eV_A"] <= target), None
        )
        needed = needed if improved else None
        out[name] = {
            "random_final_force_rmse_eV_A": target,
            "active_final_force_rmse_eV_A": active[-1].by_condition[name]["force_rmse_eV_A"],
            "active_labels_to_reach_random_final": needed,
            "ratio": None if needed is None else needed / n_random,
        }
    return out


def compare(
    active: Sequence[Point], random: Sequence[Point], key: str, target_ratio: float
) -> dict[str, Any]:
    """The figures of one metric: random's final error, the active labels that reach it, their
    ratio to random's labels, and what active's final error is worth in random labels."""
    n_random, target = random[-1].labels, getattr(random[-1], key)
    final = getattr(active[-1], key)
    out: dict[str, Any] = {
        "metric": key,
        "random_final": {"labels": n_random, key: target},
        "active_final": {"labels": active[-1].labels, key: final},
        "active_labels_to_reach_random_final": None,
        "active_labels_to_reach_random_final_interpolated": None,
        "ratio": None,
        "active_labels_extrapolated": None,
        "random_labels_worth_active_final": random_equivalent(random, final, key),
        "passed": False,
    }
    if target >= getattr(random[0], key):
        out["verdict"] = "INCONCLUSIVE (random never beat the shared initial committee)"
        return out
    needed, interpolated = first_reaching(active, target, key)
    if needed is None:
        if len(active) >= 3 and final < getattr(active[-2], key):
            guess = interpolate(active[-2], active[-1], target, key)
            # a nearly flat last step extrapolates to absurd counts: none rather than that
            out["active_labels_extrapolated"] = guess if guess <= 10 * n_random else None
        out["verdict"] = (
            f"FAIL (ratio > {active[-1].labels / n_random:.3f}; target <= {target_ratio:g})"
        )
        return out
    ratio = needed / n_random
    out.update(
        active_labels_to_reach_random_final=needed,
        active_labels_to_reach_random_final_interpolated=interpolated,
        ratio=ratio,
        passed=ratio <= target_ratio,
    )
    word = "PASS" if out["passed"] else "FAIL"
    out["verdict"] = f"{word} (ratio {ratio:.3f}; target <= {target_ratio:g})"
    return out


# -- main -----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a small smoke run (a few minutes)")
    add(
        "--report",
        type=Path,
        help="no run: report again from a full document this script wrote (--out's JSON)",
    )
    add("--out", type=Path, default=Path("benchmarks/out"), help="where the JSON and PNG go")
    add("--seed", type=int, default=0)
    add("--jobs", type=int, default=2, help="worker processes / members trained at a time (2)")
    add("--foundation", type=Path, help="an existing stand-in .model (default: build one)")
    add(
        "--case",
        choices=["uniform", "redundant"],
        default="uniform",
        help="uniform: the pool follows the test set's conditions (the baseline); redundant: "
        "the pool is mostly correlated frames of the --easy conditions, the verdict is on the "
        "worst condition's error",
    )
    add("--elements", default=",".join(ELEMENTS), help="some of Cu,Ni,Al (Cu,Ni,Al)")
    add("--temperatures", help=f"K, comma-separated ({FULL['temperatures']})")
    add("--pressures", help=f"GPa, comma-separated ({FULL['pressures']})")
    add("--trajectories", type=int, help="per (T, P), test ones included (8)")
    add("--test-trajectories", type=int, help="per (T, P), held out (2)")
    add("--frames", type=int, help="recorded frames per trajectory (12)")
    add("--interval", type=int, help="MD steps between frames (10)")
    add("--equilibration", type=int, help="MD steps before the first frame (60)")
    add("--timestep", type=float, default=2.0, help="MD time step, fs (2)")
    add("--easy", help=f"redundant case: T:P conditions, comma-separated ({REDUNDANT['easy']})")
    add("--easy-trajectories", type=int, help="redundant case: per easy condition (8)")
    add("--easy-frames", type=int, help="redundant case: frames per easy trajectory (100)")
    add("--easy-interval", type=int, help="redundant case: steps between easy frames (5)")
    add("--hard-trajectories", type=int, help="redundant case: per other condition (2)")
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
    preset = {**preset, **(QUICK_REDUNDANT if args.quick else REDUNDANT)}
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.adaptive_percentile is not None and args.adaptive_percentile < 0:
        args.adaptive_percentile = None
    args.temperature_list = [float(t) for t in str(args.temperatures).split(",")]
    args.pressure_list = [float(p) for p in str(args.pressures).split(",")]
    args.random_list = [int(n) for n in str(args.random_schedule).split(",")]
    args.element_list = [e.strip() for e in str(args.elements).split(",")]
    if not set(args.element_list) <= set(A_FCC):
        parser.error(f"--elements: some of {', '.join(A_FCC)}")
    args.easy_list = [
        tuple(float(x) for x in pair.split(":")) for pair in str(args.easy).split(",") if pair
    ]
    grid = {(t, p) for t in args.temperature_list for p in args.pressure_list}
    if args.case == "redundant" and not set(args.easy_list) <= grid:
        parser.error(f"--easy: T:P pairs of the --temperatures x --pressures grid, got {args.easy}")
    if args.models < 2:
        parser.error("a committee needs at least 2 members")
    if args.test_trajectories >= args.trajectories:
        parser.error("--test-trajectories must leave trajectories for the pool")
    if sorted(set(args.random_list)) != args.random_list or args.random_list[0] <= args.initial:
        parser.error("--random-schedule: increasing label counts above --initial")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report is not None:
        return report_again(args.report)
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
            e0s="foundation",  # EMT labels: the foundation's own level of theory
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


def report_again(path: Path) -> int:
    """The report of a finished run, from its full document (the figures' code may have
    changed since; the measurements are the run's)."""
    document = json.loads(path.read_text())
    # beside the run's own document, never over it
    settings = dict(document["settings"], report=None, out=path.parent / "re-reported")
    args = argparse.Namespace(
        **{k: Path(v) if k == "foundation" and v else v for k, v in settings.items()}
    )
    active = [Point(**p) for p in document["active"]]
    random = [Point(**p) for p in document["random"]]
    run = document.get("argv") or [
        *("--case", settings["case"]),
        *(("--foundation", settings["foundation"]) if settings.get("foundation") else ()),
    ]
    run = [a for a in run if not a.startswith("(figures re-reported")]
    argv = [*run, f"(figures re-reported: --report {path})"]
    return report(
        args,
        active,
        random,
        document["pool"],
        document["test"],
        document["timings_s"],
        argv,
        document.get("run_date") or document["date"],
    )


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
    argv: list[str] | None = None,
    run_date: str | None = None,
) -> int:
    """Print and write the figures; ``argv`` and ``run_date``: the run's options and date, for
    the record (default: this process's, now)."""
    from al_loop.plots import learning_curves_comparison

    figures = {
        name: compare(active, random, key, args.target_ratio) for name, key in METRICS.items()
    }
    primary = PRIMARY[args.case]
    print()
    print(
        f"{'labels':>6}  {'active RMSE':>11}  {'random RMSE':>11}   (force, eV/Å: whole test set"
        " / worst condition)"
    )
    by_a = {p.labels: p for p in active}
    by_r = {p.labels: p for p in random}
    for n in sorted(by_a.keys() | by_r.keys()):
        cells = [
            f"{c[n].force_rmse_eV_A:.4f} / {c[n].worst_condition_force_rmse_eV_A:.4f}"
            if n in c
            else ""
            for c in (by_a, by_r)
        ]
        print(f"{n:>6}  {cells[0]:>17}  {cells[1]:>17}")
    for name, f in figures.items():
        key = f["metric"]
        n_random, target = f["random_final"]["labels"], f["random_final"][key]
        print(f"\n{name} force RMSE{' (decides the verdict)' if name == primary else ''}:")
        print(f"  random's final: {target:.4f} eV/Å with {n_random} labels")
        needed = f["active_labels_to_reach_random_final"]
        if needed is not None:
            print(
                f"  active reached it with {needed} labels (interpolated "
                f"{f['active_labels_to_reach_random_final_interpolated']:.1f}): "
                f"ratio {f['ratio']:.3f}"
            )
        elif f["active_labels_extrapolated"] is not None:
            x = f["active_labels_extrapolated"]
            print(
                f"  active did not reach it within {active[-1].labels} labels; extrapolated "
                f"(log-log through its last two points) ~{x:.0f} labels, ratio ~{x / n_random:.2f}"
                " (an estimate, not a measurement)"
            )
        worth = f["random_labels_worth_active_final"]
        print(
            f"  active's final {f['active_final'][key]:.4f} eV/Å is worth "
            f"{'outside the random curve' if worth is None else f'{worth:.0f}'} random labels"
        )
        print(f"  {f['verdict']}")
    conditions = per_condition(active, random)
    print(
        f"\nper condition (random's final with {random[-1].labels} labels; active's labels to "
        "reach it):"
    )
    for name, c in conditions.items():
        needed = c["active_labels_to_reach_random_final"]
        print(
            f"  {name:>16}: random {c['random_final_force_rmse_eV_A']:.4f}, active final "
            f"{c['active_final_force_rmse_eV_A']:.4f} eV/Å; "
            + (f"reached with {needed} (ratio {c['ratio']:.2f})" if needed else "not reached")
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
    verdict = f"{figures[primary]['verdict']} on the {primary} force RMSE"
    passed = figures[primary]["passed"]
    print(f"verdict ({args.case} pool): {verdict}")
    print(
        "timings: "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
        + f" (wall time {timings['total_s'] / 60:.1f} min; load average "
        f"{os.getloadavg()[0]:.1f}, other processes share the cores)"
    )

    name = "al_efficiency" if args.case == "uniform" else f"al_efficiency_{args.case}"
    args.out.mkdir(parents=True, exist_ok=True)
    key = METRICS[primary]
    curves = {
        f"{strategy}, {metric}": ([p.labels for p in c], [getattr(p, k) for p in c])
        for strategy, c in (("active", active), ("random", random))
        for metric, k in METRICS.items()
    }
    png = learning_curves_comparison(
        curves,
        args.out / f"{name}.png",
        target=figures[primary]["random_final"][key],
    )
    settings = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if not k.endswith("_list")
    }
    document = {
        "benchmark": name,
        "run_date": run_date or datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "case": args.case,
        "date": run_date or datetime.now(UTC).isoformat(timespec="seconds"),
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
        "figures": figures,
        "by_condition": conditions,
        "primary": primary,
        "passed": passed,
        "active_picks_by_T_P": picked,
        "verdict": verdict,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path} and {png}")
    if not args.quick:  # the figures of a full run, and its plot, beside the docs
        curve = [
            "labels",
            "force_rmse_eV_A",
            "worst_condition",
            "worst_condition_force_rmse_eV_A",
            "energy_rmse_meV_atom",
            "pressure_rmse_GPa",
            "spread_error_rank_correlation",
            "by_condition",
        ]
        summary = {k: document[k] for k in SUMMARY_KEYS}
        summary["active"] = [{k: asdict(p)[k] for k in curve} for p in active]
        summary["random"] = [{k: asdict(p)[k] for k in curve} for p in random]
        record(name, summary, argv)
        shutil.copyfile(png, RESULTS / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
