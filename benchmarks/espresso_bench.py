"""Seconds per pw.x SCF by cell size, and al-loop's overhead per label outside pw.x.

Usage::

    python benchmarks/espresso_bench.py --pseudo-dir DIR [--sizes 1,2,4,8] [--repeats 2]
        [--preset fast|production] [--parallel-cmd "mpirun -np 2"] [--pw-args "-nk 2"]

DIR: a folder from ``al-loop setup pseudos DIR`` (``--family semicore`` for ``production``).
Cells: fcc Ni (1 atom primitive; 4, 8 atoms cubic supercells; 2 atoms: CsCl FeNi), rattled
0.02 Å, the ``fast`` preset by default (30/240 Ry, k-spacing 0.5 1/Å, serial pw.x);
``--cells fe-250GPa``: bcc Fe at a = 2.45 Å (~235 GPa), N primitive cells, not rattled.
For each cell, ``--repeats`` labels through
``EspressoOracle.label`` (quacc's ``static_job``, as in a Firetask): the label's wall time, and
pw.x's own wall time (the ``PWSCF ... WALL`` line of ``pw.out``). Overhead = label - pw.x:
writing the input, starting pw.x, reading the output, quacc's bookkeeping (the baseline is
pw.x itself, measured in the same run).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ase import Atoms
from ase.build import bulk
from bench_record import record

from calculators.oracles.registry import make_oracle


def cell(n_atoms: int, kind: str = "ni") -> Atoms:
    if kind == "fe-250GPa":  # bcc Fe at 7.35 Å^3/atom (~235 GPa), not rattled: symmetric
        return bulk("Fe", "bcc", a=2.45).repeat((1, 1, n_atoms))
    if n_atoms == 1:
        atoms = bulk("Ni", "fcc", a=3.52)
    elif n_atoms == 2:
        atoms = Atoms("FeNi", scaled_positions=[(0, 0, 0), (0.5,) * 3], cell=[2.86] * 3, pbc=True)
    else:
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((1, 1, n_atoms // 4))
    atoms.rattle(0.02, seed=n_atoms)
    return atoms


def pw_wall_s(out: Path) -> float:
    """pw.x's own wall time from ``PWSCF : 1.23s CPU 1.45s WALL`` (or ``1m 2.3s WALL``)."""
    line = re.findall(r"PWSCF\s*:.*CPU\s+(.*)WALL", out.read_text())[-1]
    minutes = re.search(r"(\d+)m", line)
    seconds = re.search(r"([\d.]+)s", line)
    return (int(minutes.group(1)) * 60 if minutes else 0) + float(seconds.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pseudo-dir", type=Path, required=True)
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--parallel-cmd", default="", help="'' runs pw.x serially")
    parser.add_argument("--pw-args", default="")
    parser.add_argument(
        "--cells", default="ni", choices=["ni", "fe-250GPa"], help="fe-250GPa: bcc Fe x N"
    )
    opts = parser.parse_args(argv)
    overrides = {
        "pseudo_dir": str(opts.pseudo_dir.resolve()),
        "parallel_cmd": opts.parallel_cmd,
        "pw_args": opts.pw_args,
    }
    oracle = make_oracle("espresso", opts.preset, overrides)
    print(f"preset {opts.preset}, parallel {opts.parallel_cmd or 'none'} {opts.pw_args}")
    oracle.prepare()  # imports, not counted (as in a worker that labels many structures)
    print("atoms | k-points | label (s) | pw.x (s) | overhead (s) | overhead %")
    rows = []
    with tempfile.TemporaryDirectory(prefix="espresso-bench-") as tmp:
        for n in (int(s) for s in opts.sizes.split(",")):
            atoms = cell(n, opts.cells)
            labels, pws = [], []
            for r in range(opts.repeats):
                start = time.perf_counter()
                result = oracle.label(atoms, Path(tmp) / f"{n}-{r}")
                labels.append(time.perf_counter() - start)
                if result.status != "ok":
                    raise SystemExit(f"{n} atoms: {result.status}: {result.error}")
                pws.append(pw_wall_s(Path(result.extra["pw_out"]) / "pw.out"))
            label, pw = statistics.median(labels), statistics.median(pws)
            print(
                f"{n} | {result.kpoints} | {label:.2f} | {pw:.2f} | {label - pw:.2f} | "
                f"{100 * (label - pw) / label:.0f} %",
                flush=True,
            )
            rows.append(
                {
                    "atoms": n,
                    "kpoints": list(result.kpoints),
                    "label_s": round(label, 2),
                    "pw_x_s": round(pw, 2),
                    "overhead_s": round(label - pw, 2),
                    "overhead_percent": round(100 * (label - pw) / label, 1),
                }
            )
    record(
        "espresso_bench",
        {
            "preset": opts.preset,
            "cells": opts.cells,
            "parallel_cmd": opts.parallel_cmd,
            "pw_args": opts.pw_args,
            "pw_x": oracle.version(),
            "repeats": opts.repeats,
            "rows": rows,
        },
        [a for a in (argv or sys.argv[1:])],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
