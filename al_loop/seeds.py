"""Seed structures of iteration 0: lattice prototypes with random substitutions, and user files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.io import read

log = logging.getLogger(__name__)

#: Atoms in the conventional cell ASE builds for each prototype (cubic where it exists).
CELL_ATOMS = {"fcc": 4, "bcc": 2, "hcp": 2, "sc": 1}
_REPEATS = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (3, 2, 2), (3, 3, 2), (3, 3, 3)]
_HCP_C_OVER_A = 1.633


@dataclass
class Seed:
    """A seed structure and where it came from (stored with the structure)."""

    atoms: Atoms
    source: dict[str, Any] = field(default_factory=dict)


def atomic_volume_A3(symbol: str) -> float:
    """Volume per atom of the element's ASE reference crystal, or a covalent-radius estimate."""
    state = reference_states[atomic_numbers[symbol]]
    if state and state.get("symmetry") in ("fcc", "bcc", "hcp", "diamond", "sc"):
        try:
            crystal = bulk(symbol)
            return float(crystal.get_volume() / len(crystal))
        except (ValueError, KeyError, RuntimeError):
            pass
    radius = covalent_radii[atomic_numbers[symbol]]
    return float(4.0 / 3.0 * np.pi * radius**3 / 0.68)  # a bcc-like packing fraction


def prototype(kind: str, volume_per_atom_A3: float) -> Atoms:
    """The conventional cell of a prototype with the given volume per atom (placeholder Cu)."""
    if kind == "fcc":
        return bulk("Cu", "fcc", a=(4 * volume_per_atom_A3) ** (1 / 3), cubic=True)
    if kind == "bcc":
        return bulk("Cu", "bcc", a=(2 * volume_per_atom_A3) ** (1 / 3), cubic=True)
    if kind == "sc":
        return bulk("Cu", "sc", a=volume_per_atom_A3 ** (1 / 3))
    if kind == "hcp":
        a = (2 * volume_per_atom_A3 / (np.sqrt(3) / 2 * _HCP_C_OVER_A)) ** (1 / 3)
        return bulk("Cu", "hcp", a=a, c=_HCP_C_OVER_A * a)
    raise ValueError(f"unknown prototype {kind!r}; known: {', '.join(CELL_ATOMS)}")


def _repeat_for(kind: str, max_atoms: int, rng: np.random.Generator) -> tuple[int, int, int]:
    fitting = [r for r in _REPEATS if CELL_ATOMS[kind] * int(np.prod(r)) <= max_atoms]
    if not fitting:
        n = CELL_ATOMS[kind]
        raise ValueError(f"a {kind} cell has {n} atoms, above max_atoms={max_atoms}")
    return fitting[rng.integers(len(fitting))]


def _finish(
    atoms: Atoms,
    symbols: Sequence[str],
    volume_scale: float,
    rattle_A: float,
    rng: np.random.Generator,
) -> Atoms:
    atoms = atoms.copy()
    atoms.set_chemical_symbols(list(symbols))
    mean_volume = float(np.mean([atomic_volume_A3(s) for s in symbols]))
    current = atoms.get_volume() / len(atoms)
    linear = (mean_volume * volume_scale / current) ** (1 / 3)
    atoms.set_cell(atoms.cell[:] * linear, scale_atoms=True)
    if rattle_A > 0:
        atoms.positions += rng.normal(0.0, rattle_A, size=atoms.positions.shape)
    atoms.wrap()
    return atoms


def lattice_seeds(
    elements: Sequence[str],
    prototypes: Sequence[str],
    n_structures: int,
    max_atoms: int,
    rattle_A: float,
    volume_scale_range: Sequence[float],
    seed: int,
) -> list[Seed]:
    """Pure elements on every prototype, then random substitutions up to ``n_structures``.

    Compositions of the substituted cells are drawn from a flat Dirichlet distribution; volumes
    follow the elements' mean atomic volume times a factor drawn in ``volume_scale_range``
    (below 1: compressed, towards the campaign's pressures).
    """
    rng = np.random.default_rng(seed)
    lo, hi = volume_scale_range
    seeds: list[Seed] = []
    for kind in prototypes:
        for element in elements:
            if len(seeds) >= n_structures:
                return seeds
            scale = float(rng.uniform(lo, hi))
            cell = prototype(kind, 1.0) * _repeat_for(kind, max_atoms, rng)
            atoms = _finish(cell, [element] * len(cell), scale, rattle_A, rng)
            seeds.append(Seed(atoms, {"kind": "lattice", "prototype": kind, "volume_scale": scale}))
    while len(seeds) < n_structures:
        kind = prototypes[rng.integers(len(prototypes))]
        cell = prototype(kind, 1.0) * _repeat_for(kind, max_atoms, rng)
        fractions = rng.dirichlet(np.ones(len(elements)))
        symbols = list(rng.choice(list(elements), size=len(cell), p=fractions))
        scale = float(rng.uniform(lo, hi))
        atoms = _finish(cell, symbols, scale, rattle_A, rng)
        seeds.append(
            Seed(atoms, {"kind": "substitution", "prototype": kind, "volume_scale": scale})
        )
    return seeds


def candidate_seeds(
    candidates: Sequence[tuple[str, Atoms]],
    per_candidate: int,
    rattle_A: float,
    volume_scale_range: Sequence[float],
    seed: int,
) -> list[Seed]:
    """Each named cell (the phase stage's prototype candidates) ``per_candidate`` times, at
    volume factors spread evenly over ``volume_scale_range`` (its middle for one), rattled."""
    rng = np.random.default_rng(seed + 1)
    lo, hi = volume_scale_range
    scales = [0.5 * (lo + hi)] if per_candidate == 1 else np.linspace(lo, hi, per_candidate)
    seeds = []
    for name, cell in candidates:
        for scale in scales:
            atoms = _finish(cell, cell.get_chemical_symbols(), float(scale), rattle_A, rng)
            seeds.append(
                Seed(atoms, {"kind": "phase", "candidate": name, "volume_scale": float(scale)})
            )
    return seeds


def file_seeds(paths: Sequence[Path], elements: Sequence[str]) -> list[Seed]:
    """Structures from the user's files (CIF, extxyz, POSCAR, ...: anything ``ase.io`` reads)."""
    seeds = []
    allowed = set(elements)
    for path in paths:
        try:
            frames = read(str(path), index=":")
        except Exception as exc:
            raise ValueError(
                f"{path}: cannot read structures ({exc}); give CIF, extxyz or POSCAR files"
            ) from exc
        for index, atoms in enumerate(frames):
            extra = set(atoms.get_chemical_symbols()) - allowed
            if extra:
                raise ValueError(
                    f"{path}: structure {index} contains {', '.join(sorted(extra))}, "
                    f"not in system.elements ({', '.join(elements)})"
                )
            atoms.calc = None
            seeds.append(Seed(atoms, {"kind": "file", "path": str(path), "index": index}))
    return seeds
