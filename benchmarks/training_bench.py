"""How the committee is trained and driven: energy, force and pressure accuracy, spread noise
and cost of the choices.

Usage::

    python benchmarks/training_bench.py [--labels 40] [--seed 0] [--out benchmarks/out]

Ground truth and data as in ``al_efficiency.py`` (its functions are reused): EMT NPT frames of
random Cu-Ni-Al cells of 4-16 atoms at 300/1200/2000 K x 0/50 GPa, 5 trajectories per (T, P),
one held out as the test set (60 frames); ``--labels`` random pool frames are the training
labels.

1. Foundations: the stand-in before issue #10 (150 EMT cells, r_max 4 Å, mace's ``weighted``
   loss, energy 1 / forces 10: no stress term) and today's (``calculators.models.standin``:
   500 cells, r_max 5.5 Å, energy 100 / forces 10 / stress 1000), built here (``--foundation``
   reuses a file for today's); their own energy, force and pressure errors on the test frames.
2. Fine-tuning variants, each a committee of 4 members (bootstrap resamples, the same seeds)
   from today's foundation, 10 epochs, lr 0.01, batch 5, EMA. Baseline ``forces-first``
   (al-loop's default before issue #10: ``weighted`` loss, energy 1 / forces 100, E0s of the
   foundation). Variants: ``balanced`` (today's default: ``stress`` loss, 100 / 10 / 1000, E0s
   estimated), ``no-stress`` (balanced, stress weight 0), ``e0s-foundation``, ``stage-two``
   (forces-first, then mace's stage two from epoch 7 with energy 1000 / forces 100 / stress
   1000: the energy-weight ramp), ``lr-0.003`` and ``lr-0.001`` (balanced, a lower learning
   rate: less of the foundation is overwritten), ``epochs-30``, ``early-stop`` (30 epochs,
   patience 3), ``multi-head`` (balanced, replaying 200 of the foundation's cells),
   ``old-foundation`` (balanced, from the stand-in before #10). Figures on the test frames:
   committee-mean energy, force and pressure RMSE, median force spread, Spearman's rank
   correlation of the spread with the frame's max force error, wall time; ratios against
   ``forces-first``.
3. Parallel training: the ``balanced`` committee trained again one member after another (2
   torch threads) against two at a time with one thread each: wall time and ratio.
4. MD driver: one 100-step NPT trajectory at 2000 K, 50 GPa on an 8-atom cell with the
   ``balanced`` committee (float32), driven by the committee mean against the first member
   with the committee scoring every 10th frame (``exploration.driver``): wall time and ratio.

Runtime on 2 cores: ~35 min (every variant). Written to ``--out``: ``<--record>.json``, and the
figures to ``docs/results/<--record>.json`` (default ``training_bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))  # al_efficiency's pool and workers

import al_efficiency as ae
import numpy as np
from ase.build import bulk
from bench_record import record

from al_loop.exploration import MDSettings, run_trajectory
from al_loop.stages.train import member_split
from calculators.models.committee import CommitteeCalculator
from calculators.models.mace_train import TrainSettings, labelled_atoms, train_mace
from calculators.models.standin import STANDIN_SETTINGS, build_standin_foundation, replay_file

BALANCED = TrainSettings(max_epochs=10, batch_size=5, learning_rate=0.01)
FORCES_FIRST = replace(
    BALANCED,
    energy_weight=1.0,
    forces_weight=100.0,
    stress_weight=1.0,
    e0s="foundation",
    extra_args={"loss": "weighted"},
)
#: name: (settings, foundation: "new" or "old", replay the foundation's cells)
VARIANTS: dict[str, tuple[TrainSettings, str, bool]] = {
    "forces-first": (FORCES_FIRST, "new", False),
    "balanced": (BALANCED, "new", False),
    "no-stress": (replace(BALANCED, stress_weight=0.0), "new", False),
    "e0s-foundation": (replace(BALANCED, e0s="foundation"), "new", False),
    "stage-two": (
        replace(
            FORCES_FIRST,
            extra_args={
                "loss": "stress",
                "swa": True,
                "start_swa": 7,
                "swa_energy_weight": 1000.0,
                "swa_forces_weight": 100.0,
                "swa_stress_weight": 1000.0,
            },
        ),
        "new",
        False,
    ),
    "lr-0.003": (replace(BALANCED, learning_rate=0.003), "new", False),
    "lr-0.001": (replace(BALANCED, learning_rate=0.001), "new", False),
    "epochs-30": (replace(BALANCED, max_epochs=30), "new", False),
    "early-stop": (replace(BALANCED, max_epochs=30, extra_args={"patience": 3}), "new", False),
    "multi-head": (replace(BALANCED, replay_samples=200), "new", True),
    "old-foundation": (BALANCED, "old", False),
}
#: The stand-in before issue #10 (mace's weighted loss: no stress term).
OLD_STANDIN = replace(
    STANDIN_SETTINGS,
    r_max_A=4.0,
    energy_weight=1.0,
    forces_weight=10.0,
    stress_weight=1.0,
    extra_args={"loss": "weighted"},
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--labels", type=int, default=40, help="training labels (40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--foundation", type=Path, help="an existing stand-in (default: build)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, with balanced ({','.join(VARIANTS)})",
    )
    parser.add_argument(
        "--record",
        default="training_bench",
        help="the name its figures are recorded under in docs/results/ (training_bench)",
    )
    return parser.parse_args(argv)


def pool_args(seed: int) -> argparse.Namespace:
    return ae.parse(
        [
            *("--temperatures", "300,1200,2000", "--pressures", "0,50"),
            *("--trajectories", "5", "--test-trajectories", "1", "--frames", "10"),
            *("--models", "4", "--seed", str(seed), "--jobs", "2"),
        ]
    )


def sequential(labelled: list, workdir: Path, seed: int, settings: TrainSettings, f: Path) -> float:
    """Wall time of the committee trained one member after another, each with every core."""
    train = [
        labelled_atoms(a, a.get_potential_energy(), a.get_forces(), a.get_stress())
        for a in labelled
    ]
    t = time.perf_counter()
    for m in range(4):
        picked, out_of_bag = member_split(train, m, seed, bootstrap=True)
        train_mace(
            [train[i] for i in picked],
            [train[i] for i in out_of_bag],
            workdir / f"member-{m}",
            1000 * seed + m,
            settings,
            f,
            threads=os.cpu_count(),
        )
    return time.perf_counter() - t


def md_wall(paths: list[Path], driver: str) -> tuple[float, int]:
    committee = CommitteeCalculator(paths, device="cpu", dtype="float32")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 2))
    atoms.symbols[:3] = "NiAlNi"
    # no early stop: both drivers must run all 100 steps for the times to compare
    settings = MDSettings(steps=100, frame_interval=10, max_spread_eV_A=float("inf"))
    drive = committee.first_member() if driver == "first" else None
    run_trajectory(
        atoms, committee, "npt", 2000.0, 50.0, replace(settings, steps=10), "w", 0, drive
    )
    t = time.perf_counter()
    frames = run_trajectory(atoms, committee, "npt", 2000.0, 50.0, settings, "t", 0, drive)
    return time.perf_counter() - t, len(frames)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    import torch

    print(
        f"training_bench: {os.cpu_count()} cores, Python {platform.python_version()}, torch "
        f"{torch.__version__}; seed {opts.seed}, {opts.labels} labels; load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="training-bench-"))
    args = pool_args(opts.seed)
    evaluator = ae.Evaluator(2, "float64")
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()}, {os.cpu_count()} cores",
        "labels": opts.labels,
        "seed": opts.seed,
        "variants": {},
    }
    try:
        foundations = {
            "new": opts.foundation
            or build_standin_foundation(ae.ELEMENTS, tmp / "standin.model", seed=opts.seed),
            "old": build_standin_foundation(
                ae.ELEMENTS, tmp / "old" / "standin.model", 150, opts.seed, OLD_STANDIN
            ),
        }
        pool, test = ae.make_pool(args, evaluator.pool)
        print(f"pool {len(pool)} frames, test {len(test)} frames", flush=True)
        for name, path in foundations.items():
            e = evaluator.errors([path, path], test)  # one model: its own errors, no spread
            out.setdefault("foundations", {})[name] = row = {
                key: round(e[key], 4)
                for key in ("energy_rmse_meV_atom", "force_rmse_eV_A", "pressure_rmse_GPa")
            }
            print(f"foundation {name:4s} {row}", flush=True)
        rng = np.random.default_rng(opts.seed)
        labelled = [pool[i] for i in rng.permutation(len(pool))[: opts.labels]]
        committees = {}
        chosen = opts.variants.split(",")
        unknown = sorted(set(chosen) - set(VARIANTS))
        if unknown or "balanced" not in chosen:
            raise SystemExit(
                f"--variants: {unknown or 'balanced missing'}; known: {list(VARIANTS)}"
            )
        for name in chosen:
            settings, which, replay = VARIANTS[name]
            t = time.perf_counter()
            paths = ae.train_committee(
                labelled,
                tmp / name,
                args,
                settings,
                foundations[which],
                evaluator.pool,
                replay_file(foundations[which]) if replay else None,
            )
            wall = time.perf_counter() - t
            e = evaluator.errors(paths, test)
            s = evaluator.spreads(paths, test)
            committees[name] = paths
            out["variants"][name] = row = {
                "train_wall_s": round(wall, 1),
                "energy_rmse_meV_atom": round(e["energy_rmse_meV_atom"], 1),
                "force_rmse_eV_A": round(e["force_rmse_eV_A"], 4),
                "pressure_rmse_GPa": round(e["pressure_rmse_GPa"], 3),
                "median_spread_eV_A": round(float(np.nanmedian(s)), 4),
                "below_0.10": round(float((s < 0.10).mean()), 3),
                "spearman": round(float(e["spread_error_rank_correlation"] or np.nan), 2),
            }
            print(f"{name:14s} {row}", flush=True)
        base = out["variants"].get("forces-first", out["variants"]["balanced"])
        for row in out["variants"].values():
            for key in ("energy_rmse_meV_atom", "force_rmse_eV_A", "pressure_rmse_GPa"):
                row[f"{key.split('_')[0]}_vs_forces_first"] = round(row[key] / base[key], 2)
        seq = sequential(
            labelled, tmp / "sequential", opts.seed, VARIANTS["balanced"][0], foundations["new"]
        )
        par = out["variants"]["balanced"]["train_wall_s"]
        out["parallel_training"] = {
            "sequential_s": round(seq, 1),
            "two_at_a_time_s": par,
            "speed_up": round(seq / par, 2),
        }
        print(
            f"training 4 members: one after another {seq:.0f} s, two at a time {par:.0f} s "
            f"({seq / par:.2f}x)",
            flush=True,
        )
        mean_s, n_mean = md_wall(committees["balanced"], "mean")
        first_s, n_first = md_wall(committees["balanced"], "first")
        out["md_driver"] = {
            "mean_s": round(mean_s, 2),
            "first_s": round(first_s, 2),
            "frames": [n_mean, n_first],
            "speed_up": round(mean_s / first_s, 2),
        }
        print(
            f"100 MD steps, 8 atoms: committee-mean driver {mean_s:.1f} s ({n_mean} frames), "
            f"first-member driver {first_s:.1f} s ({n_first} frames): {mean_s / first_s:.2f}x",
            flush=True,
        )
    finally:
        evaluator.close()
        shutil.rmtree(tmp, ignore_errors=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / f"{opts.record}.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {opts.out / f'{opts.record}.json'}")
    record(opts.record, {k: v for k, v in out.items() if k not in ("date", "machine")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
