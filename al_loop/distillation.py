"""Distillation: the teacher committee's MD sample, its filter, the student's fit and its report.

The sample is MD with the teacher at every (ensemble, T, P) of the campaign (``heat`` runs
melt the cell), from labelled structures repeated to ``student.sample_min_atoms``; every frame
carries the committee's mean energy, forces and stress (the teacher's label) and its spread.
The phase stage's candidate crystals join it (``student.sample_crystal_volumes``): each at
volumes spanning the campaign's pressures on the teacher's own P(V), ideal and rattled,
labelled by the teacher, so that the student has seen the perfect crystals it will relax.
Frames where the spread passes ``student.max_teacher_spread_eV_A`` (or that stopped a
trajectory) are left out. The student is fitted to the rest and to every training label's
structure (weight ``student.label_weight``), with the teacher's results there or the label's
own (``student.label_source``); a held-out share of the sample and the held-out DFT labels
measure it (:func:`report`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read, write

from al_loop.config import CampaignConfig, StudentConfig
from al_loop.evaluation import errors, predict, summary
from calculators.models.student.training import StudentSettings

#: Targets of the student against the teacher (issue #24: a student one can trust for phase
#: maps), and against the labels (x the teacher's error).
TARGETS = {
    "energy_mae_meV_atom": 3.0,
    "force_rmse_eV_A": 0.060,
    "pressure_mae_GPa": 0.3,
    "label_error_ratio": 1.5,
}


#: The stored sample's format: samples of another format are not reused (format 1 wrote an empty
#: ``stop_reason`` that extxyz could not read back; format 2 put the crystals at the seeds'
#: volume factors, not at the teacher's volumes of the campaign's pressures).
SAMPLE_FORMAT = 3


def sample_conditions(config: CampaignConfig) -> list[tuple[str, float, float]]:
    """Every (ensemble, T, P) of the sample, once per trajectory."""
    st, sysc = config.student, config.system
    grid = itertools.product(st.sample_ensembles, sysc.temperatures_K, sysc.pressures_GPa)
    return [c for c in grid for _ in range(st.sample_trajectories_per_condition)]


def grown(atoms: Atoms, min_atoms: int) -> Atoms:
    """``atoms`` repeated equally along the three axes until it has at least ``min_atoms``."""
    n = max(1, math.ceil((min_atoms / len(atoms)) ** (1 / 3) - 1e-9))
    big = atoms.repeat(n) if n > 1 else atoms.copy()
    big.calc = None
    return big


#: Volume factors (of a crystal's reference cell) at which the teacher's P(V) is read to size
#: its frames: from 125 % down to 30 %.
SCAN_FACTORS = tuple(float(f) for f in np.geomspace(1.25, 0.3, 24))


def crystal_window_GPa(config: CampaignConfig) -> tuple[float, float]:
    """The pressures (GPa) the crystal frames span: the campaign's and the phase stage's grid,
    widened either side by a fifth of their span and 2 GPa (a relaxation passes beyond them)."""
    phase = config.phase.pressures_GPa or [0.0, max(config.system.pressures_GPa)]
    pressures = [*config.system.pressures_GPa, *phase]
    lo, hi = min(pressures), max(pressures)
    margin = 0.2 * (hi - lo) + 2.0
    return lo - margin, hi + margin


def crystal_factors(
    teacher: Any, atoms: Atoms, window_GPa: tuple[float, float], n: int
) -> list[float]:
    """``n`` volume factors of ``atoms``' cell, evenly spaced in volume, between those where
    the teacher's pressure is ``window_GPa``, read on :data:`SCAN_FACTORS` along
    :func:`stable_branch`. A window beyond the branch ends at the branch's end. The range
    reaches the candidate's own cell (factor 1) in any case: the phase stage's relaxations
    start there."""
    from ase import units

    cells = [_scaled(atoms, f) for f in SCAN_FACTORS]
    pressures = [-float(np.mean(got["stress"][:3])) / units.GPa for got in predict(teacher, cells)]
    start, end = stable_branch(pressures, int(np.argmin(np.abs(np.log(SCAN_FACTORS)))))
    p, f = np.array(pressures[start:end]), np.array(SCAN_FACTORS[start:end])
    big, small = (float(np.interp(x, p, f)) for x in window_GPa)
    big = max(big, 1.0)
    if n == 1:
        return [small]
    return [float(x) for x in np.linspace(big, small, n)]


def stable_branch(pressures: Sequence[float], near: int) -> tuple[int, int]:
    """The slice [start, end) of a scan from large to small volumes where P rises as V falls,
    the one at or next below scan point ``near`` (the candidate's own cell): from the limit of
    tension (larger cells come apart: P falls again) to where P stops rising (the model's P(V)
    turns over). A cell beyond the limit of tension first goes down to it; a model that is
    wild far from ``near`` (millions of GPa at a third of the volume) is never reached."""
    start, n = near, len(pressures)
    falls_before = start == 0 or pressures[start - 1] >= pressures[start]
    if falls_before and start + 1 < n and pressures[start + 1] <= pressures[start]:
        while start + 1 < n and pressures[start + 1] <= pressures[start]:
            start += 1  # beyond the limit of tension: down to it
    else:
        while start > 0 and pressures[start - 1] < pressures[start]:
            start -= 1  # on the branch: up in volume to the limit of tension
    end = start + 1
    while end < n and pressures[end] > pressures[end - 1]:
        end += 1
    return start, end


def _scaled(atoms: Atoms, factor: float) -> Atoms:
    cell = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    cell.set_cell(atoms.cell * factor ** (1 / 3), scale_atoms=True)
    return cell


def crystal_cells(
    candidates: Sequence[tuple[str, Atoms, Sequence[float]]], rattle_A: float, seed: int
) -> list[Atoms]:
    """Each named candidate at each of its volume factors: the ideal cell, and a distorted copy
    (grown to at least 8 atoms, strained by up to 2 % and rattled by ``rattle_A`` Å: forces and
    shear stress, which a one-atom cell cannot have); ``info["trajectory"]`` names it."""
    rng = np.random.default_rng(seed)
    out = []
    for name, atoms, factors in candidates:
        for factor in factors:
            ideal = _scaled(atoms, factor)
            rattled = grown(ideal, 8)
            strain = rng.uniform(-0.02, 0.02, (3, 3))
            rattled.set_cell(rattled.cell[:] @ (np.eye(3) + (strain + strain.T) / 2), True)
            rattled.rattle(rattle_A, seed=int(rng.integers(2**31)))
            for cell in (ideal, rattled):
                cell.info["trajectory"] = f"crystal {name} x{factor:.3f}"
            out += [ideal, rattled]
    return out


def teacher_frames(teacher: Any, cells: Sequence[Atoms]) -> list[Atoms]:
    """``cells`` with the teacher's energy, forces and stress, and its spreads, as frames of
    the sample (T_K 0: static cells)."""
    from ase import units
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for cell, got in zip(cells, predict(teacher, cells), strict=True):
        frame = Atoms(cell.numbers, cell.positions, cell=cell.cell, pbc=True)
        frame.calc = SinglePointCalculator(
            frame, energy=got["energy"], forces=got["forces"], stress=got["stress"]
        )
        frame.info.update(
            trajectory=cell.info.get("trajectory", "crystal"),
            stop_reason="",
            T_K=0.0,
            P_GPa=float(-np.mean(got["stress"][:3]) / units.GPa),
            volume_A3_per_atom=cell.get_volume() / len(cell),
            force_spread=got["force_spread"],
            energy_spread=got["energy_spread"],
        )
        frames.append(frame)
    return frames


def sample_key(
    teacher_sha256: Sequence[str], config: CampaignConfig, crystals: Sequence[str] = ()
) -> str:
    """What identifies a sample: the teacher's files, the sample settings, the seed, the
    conditions and the crystals' identities (a sample is reused only when all are the same)."""
    st = config.student
    settings = {k: v for k, v in st.model_dump().items() if k.startswith("sample")}
    parts = [SAMPLE_FORMAT, list(teacher_sha256), settings, config.seed, sample_conditions(config)]
    if crystals:
        parts.append([list(crystals), crystal_window_GPa(config), config.seeds.rattle_A])
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


#: How an empty ``stop_reason`` is written: extxyz cannot hold an empty value (the next key
#: would be read as its value).
NOT_STOPPED = "none"


def frames_bytes(frames: Sequence[Atoms]) -> bytes:
    """Frames with their teacher results and info, as extxyz."""
    out = io.StringIO()
    copies = []
    for frame in frames:
        copy = frame.copy()
        copy.calc = frame.calc
        copy.info["stop_reason"] = frame.info.get("stop_reason") or NOT_STOPPED
        copies.append(copy)
    write(out, copies, format="extxyz")
    return out.getvalue().encode()


def frames_read(data: bytes) -> list[Atoms]:
    """The frames of :func:`frames_bytes`, as they were."""
    frames = read(io.StringIO(data.decode()), index=":", format="extxyz")
    for frame in frames:
        if frame.info.get("stop_reason") == NOT_STOPPED:
            frame.info["stop_reason"] = ""
    return frames


def usable(frame: Atoms, max_spread: float) -> str:
    """Why a frame is left out of the sample ("" when it is kept)."""
    if frame.info.get("stop_reason"):
        return "stopped trajectory"
    if frame.calc is None or "forces" not in frame.calc.results:
        return "no teacher label"
    spread = float(frame.info.get("force_spread", np.nan))
    if not np.isfinite(spread):
        return "no teacher spread"
    return "teacher unsure" if spread > max_spread else ""


def split(frames: Sequence[Atoms], fraction: float, seed: int) -> tuple[list[Atoms], list[Atoms]]:
    """(fit, test): a seeded ``fraction`` of the frames is held out, at least one."""
    order = np.random.default_rng(seed).permutation(len(frames))
    n_test = max(1, round(fraction * len(frames))) if len(frames) > 1 else 0
    test = [frames[k] for k in sorted(order[:n_test])]
    fit = [frames[k] for k in sorted(order[n_test:])]
    return fit, test


def weighted(frames: Sequence[Atoms], st: StudentConfig) -> list[Atoms]:
    """The fit's frames with their weights: the crystal frames (the phase candidates, which
    the student relaxes later) weigh ``st.crystal_weight``; copies, results kept."""
    out = []
    for frame in frames:
        copy = frame.copy()
        copy.calc = frame.calc
        if phase_of(frame) != "md":
            copy.info["weight"] = st.crystal_weight
        out.append(copy)
    return out


def student_settings(st: StudentConfig, seed: int, threads: int | None = None) -> StudentSettings:
    """The fit's settings: every key the ``student:`` section shares with them (as the explore
    stage builds its MD settings), and the campaign's seed."""
    shared = {f.name for f in dataclasses.fields(StudentSettings)} & set(type(st).model_fields)
    values = {name: getattr(st, name) for name in shared}
    return StudentSettings(**{**values, "hidden": tuple(st.hidden)}, seed=seed, threads=threads)


def _verdicts(figures: dict[str, Any], targets: dict[str, float]) -> dict[str, bool | None]:
    return {
        k: None if figures.get(k) is None else bool(figures[k] <= t) for k, t in targets.items()
    }


#: Edges (eV/Å) of the bins of the teacher's own force spread that the report splits the
#: student's test errors by.
SPREAD_EDGES_EV_A = (0.1, 0.2)


def spread_bin(spread: float, edges: Sequence[float] = SPREAD_EDGES_EV_A) -> str:
    """The name of the spread bin of ``spread``: ``<0.1``, ``0.1-0.2``, ``>=0.2``."""
    if spread < edges[0]:
        return f"<{edges[0]:g}"
    for lo, hi in itertools.pairwise(edges):
        if spread < hi:
            return f"{lo:g}-{hi:g}"
    return f">={edges[-1]:g}"


def by_teacher_spread(student: Any, frames: Sequence[Atoms]) -> dict[str, Any]:
    """The student's errors against the teacher on ``frames``, split by the teacher's own force
    spread on each (``info["force_spread"]``); and the frame of largest force error."""
    groups: dict[str, list[Atoms]] = {}
    for atoms in frames:
        spread = atoms.info.get("force_spread")
        groups.setdefault("unknown" if spread is None else spread_bin(spread), []).append(atoms)
    order = [spread_bin(x) for x in (0.0, *SPREAD_EDGES_EV_A)] + ["unknown"]
    out: dict[str, Any] = {}
    for name, group in sorted(groups.items(), key=lambda item: order.index(item[0])):
        figures = summary(errors(student, group))
        out[name] = {k: v for k, v in figures.items() if not isinstance(v, list | dict)}
    rmse = [
        float(np.sqrt(np.mean((got["forces"] - atoms.get_forces()) ** 2)))
        for got, atoms in zip(predict(student, frames), frames, strict=True)
    ]
    worst = frames[int(np.argmax(rmse))]
    out["worst_frame"] = {
        "force_rmse_eV_A": max(rmse),
        **{k: _plain(worst.info.get(k)) for k in ("force_spread", "P_GPa", "T_K", "trajectory")},
    }
    return out


def phase_of(frame: Atoms) -> str:
    """The structure type a sample frame shows: a crystal frame's prototype (or file) name,
    ``md`` for the teacher's MD."""
    trajectory = str(frame.info.get("trajectory", ""))
    if not trajectory.startswith("crystal "):
        return "md"
    name = trajectory.removeprefix("crystal ").rsplit(" x", 1)[0]
    return name.split(":", 1)[-1]


def by_phase(student: Any, frames: Sequence[Atoms]) -> dict[str, Any]:
    """The student's errors against the teacher on ``frames``, per :func:`phase_of`."""
    groups: dict[str, list[Atoms]] = {}
    for atoms in frames:
        groups.setdefault(phase_of(atoms), []).append(atoms)
    out = {}
    for name in sorted(groups, key=lambda n: (n != "md", n)):
        figures = summary(errors(student, groups[name]))
        out[name] = {k: v for k, v in figures.items() if not isinstance(v, list | dict)}
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def report(
    student: Any, teacher: Any, test_frames: Sequence[Atoms], labels: Sequence[Atoms]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The student against the teacher (on ``test_frames``) and, beside the teacher's own, against
    the held-out DFT ``labels``: overall, per pressure bin, per teacher spread and per structure
    type (:func:`by_phase`), with verdicts on :data:`TARGETS`.
    Returns (the JSON-able report, the full errors with their per-value arrays for plots)."""
    full = {"student_vs_teacher": errors(student, test_frames)}
    if labels:
        full["student_vs_labels"] = errors(student, labels)
        full["teacher_vs_labels"] = errors(teacher, labels)
    result: dict[str, Any] = {name: summary(value) for name, value in full.items()}
    vs_teacher = result["student_vs_teacher"]
    result["student_vs_teacher_by_spread"] = by_teacher_spread(student, test_frames)
    result["student_vs_teacher_by_phase"] = by_phase(student, test_frames)
    result["targets"] = TARGETS
    result["verdicts"] = _verdicts(vs_teacher, TARGETS)
    if labels:
        ratios = {}
        for key in ("energy_mae_meV_atom", "force_rmse_eV_A", "pressure_mae_GPa"):
            s, t = result["student_vs_labels"].get(key), result["teacher_vs_labels"].get(key)
            ratios[key] = None if s is None or not t else s / t
        result["label_error_ratios"] = ratios
        result["verdicts"]["label_error_ratio"] = (
            None
            if any(r is None for r in ratios.values())
            else all(r <= TARGETS["label_error_ratio"] for r in ratios.values())
        )
    return result, full
