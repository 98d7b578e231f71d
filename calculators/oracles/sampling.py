"""What every code does to a structure the same way: the k-point grid from a spacing, and the
starting magnetic moments."""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms


def kpoints(atoms: Atoms, spacing_A: float) -> tuple[int, int, int]:
    """Monkhorst-Pack divisions n_i = max(1, ceil(|b_i| / spacing)), b_i with 2π (VASP's
    KSPACING): the same sampling density whatever the cell size."""
    lengths = 2 * math.pi * np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    return tuple(max(1, math.ceil(length / spacing_A)) for length in lengths)  # type: ignore[return-value]


def with_moments(atoms: Atoms, spin: bool, moments: dict[str, float]) -> Atoms:
    """A copy of ``atoms`` whose initial moments are those of ``moments`` (zero without spin):
    ASE's ``bulk("Fe")`` sets moments that would silently switch spin on."""
    atoms = atoms.copy()
    atoms.set_initial_magnetic_moments(
        [float(moments.get(el, 0.0)) if spin else 0.0 for el in atoms.get_chemical_symbols()]
    )
    return atoms
