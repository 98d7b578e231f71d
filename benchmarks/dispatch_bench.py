"""What FireWorks and the database cost per labelled structure, against the oracle alone.

Usage::

    python benchmarks/dispatch_bench.py [--n 200] [--batch-sizes 1,10] [--workers 2] [--uri URI]

Without ``--uri`` an embedded secantusdb server is started in a temporary folder (on-disk
storage, as a campaign without a URI gets). With ``--uri`` the benchmark's databases
(``bench_*``) are dropped at the end.

Measured in one run, on the same N structures (small rattled Cu-Ni-Al cells, 2-4 atoms):

* baseline: ``calculators.oracles.make_oracle("emt").label`` in this process, one structure
  after the other (after one warm-up call that pays quacc's import, reported apart): ``t_oracle``
  s each.
* for each batch size B: the labelling workflows (``label_workflows`` + ``bulk_add_wfs``, N/B
  Fireworks) run by W concurrent ``rlaunch rapidfire`` workers; the Fireworks' own launch
  records (``time_start``, ``time_end``, ``launch_dir`` of each worker) give the timings below.

Definitions (printed with the results):

* wall: from the submission (``bulk_add_wfs``) to the last Firework COMPLETED.
* start-up of a worker: from its process start to the end of its first Firework. That covers the
  Python/FireWorks start, the LaunchPad connection and, inside the first Firework, the imports of
  quacc/ASE and the dataset connection. Reported, and excluded from the overhead.
* steady state of a worker: from the end of its first Firework to the end of its last one; it
  labelled ``n_w`` structures in ``span_w`` seconds.
* overhead per structure = (sum_w span_w - t_oracle * sum_w n_w) / sum_w n_w: the worker-seconds
  per labelled structure that are not the oracle's own work (FireWorks checkout and state
  updates, launch folders, the label claim and write, GridFS/arrays, the database server's CPU).
* ratio = (sum_w span_w / sum_w n_w) / t_oracle: the cost of a labelled structure through
  FireWorks in worker-seconds, in units of the oracle alone.

Target: overhead under 0.2 s per structure (PASS/FAIL per batch size).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.pop("QUACC_WORKFLOW_ENGINE", None)

import numpy as np
from ase import Atoms
from ase.build import bulk
from bench_record import record

from al_loop.config import LauncherConfig
from calculators.oracles import make_oracle
from database import EmbeddedServer, Store, redact
from launchers import (
    label_workflows,
    make_fworker,
    make_launchpad,
    start_workers,
    workflow_states,
    write_fworker_file,
    write_launchpad_file,
)
from launchers.rockets import wait_workers

TARGET_OVERHEAD_S = 0.2
CAMPAIGN = "bench"
ELEMENTS = ("Cu", "Ni", "Al")


def random_cells(n: int, seed: int = 0) -> list[Atoms]:
    """``n`` distinct small rattled fcc-based Cu-Ni-Al cells (2-4 atoms)."""
    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(n):
        natoms = int(rng.integers(2, 5))
        a = float(rng.uniform(3.40, 3.80))
        atoms = (
            bulk("Cu", "fcc", a=a, cubic=True)
            if natoms == 4
            else bulk("Cu", "fcc", a=a) * (natoms, 1, 1)
        )
        atoms.symbols[:] = list(rng.choice(ELEMENTS, size=natoms))
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        cells.append(atoms)
    return cells


def baseline(cells: list[Atoms], workdir: Path) -> dict[str, float]:
    """The oracle alone, in this process: seconds per structure (warm-up reported apart)."""
    oracle = make_oracle("emt")
    start = time.perf_counter()
    warm = oracle.label(bulk("Cu", "fcc", a=3.6), workdir / "warmup")
    warmup_s = time.perf_counter() - start
    assert warm.status == "ok", warm.error
    start = time.perf_counter()
    for index, atoms in enumerate(cells):
        result = oracle.label(atoms, workdir / f"s{index:05d}")
        assert result.status == "ok", result.error
    total = time.perf_counter() - start
    return {"warmup_s": warmup_s, "total_s": total, "per_structure_s": total / len(cells)}


def epoch(value: Any) -> float:
    """A FireWorks timestamp (ISO string or datetime, UTC) as seconds since the epoch."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def run_round(
    uri: str,
    cells: list[Atoms],
    batch_size: int,
    workers: int,
    root: Path,
    t_oracle: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Label ``cells`` through FireWorks with ``workers`` rlaunch processes; timings."""
    name = f"bench_{uuid.uuid4().hex[:8]}_b{batch_size}"
    store = Store.connect(uri, name, launchpad_database=f"{name}_fw")
    lp = make_launchpad(uri, store.launchpad_database)
    try:
        lp.reset("", require_password=False)
        ids = store.add_structures(cells, CAMPAIGN, 0)
        oracle = make_oracle("emt")
        round_dir = root / f"batch{batch_size}"
        launchpad_file = write_launchpad_file(
            round_dir / "my_launchpad.yaml", uri, store.launchpad_database
        )
        fworker_file = write_fworker_file(
            round_dir / "my_fworker.yaml", make_fworker("bench", None, {"al_loop_store_uri": uri})
        )
        store_spec = {"database": name, "launchpad_database": store.launchpad_database}

        t_submit = time.time()
        lp.bulk_add_wfs(
            label_workflows(ids, CAMPAIGN, 0, oracle, store_spec, batch_size=batch_size)
        )
        submit_s = time.time() - t_submit
        launch_dir = round_dir / "launches"
        t_start = time.time()
        processes = start_workers(launchpad_file, fworker_file, launch_dir, workers)
        try:
            codes = wait_workers(processes, timeout_s=timeout_s)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        t_exit = time.time()
        if codes != [0] * workers:
            raise RuntimeError(f"rlaunch exit codes {codes}; logs in {launch_dir}")

        n_fws = -(-len(cells) // batch_size)
        states = workflow_states(lp, CAMPAIGN, 0)
        if states != {"COMPLETED": n_fws}:
            raise RuntimeError(f"not all Fireworks COMPLETED: {states}")
        labels = list(store.db.labels.find({}, {"status": 1, "wall_time_s": 1}))
        statuses = {d["status"] for d in labels}
        if len(labels) != len(cells) or statuses != {"ok"}:
            raise RuntimeError(f"{len(labels)} labels with statuses {statuses}")

        per_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for launch in lp.launches.find(
            {},
            {"launch_dir": 1, "time_start": 1, "time_end": 1, "fw_id": 1, "action.stored_data": 1},
        ):
            worker = Path(launch["launch_dir"]).relative_to(launch_dir).parts[0]
            per_worker[worker].append(
                {
                    "start": epoch(launch["time_start"]),
                    "end": epoch(launch["time_end"]),
                    "n": launch["action"]["stored_data"]["labelled"],
                }
            )
        n_launches = sum(len(v) for v in per_worker.values())
        if n_launches != n_fws:
            raise RuntimeError(f"{n_launches} launches for {n_fws} Fireworks")

        t_done = max(la["end"] for runs in per_worker.values() for la in runs)
        startup, first_launch, first_rest, spans, steady_n = [], [], [], [], []
        for runs in per_worker.values():
            runs.sort(key=lambda la: la["start"])
            first = runs[0]
            startup.append(first["end"] - t_start)
            first_launch.append(first["start"] - t_start)
            first_rest.append(first["end"] - first["start"])
            spans.append(runs[-1]["end"] - first["end"])
            steady_n.append(sum(la["n"] for la in runs[1:]))
        n_steady = sum(steady_n)
        worker_seconds = sum(spans)
        overhead = ((worker_seconds - t_oracle * n_steady) / n_steady) if n_steady else None
        cost = worker_seconds / n_steady if n_steady else None
        return {
            "batch_size": batch_size,
            "fireworks": n_fws,
            "submit_s": submit_s,
            "wall_s": t_done - t_submit,
            "exit_s": t_exit - t_submit,
            "launches_per_worker": {w: len(r) for w, r in sorted(per_worker.items())},
            "startup_s": startup,
            "to_first_launch_s": first_launch,
            "first_fw_s": first_rest,
            "steady_structures": n_steady,
            "steady_worker_s": worker_seconds,
            "cost_per_structure_s": cost,
            "overhead_per_structure_s": overhead,
            "oracle_in_workers_s": sum(d.get("wall_time_s") or 0.0 for d in labels) / len(labels),
        }
    finally:
        lp.connection.drop_database(store.launchpad_database)
        store.client.drop_database(name)
        lp.connection.close()
        store.close()


def fmt_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def report(
    n: int, workers: int, base: dict[str, float], rounds: list[dict[str, Any]], server: str
) -> bool:
    t_oracle = base["per_structure_s"]
    print("=" * 78)
    print(
        f"al-loop dispatch benchmark: N={n} EMT structures (Cu-Ni-Al, 2-4 atoms), "
        f"W={workers} rlaunch workers"
    )
    print(
        f"server: {server}; host: {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print("-" * 78)
    print("baseline (oracle alone, in-process, make_oracle('emt').label):")
    print(f"  warm-up call (quacc import, excluded): {base['warmup_s']:.2f} s")
    print(f"  {n} structures: {base['total_s']:.2f} s = {t_oracle * 1e3:.1f} ms per structure")
    print("-" * 78)
    print("definitions:")
    print("  wall      = bulk_add_wfs() call -> last Firework COMPLETED")
    print("  start-up  = worker process start -> end of its first Firework (Python, FireWorks,")
    print("              quacc/ASE imports, connections); excluded from the overhead")
    print("  steady    = per worker, end of its first Firework -> end of its last; the")
    print("              structures of the later Fireworks")
    print("  overhead  = (sum of steady worker-seconds - t_oracle x steady structures)")
    print("              / steady structures    [s per labelled structure, t_oracle = baseline]")
    print("  ratio     = steady worker-seconds per structure / t_oracle")
    print(f"  target    : overhead < {TARGET_OVERHEAD_S} s per structure")
    all_pass = True
    verdicts: dict[int, str] = {}
    figures: dict[str, Any] = {
        "structures": n,
        "workers": workers,
        "target_overhead_s": TARGET_OVERHEAD_S,
        "baseline_oracle_s_per_structure": round(t_oracle, 5),
        "baseline_warmup_s": round(base["warmup_s"], 2),
        "batch_sizes": [],
    }
    for r in rounds:
        print("-" * 78)
        print(
            f"batch size {r['batch_size']}: {r['fireworks']} Fireworks, launches per worker "
            f"{r['launches_per_worker']}"
        )
        print(
            f"  submit: {r['submit_s']:.2f} s; wall submit->all COMPLETED: {r['wall_s']:.2f} s "
            f"= {r['wall_s'] / n:.3f} s per structure "
            f"({r['wall_s'] / n / t_oracle:.1f}x the baseline's {t_oracle:.4f} s); "
            f"workers exited at {r['exit_s']:.2f} s"
        )
        print(
            f"  worker start-up (to end of first Firework): {fmt_list(r['startup_s'])} s; "
            f"of which to first launch {fmt_list(r['to_first_launch_s'])} s, "
            f"first Firework {fmt_list(r['first_fw_s'])} s"
        )
        print(
            f"  oracle time measured inside the workers: "
            f"{r['oracle_in_workers_s'] * 1e3:.1f} ms per structure (all launches)"
        )
        overhead = r["overhead_per_structure_s"]
        if overhead is None:
            print("  steady state: no Firework after the first one; no overhead measured: FAIL")
            all_pass = False
            continue
        verdict = "PASS" if overhead < TARGET_OVERHEAD_S else "FAIL"
        all_pass &= verdict == "PASS"
        verdicts[r["batch_size"]] = verdict
        figures["batch_sizes"].append(
            {
                "structures_per_firework": r["batch_size"],
                "fireworks": r["fireworks"],
                "wall_s": round(r["wall_s"], 2),
                "wall_s_per_structure": round(r["wall_s"] / n, 4),
                "worker_startup_s": [round(s, 2) for s in r["startup_s"]],
                "overhead_s_per_structure": round(overhead, 4),
                "overhead_s_per_firework": round(overhead * r["batch_size"], 4),
                "cost_ratio_to_baseline": round(r["cost_per_structure_s"] / t_oracle, 2),
                "verdict": verdict,
            }
        )
        print(
            f"  steady: {r['steady_structures']} structures in {r['steady_worker_s']:.2f} "
            f"worker-s = {r['cost_per_structure_s']:.3f} worker-s per structure "
            f"(ratio {r['cost_per_structure_s'] / t_oracle:.1f}x the baseline)"
        )
        print(
            f"  overhead per labelled structure: {overhead:.3f} s "
            f"(per Firework: {overhead * r['batch_size']:.3f} s)  "
            f"target < {TARGET_OVERHEAD_S} s: {verdict}"
        )
    print("=" * 78)
    default = LauncherConfig().batch_size
    print(
        f"verdict per batch size: {verdicts}; al-loop's default batch size ({default}): "
        f"{verdicts.get(default, 'not measured')}"
    )
    figures["default_batch_size"] = default
    figures["default_verdict"] = verdicts.get(default, "not measured")
    record("dispatch_bench", figures)
    return all_pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="number of structures (200)")
    parser.add_argument(
        "--batch-sizes", default="1,10", help="comma-separated structures per Firework (1,10)"
    )
    parser.add_argument("--workers", type=int, default=2, help="rlaunch workers (2)")
    parser.add_argument("--uri", help="MongoDB URI; default: an embedded server in a temp dir")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds to wait for the workers of one batch size (1800)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    if args.n < 1 or args.workers < 1 or not batch_sizes or min(batch_sizes) < 1:
        parser.error("--n, --workers and every batch size must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    for handler in logging.getLogger().handlers:  # FireWorks sets its loggers to DEBUG
        handler.setLevel(logging.WARNING)
    for noisy in ("quacc", "calculators"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    root = Path(tempfile.mkdtemp(prefix="al-loop-bench-"))
    server = None
    try:
        if args.uri:
            uri, where = args.uri, f"{redact(args.uri)} (given)"
        else:
            server = EmbeddedServer(root / "db")
            uri = server.start()
            where = f"embedded secantusdb at {uri}, on-disk storage in {root / 'db'}"
        cells = random_cells(args.n, seed=1234)
        base = baseline(cells, root / "baseline")
        rounds = [
            run_round(uri, cells, b, args.workers, root, base["per_structure_s"], args.timeout)
            for b in batch_sizes
        ]
        ok = report(args.n, args.workers, base, rounds, where)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
