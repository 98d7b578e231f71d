"""Cost of one committee calculator against one calculator per model, per evaluation.

Usage::

    python benchmarks/committee_bench.py [--models 4] [--sizes 4,32,256] [--threads 1]

:class:`calculators.models.committee.CommitteeCalculator` runs the N models inside one
``mace.calculators.MACECalculator(model_paths=[...])``: the neighbour graph (``_atoms_to_batch``)
is built once per evaluation and each model runs on a copy of it. The baseline is what a committee
costs without it: N single-model calculators
(``calculators.models.committee.mace_calculator([path])``) called one after the other on the
same cell, each building its own graph.

Models: a stand-in foundation (``calculators.models.standin``: 16 channels, max_L 0, r_max 4 Å,
EMT data) pre-trained for a few epochs, then N members fine-tuned from it for
``--finetune-epochs`` epochs with different seeds (what a committee is in the loop; the weights
matter little for timing, the architecture does). All in a temporary folder, removed at the end.

Cells: random fcc Cu-Ni-Al supercells (cubic 4-atom cell repeated: 4, 32, 256 atoms), rattled,
at the EMT lattice constant. For each cell size and precision (float32, float64), after
``--warmup`` calls of each, ``--repeats`` rounds alternate one committee evaluation and one round
of the N single calls, in turn first (energy, forces and stress, every call recomputes:
``all_changes``), so that both see the same machine load. Figures: median wall time per
evaluation of the whole committee in ms, the ratio single calls / committee (> 1: the one
calculator is faster), and the time of one neighbour-graph build (mace's ``_atoms_to_batch``),
the work the one calculator does once instead of N times.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import all_changes
from bench_record import record

from calculators.models.committee import CommitteeCalculator, mace_calculator
from calculators.models.mace_train import TrainSettings, train_mace
from calculators.models.standin import STANDIN_SETTINGS, build_standin_foundation, emt_structures

ELEMENTS = ("Cu", "Ni", "Al")
PROPERTIES = ["energy", "forces", "stress"]


def fcc_cell(n_atoms: int, seed: int) -> Atoms:
    """A random Cu-Ni-Al fcc supercell of ``n_atoms`` (4 k^3), rattled by 0.05 Å."""
    k = round((n_atoms / 4) ** (1 / 3))
    if 4 * k**3 != n_atoms:
        raise ValueError(f"fcc supercells have 4 k^3 atoms (4, 32, 108, 256, ...), not {n_atoms}")
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((k, k, k))
    atoms.set_chemical_symbols(list(rng.choice(ELEMENTS, size=len(atoms))))
    atoms.rattle(0.05, seed=int(rng.integers(2**31)))
    return atoms


def build_models(args: argparse.Namespace, tmp: Path) -> list[Path]:
    """A stand-in foundation and ``args.models`` members fine-tuned from it (seconds printed)."""
    t = time.perf_counter()
    settings = replace(STANDIN_SETTINGS, max_epochs=args.standin_epochs)
    foundation = build_standin_foundation(
        ELEMENTS, tmp / "standin.model", args.standin_structures, args.seed, settings, threads=1
    )
    print(f"stand-in foundation: {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    data = emt_structures(ELEMENTS, 24, seed=args.seed + 1)
    ft = TrainSettings(max_epochs=args.finetune_epochs, batch_size=5, dtype="float64")

    # one process per member: train_mace loads the model file it wrote (model_heads), and
    # torch.load of a MACE model is not thread-safe (torch.fx's global patcher)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [
            pool.submit(
                train_member,
                data[4:],
                data[:4],
                tmp / f"member-{m}",
                args.seed * 100 + m,
                ft,
                foundation,
            )
            for m in range(args.models)
        ]
        paths = [f.result() for f in futures]
    print(
        f"{args.models} members fine-tuned ({args.finetune_epochs} epochs, {args.jobs} at a "
        f"time): {time.perf_counter() - t:.1f} s",
        flush=True,
    )
    return paths


def train_member(
    train: list[Atoms],
    valid: list[Atoms],
    workdir: Path,
    seed: int,
    settings: TrainSettings,
    foundation: Path,
) -> Path:
    return train_mace(train, valid, workdir, seed, settings, foundation, threads=1).path


def measure(
    paths: list[Path], atoms: Atoms, dtype: str, warmup: int, repeats: int
) -> dict[str, Any]:
    """Median ms per committee evaluation, one calculator against one per model."""
    committee = CommitteeCalculator(paths, device="cpu", dtype=dtype)
    singles = [mace_calculator([p], device="cpu", dtype=dtype) for p in paths]

    def one() -> None:
        committee.calculate(atoms, PROPERTIES, all_changes)

    def separate() -> None:
        for calc in singles:
            calc.calculate(atoms, PROPERTIES, all_changes)

    for _ in range(warmup):
        one()
        separate()
    # same numbers either way (a check that both sides do the same work)
    one()
    separate_forces = []
    for calc in singles:
        calc.calculate(atoms, PROPERTIES, all_changes)
        separate_forces.append(calc.results["forces"])
    deviation = float(np.abs(committee.results["forces_comm"] - np.array(separate_forces)).max())
    t_one, t_sep, t_graph = [], [], []
    for k in range(repeats):
        for fn, times in [(one, t_one), (separate, t_sep)][:: 1 if k % 2 else -1]:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        committee.mace._atoms_to_batch(atoms)  # what the one calculator saves N - 1 times
        t_graph.append(time.perf_counter() - t)
    return {
        "committee_ms": 1e3 * statistics.median(t_one),
        "separate_ms": 1e3 * statistics.median(t_sep),
        "graph_ms": 1e3 * statistics.median(t_graph),
        "committee_p90_ms": 1e3 * float(np.percentile(t_one, 90)),
        "separate_p90_ms": 1e3 * float(np.percentile(t_sep, 90)),
        "max_force_difference": deviation,
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", type=int, default=4, help="committee size (4)")
    parser.add_argument("--sizes", default="4,32,256", help="atoms per cell, 4 k^3 (4,32,256)")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument(
        "--repeats",
        default="40,20,16",
        help="timed rounds per cell size, one value or one per size (40,20,16)",
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for the evaluations (1: steady figures on a shared 2-core machine)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="members trained at a time (2)")
    parser.add_argument("--standin-epochs", type=int, default=5)
    parser.add_argument("--standin-structures", type=int, default=60)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.models < 2:
        parser.error("a committee needs at least 2 models")
    sizes = [int(s) for s in args.sizes.split(",")]
    repeats = [int(r) for r in args.repeats.split(",")]
    if len(repeats) == 1:
        repeats *= len(sizes)
    if len(repeats) != len(sizes):
        parser.error("--repeats: one value, or one per size")
    dtypes = [d.strip() for d in args.dtypes.split(",")]

    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {args.threads} torch thread(s); committee of {args.models}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="al-committee-bench-"))
    try:
        paths = build_models(args, tmp)
        rows = []
        for n_atoms, n_repeat in zip(sizes, repeats, strict=True):
            atoms = fcc_cell(n_atoms, args.seed)
            for dtype in dtypes:
                r = measure(paths, atoms, dtype, args.warmup, n_repeat)
                r |= {"atoms": n_atoms, "dtype": dtype}
                rows.append(r)
                print(
                    f"  {n_atoms:>4} atoms {dtype}: committee {r['committee_ms']:8.1f} ms, "
                    f"{args.models} calculators {r['separate_ms']:8.1f} ms (p90 "
                    f"{r['committee_p90_ms']:.1f} and {r['separate_p90_ms']:.1f} ms; max |dF| "
                    f"{r['max_force_difference']:.1e} eV/Å)",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    header = (
        f"{'atoms':>5}  {'dtype':<7}  {'one calculator':>14}  {f'{args.models} calculators':>14}"
        f"  {'ratio':>5}  {'graph':>8}  verdict"
    )
    print(header)
    print("-" * (len(header) + 30))
    for r in rows:
        ratio = r["separate_ms"] / r["committee_ms"]
        print(
            f"{r['atoms']:>5}  {r['dtype']:<7}  {r['committee_ms']:11.1f} ms  "
            f"{r['separate_ms']:11.1f} ms  {ratio:5.2f}  {r['graph_ms']:5.1f} ms  {verdict(ratio)}"
        )
    ratios = [r["separate_ms"] / r["committee_ms"] for r in rows]
    print(
        f"\nratio = time of {args.models} single-model calculators / time of one committee "
        f"calculator (median of the timed rounds; > 1: the committee calculator is faster). "
        f"graph = building the neighbour graph and batch once (mace's _atoms_to_batch), the "
        f"work the one calculator does once instead of {args.models} times."
    )
    print(
        f"overall: one calculator is {verdict(statistics.median(ratios))} (median ratio "
        f"{statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    print(
        f"wall time of the benchmark: {time.perf_counter() - start:.0f} s; load average "
        f"{os.getloadavg()[0]:.1f} (other processes on the machine share its cores)"
    )
    record(
        "committee_bench",
        {
            "models": args.models,
            "torch_threads": args.threads,
            "rows": [
                {
                    "atoms": r["atoms"],
                    "dtype": r["dtype"],
                    "committee_ms": round(r["committee_ms"], 1),
                    "separate_ms": round(r["separate_ms"], 1),
                    "ratio": round(r["separate_ms"] / r["committee_ms"], 2),
                    "graph_ms": round(r["graph_ms"], 1),
                    "max_force_difference_eV_A": r["max_force_difference"],
                }
                for r in rows
            ],
            "median_ratio": round(statistics.median(ratios), 2),
            "wall_s": round(time.perf_counter() - start),
        },
    )
    return 0


def verdict(ratio: float) -> str:
    if ratio >= 1:
        return f"{ratio:.2f}x faster"
    return f"{1 / ratio:.2f}x slower"


if __name__ == "__main__":
    sys.exit(main())
