"""How the committee is trained and driven: accuracy, spread noise and cost of the choices.

Usage::

    python benchmarks/training_bench.py [--labels 40] [--seed 0] [--out benchmarks/out]

Ground truth and data as in ``al_efficiency.py`` (its functions are reused): EMT NPT frames of
random Cu-Ni-Al cells of 4-16 atoms at 300/1200/2000 K x 0/50 GPa, 5 trajectories per (T, P),
one held out as the test set; ``--labels`` random pool frames are the training labels. The
foundation is a stand-in built here (``calculators.models.standin``, 150 EMT cells, 30 epochs).

1. Training variants, each a committee of 4 members (bootstrap resamples, the same seeds) fine-
   tuned for 10 epochs, lr 0.01, batch 5. Baseline: ``plain`` (no EMA of the weights, al-loop's
   default before 2026-11-25). Variants: ``ema`` (``TrainSettings()``'s default now,
   ``ema_decay`` 0.99), ``exp-decay`` (plain with ExponentialLR, gamma 0.7 per epoch),
   ``lr-0.003`` (plain, lr 0.003), ``ema-energy-10`` (ema, energy weight 10). Figures on the
   test frames: committee-mean force RMSE, energy RMSE per atom, median force spread, the
   fractions of frames with spread below 0.05 and 0.10 eV/Å, and Spearman's rank correlation of
   the spread with the frame's max force error; ratios against ``plain``.
2. Parallel training: the ``ema`` committee trained again one member after another (2 torch
   threads) against two at a time with one thread each (as ``al_loop.stages.train`` does on 2
   cores): wall time and ratio.
3. MD driver: one 100-step NPT trajectory at 2000 K, 50 GPa on an 8-atom cell with the ``ema``
   committee (float32), driven by the committee mean against the first member with the
   committee scoring every 10th frame (``exploration.driver``): wall time and ratio.

Runtime on 2 cores: ~12 min. Written to ``--out``: ``training_bench.json``.
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
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import al_efficiency as ae
import numpy as np
from ase.build import bulk
from bench_record import record

from al_loop.exploration import MDSettings, run_trajectory
from al_loop.stages.train import member_split
from calculators.models.committee import CommitteeCalculator
from calculators.models.mace_train import TrainSettings, labelled_atoms, train_mace
from calculators.models.standin import build_standin_foundation

BASE = TrainSettings(max_epochs=10, batch_size=5, learning_rate=0.01, ema_decay=None)
VARIANTS = {
    "plain": BASE,
    "ema": replace(BASE, ema_decay=TrainSettings().ema_decay),
    "exp-decay": replace(
        BASE, extra_args={"scheduler": "ExponentialLR", "lr_scheduler_gamma": 0.7}
    ),
    "lr-0.003": replace(BASE, learning_rate=0.003),
    "ema-energy-10": replace(BASE, ema_decay=TrainSettings().ema_decay, energy_weight=10.0),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--labels", type=int, default=40, help="training labels (40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--foundation", type=Path, help="an existing stand-in (default: build)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, with ema ({','.join(VARIANTS)})",
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
        foundation = opts.foundation
        if foundation is None:
            foundation = build_standin_foundation(
                ae.ELEMENTS, tmp / "standin.model", seed=opts.seed
            )
        pool, test = ae.make_pool(args, evaluator.pool)
        print(f"pool {len(pool)} frames, test {len(test)} frames", flush=True)
        rng = np.random.default_rng(opts.seed)
        labelled = [pool[i] for i in rng.permutation(len(pool))[: opts.labels]]
        committees = {}
        chosen = opts.variants.split(",")
        unknown = sorted(set(chosen) - set(VARIANTS))
        if unknown or "ema" not in chosen:
            raise SystemExit(f"--variants: {unknown or 'ema missing'}; known: {list(VARIANTS)}")
        for name, settings in ((n, VARIANTS[n]) for n in chosen):
            t = time.perf_counter()
            paths = ae.train_committee(
                labelled, tmp / name, args, settings, foundation, evaluator.pool
            )
            wall = time.perf_counter() - t
            e = evaluator.errors(paths, test)
            s = evaluator.spreads(paths, test)
            committees[name] = paths
            out["variants"][name] = row = {
                "train_wall_s": round(wall, 1),
                "force_rmse_eV_A": round(e["force_rmse_eV_A"], 4),
                "energy_rmse_meV_atom": round(e["energy_rmse_meV_atom"], 1),
                "median_spread_eV_A": round(float(np.nanmedian(s)), 4),
                "below_0.05": round(float((s < 0.05).mean()), 3),
                "below_0.10": round(float((s < 0.10).mean()), 3),
                "spearman": round(float(e["spread_error_rank_correlation"]), 2),
            }
            print(f"{name:14s} {row}", flush=True)
        base = out["variants"].get("plain", out["variants"]["ema"])
        for row in out["variants"].values():
            row["rmse_vs_plain"] = round(row["force_rmse_eV_A"] / base["force_rmse_eV_A"], 2)
            row["spread_vs_plain"] = round(
                row["median_spread_eV_A"] / base["median_spread_eV_A"], 2
            )
        seq = sequential(labelled, tmp / "sequential", opts.seed, VARIANTS["ema"], foundation)
        par = out["variants"]["ema"]["train_wall_s"]
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
        mean_s, n_mean = md_wall(committees["ema"], "mean")
        first_s, n_first = md_wall(committees["ema"], "first")
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
    (opts.out / "training_bench.json").write_text(json.dumps(out, indent=1))
    print(f"wrote {opts.out / 'training_bench.json'}")
    record("training_bench", {k: v for k, v in out.items() if k not in ("date", "machine")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
