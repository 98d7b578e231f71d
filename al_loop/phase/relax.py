"""Relaxation under pressure and enthalpy: H = E + PV per atom.

Each candidate is relaxed (cell and positions, ASE's FrechetCellFilter with a scalar
pressure, BFGS) at every pressure of a grid, in increasing order, each from the structure
last relaxed to convergence (a continuation: a compressed cell is reached gradually). By
default the prototype's space group is kept (ASE's FixSymmetry), so that an enthalpy belongs
to the named phase; whether the relaxed cell still has it is checked and recorded either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ase import Atoms, units
from ase.calculators.calculator import CalculationFailed
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

#: spglib's tolerance (Å) for the space group of a relaxed cell.
SYMPREC = 1e-3


@dataclass(frozen=True)
class RelaxSettings:
    """When a relaxation is done: forces below ``fmax_eV_A`` (and the filter's stress
    equivalent), within ``max_steps``; whether the space group is held. A relaxation stops as
    collapsed when two atoms come closer than ``min_distance_fraction`` of the sum of their
    covalent radii (a model far outside its data can pull a cell together without bound)."""

    fmax_eV_A: float = 2e-3
    max_steps: int = 400
    keep_symmetry: bool = True
    min_distance_fraction: float = 0.5


class Collapsed(RuntimeError):
    """Two atoms came closer than the relaxation allows."""


def closest_approach(atoms: Atoms) -> float:
    """The smallest distance between two atoms (periodic images included) over the sum of
    their covalent radii."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    radii = covalent_radii[atoms.numbers]
    i, j, d = neighbor_list("ijd", atoms, float(2 * radii.max()), self_interaction=False)
    if len(d) == 0:
        return float("inf")
    return float((d / (radii[i] + radii[j])).min())


@dataclass
class Relaxed:
    """One candidate relaxed at one pressure."""

    name: str
    pressure_GPa: float
    n_atoms: int
    energy_eV: float
    volume_A3: float
    converged: bool
    steps: int
    spacegroup_start: int
    spacegroup_end: int
    atoms: Atoms
    failure: str = ""

    @property
    def enthalpy_eV_atom(self) -> float:
        return (self.energy_eV + self.pressure_GPa * units.GPa * self.volume_A3) / self.n_atoms

    @property
    def volume_A3_atom(self) -> float:
        return self.volume_A3 / self.n_atoms

    def row(self) -> dict[str, Any]:
        """The JSON-able record (without the structure)."""
        return {
            "name": self.name,
            "formula": self.name.split(":", 1)[0],
            "pressure_GPa": self.pressure_GPa,
            "n_atoms": self.n_atoms,
            "energy_eV": self.energy_eV,
            "volume_A3_atom": self.volume_A3_atom,
            "enthalpy_eV_atom": self.enthalpy_eV_atom,
            "converged": self.converged,
            "steps": self.steps,
            "spacegroup_start": self.spacegroup_start,
            "spacegroup_end": self.spacegroup_end,
            "failure": self.failure,
        }


def spacegroup(atoms: Atoms) -> int:
    """The space group number of ``atoms`` (spglib, :data:`SYMPREC`)."""
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    found = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
    return int(found.number) if found is not None else 1


def relax(
    atoms: Atoms,
    calculator: Any,
    pressure_GPa: float,
    name: str = "",
    settings: RelaxSettings = RelaxSettings(),
) -> Relaxed:
    """``atoms`` (not changed) relaxed at ``pressure_GPa`` with ``calculator``."""
    work = atoms.copy()
    work.calc = calculator
    start = spacegroup(work)
    if settings.keep_symmetry:
        work.set_constraint(FixSymmetry(work, symprec=SYMPREC))
    cell_filter = FrechetCellFilter(work, scalar_pressure=pressure_GPa * units.GPa)
    optimiser = BFGS(cell_filter, logfile=None, maxstep=0.1)

    def guard() -> None:
        if closest_approach(work) < settings.min_distance_fraction:
            raise Collapsed(f"atoms closer than {settings.min_distance_fraction} x covalent radii")

    optimiser.attach(guard)
    failure = ""
    # the filter's 3x3 LAPACK calls: threaded BLAS beside busy cores was 20x slower (design.md)
    with threadpool_limits(limits=1, user_api="blas"):
        try:
            converged = bool(optimiser.run(fmax=settings.fmax_eV_A, steps=settings.max_steps))
        except Collapsed as error:
            converged, failure = False, f"collapsed: {error}"
        except CalculationFailed as error:  # a DFT run that failed (phase.model: oracle)
            converged, failure = False, f"calculation failed: {error}"
    if not converged and not failure:
        failure = f"not relaxed in {settings.max_steps} steps"
    try:
        energy = float(work.get_potential_energy())
    except CalculationFailed:
        energy = float("nan")
    work.set_constraint()
    result = work.copy()
    result.calc = None
    if failure:
        log.warning("%s at %g GPa: %s", name, pressure_GPa, failure)
    return Relaxed(
        name=name,
        pressure_GPa=float(pressure_GPa),
        n_atoms=len(work),
        energy_eV=energy,
        volume_A3=float(work.get_volume()),
        converged=converged,
        steps=int(optimiser.nsteps),
        spacegroup_start=start,
        spacegroup_end=spacegroup(result),
        atoms=result,
        failure=failure,
    )


def enthalpy_curve(
    atoms: Atoms,
    calculator: Any,
    pressures_GPa: Sequence[float],
    name: str = "",
    settings: RelaxSettings = RelaxSettings(),
    done: Callable[[Relaxed], None] | None = None,
) -> list[Relaxed]:
    """``atoms`` relaxed at each pressure in increasing order, each from the last one that
    converged; ``done(relaxed)`` after each."""
    out: list[Relaxed] = []
    start = atoms
    for pressure in sorted(float(p) for p in pressures_GPa):
        relaxed = relax(start, calculator, pressure, name, settings)
        out.append(relaxed)
        if done is not None:
            done(relaxed)
        if relaxed.converged:
            start = relaxed.atoms
    return out
