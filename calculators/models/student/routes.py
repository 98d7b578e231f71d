"""The student's two routes into LAMMPS behind one interface: fit, files, calculators, inputs.

- ``pair`` (the default): the project's descriptor and pair style ``alloop/student`` (a plugin
  built by the set-up); one model file.
- ``mliap``: an ML-IAP ``nn`` model on LAMMPS's SNAP descriptor, which any LAMMPS with the
  ML-IAP package runs; a model file and a descriptor file.

docs/benchmarks.md compares them on the same data (``benchmarks/student_routes.py``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from calculators.models.interface import ModelCalculator
from calculators.models.student import snap_nn
from calculators.models.student.calculator import StudentCalculator
from calculators.models.student.lammps_run import (
    LammpsCalculator,
    LammpsUnavailable,
    pair_commands,
)
from calculators.models.student.model_file import write_student
from calculators.models.student.training import FitHistory, StudentSettings, fit_student

ROUTES = ("pair", "mliap")


def files_of(route: str, stem: Path) -> list[Path]:
    """The files a student of ``route`` is written to, from ``stem``."""
    if route == "pair":
        return [stem.with_name(stem.name + ".student")]
    if route == "mliap":
        return [stem.with_name(stem.name + ext) for ext in (".mliap.model", ".mliap.descriptor")]
    raise ValueError(f"student route {route!r} is not one of {ROUTES}")


def fit(
    frames: Sequence[Atoms],
    elements: Sequence[str],
    settings: StudentSettings,
    stem: Path,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[list[Path], FitHistory]:
    """Fit a student by ``settings.route`` and write its files (named from ``stem``)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if settings.route == "pair":
        model, history = fit_student(frames, elements, settings, on_epoch=on_epoch)
        return [write_student(model, files_of("pair", stem)[0])], history
    if settings.route == "mliap":
        spec = snap_nn.SnapSpec(cutoff=settings.cutoff, twojmax=settings.twojmax)
        net, history = snap_nn.fit_snap_student(frames, elements, settings, spec, on_epoch)
        return list(snap_nn.write_mliap(net, stem)), history
    raise ValueError(f"student route {settings.route!r} is not one of {ROUTES}")


def pair_lines(route: str, files: Sequence[Path], elements: Sequence[str]) -> list[str]:
    """The LAMMPS commands that make the student the pair style, for atom types 1..n holding
    ``elements``."""
    if route == "pair":
        return pair_commands(files[0], elements)
    return snap_nn.mliap_pair_commands(files[0], files[1], elements)


def in_lammps(route: str, files: Sequence[Path], elements: Sequence[str]) -> LammpsCalculator:
    """The student through LAMMPS's library interface, as an ASE calculator."""
    return LammpsCalculator(pair_lines(route, files, elements), elements)


def calculator(route: str, files: Sequence[Path], elements: Sequence[str]) -> ModelCalculator:
    """The student as an ASE calculator: PyTorch for the pair style's model (small cells need
    no LAMMPS), LAMMPS for the ML-IAP one (its descriptor is LAMMPS's)."""
    if route == "pair":
        return StudentCalculator(files[0])
    return in_lammps(route, files, elements)


def _in_torch(route: str, files: Sequence[Path], atoms: Atoms) -> dict[str, Any]:
    if route == "pair":
        return StudentCalculator(files[0]).predict(atoms)
    return snap_nn.predict(snap_nn.read_mliap(files[0], files[1]), atoms)


def lammps_agreement(
    route: str, files: Sequence[Path], elements: Sequence[str], atoms: Atoms
) -> dict[str, Any]:
    """Largest relative difference of energy, forces and stress between the student in PyTorch
    and in LAMMPS on ``atoms`` (None with the reason when LAMMPS or the plugin is missing)."""
    try:
        lammps = in_lammps(route, files, elements).predict(atoms.copy())
    except LammpsUnavailable as error:
        return {"max_relative_difference": None, "reason": str(error)}
    torch = _in_torch(route, files, atoms.copy())
    worst = 0.0
    for key in ("energy", "forces", "stress"):
        a, b = np.asarray(torch[key]), np.asarray(lammps[key])
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12)))
    return {"max_relative_difference": worst, "atoms": len(atoms)}


def write_lammps_inputs(
    route: str, files: Sequence[Path], elements: Sequence[str], folder: Path
) -> Path:
    """A ready include file ``student.lmp`` beside copies of the student's files, for the
    user's own runs (``include student.lmp``); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in files:
        target = folder / Path(path).name
        if Path(path).resolve() != target.resolve():
            shutil.copyfile(path, target)
        copies.append(target)
    needs = {
        "pair": "LAMMPS with the PLUGIN package and the plugin built by al-loop's set-up",
        "mliap": "LAMMPS with the ML-IAP and ML-SNAP packages",
    }[route]
    lines = [
        "# al-loop student: atom types 1..n are " + " ".join(elements),
        f"# route {route}: needs {needs}",
        *pair_lines(route, copies, elements),
    ]
    path = folder / "student.lmp"
    path.write_text("\n".join(lines) + "\n")
    return path
