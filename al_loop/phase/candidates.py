"""Candidate structures for phase stability: elemental lattices, binary and ternary prototypes,
and the user's own files.

A prototype is a space group with Wyckoff sites for species A, B (and C), and a c/a ratio;
its cell is built with :func:`ase.spacegroup.crystal` (the primitive cell) and scaled to the
composition's average atomic volume at ambient pressure (each element's volume in its ASE
reference state): relaxation under pressure starts from there. Names are
``<reduced formula>:<prototype>``, for example ``Ca:fcc``, ``CaNi5:CaCu5``, ``FeNi3:L1_2``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.io import read
from ase.spacegroup import crystal


@dataclass(frozen=True)
class Prototype:
    """A structure type: space group, the fractional sites of species ``A``, ``B``, ``C``
    (in that order in ``sites``), c/a, and the cell setting of its space group."""

    spacegroup: int
    sites: tuple[tuple[str, tuple[float, float, float]], ...]
    c_over_a: float = 1.0
    hexagonal: bool = False
    setting: int = 1

    @property
    def species(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for s, _ in self.sites))


_HCP_CA = float(np.sqrt(8 / 3))

#: Elemental lattices (species A). ``sc`` is Ca-III; ``dhcp`` the double-hexagonal stacking;
#: ``beta-Sn`` (A5, I4_1/amd) the phase DFT predicts for Ca at 33-71 GPa (Oganov et al., PNAS
#: 107, 7646 (2010)). Ca-IV (P4_12_12) and Ca-V (Cmca) are not built in: give them as files.
ELEMENTAL: dict[str, Prototype] = {
    "fcc": Prototype(225, (("A", (0, 0, 0)),)),
    "bcc": Prototype(229, (("A", (0, 0, 0)),)),
    "sc": Prototype(221, (("A", (0, 0, 0)),)),
    "hcp": Prototype(194, (("A", (1 / 3, 2 / 3, 1 / 4)),), _HCP_CA, True),
    "dhcp": Prototype(194, (("A", (0, 0, 0)), ("A", (1 / 3, 2 / 3, 1 / 4))), 2 * _HCP_CA, True),
    "beta-Sn": Prototype(141, (("A", (0, 0, 0)),), 0.55),
}

#: Binary prototypes: the formula is A_nB_m as the sites give it (B2 and L1_0: AB; L1_2: A3B;
#: the Laves phases C15, C14, C36: AB2; CaCu5: AB5). Internal coordinates: the ideal or
#: commonly quoted values; relaxation moves them.
BINARY: dict[str, Prototype] = {
    "B2": Prototype(221, (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)))),
    "L1_0": Prototype(123, (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5))), float(np.sqrt(2))),
    "L1_2": Prototype(221, (("A", (0, 0.5, 0.5)), ("B", (0, 0, 0)))),
    "C15": Prototype(227, (("A", (1 / 8, 1 / 8, 1 / 8)), ("B", (0.5, 0.5, 0.5))), setting=2),
    "C14": Prototype(
        194,
        (("A", (1 / 3, 2 / 3, 0.0625)), ("B", (0, 0, 0)), ("B", (0.8305, 0.661, 0.25))),
        1.64,
        True,
    ),
    "C36": Prototype(
        194,
        (
            ("A", (0, 0, 0.09375)),
            ("A", (1 / 3, 2 / 3, 0.84375)),
            ("B", (1 / 3, 2 / 3, 0.125)),
            ("B", (0.5, 0, 0)),
            ("B", (1 / 6, 1 / 3, 0.25)),
        ),
        3.26,
        True,
    ),
    "CaCu5": Prototype(
        191,
        (("A", (0, 0, 0)), ("B", (1 / 3, 2 / 3, 0)), ("B", (0.5, 0, 0.5))),
        0.81,
        True,
    ),
}

#: Ternary prototypes: L2_1 (Heusler, A2BC).
TERNARY: dict[str, Prototype] = {
    "L2_1": Prototype(225, (("A", (0.25, 0.25, 0.25)), ("B", (0, 0, 0)), ("C", (0.5, 0.5, 0.5)))),
}

PROTOTYPES: dict[str, Prototype] = {**ELEMENTAL, **BINARY, **TERNARY}


@dataclass(frozen=True)
class Candidate:
    """A structure whose enthalpy is followed over pressure."""

    name: str
    prototype: str
    atoms: Atoms


def atomic_volume(symbol: str) -> float:
    """The element's volume per atom (Å^3) in ASE's reference state at ambient pressure."""
    try:
        atoms = bulk(symbol)
    except (ValueError, KeyError, NotImplementedError) as error:
        message = f"no reference volume for {symbol}: give its structures as files"
        raise ValueError(message) from error
    return atoms.get_volume() / len(atoms)


def build(prototype: str, species: Sequence[str]) -> Candidate:
    """The prototype's primitive cell with ``species`` on its sites A, B, C, scaled to the
    average atomic volume of its composition."""
    try:
        proto = PROTOTYPES[prototype]
    except KeyError:
        raise ValueError(
            f"unknown prototype {prototype!r}; known: {', '.join(PROTOTYPES)}"
        ) from None
    if len(species) != len(proto.species):
        raise ValueError(
            f"prototype {prototype} takes {len(proto.species)} species, got {list(species)}"
        )
    names = dict(zip(proto.species, species, strict=True))
    cellpar = [1.0, 1.0, proto.c_over_a, 90, 90, 120 if proto.hexagonal else 90]
    atoms = crystal(
        [names[s] for s, _ in proto.sites],
        [p for _, p in proto.sites],
        spacegroup=proto.spacegroup,
        setting=proto.setting,
        cellpar=cellpar,
        primitive_cell=True,
    )
    volume = sum(atomic_volume(s) for s in atoms.get_chemical_symbols())
    atoms.set_cell(atoms.cell * (volume / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    atoms.wrap()
    formula = atoms.get_chemical_formula(mode="metal", empirical=True)
    return Candidate(f"{formula}:{prototype}", prototype, atoms)


def prototype_candidates(
    elements: Sequence[str], prototypes: Sequence[str] = tuple(PROTOTYPES)
) -> list[Candidate]:
    """Each of ``prototypes`` on every ordered choice of the elements it takes (an elemental
    lattice on each element, a binary one on each ordered pair, a ternary one on each ordered
    triple); a structure met twice (B2 on (A, B) and (B, A)) is kept once."""
    out: list[Candidate] = []
    for name in prototypes:
        n = len(PROTOTYPES[name].species)
        out += [build(name, chosen) for chosen in itertools.permutations(elements, n)]
    return unique(out)


def unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    """``candidates`` less repeats of the same structure (the same name and the same cell
    and sites up to a translation of the species, e.g. B2 on (Fe, Ni) and on (Ni, Fe))."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = StructureMatcher()
    kept: list[Candidate] = []
    for candidate in candidates:
        same_name = [k for k in kept if k.name == candidate.name]
        structure = AseAtomsAdaptor.get_structure(candidate.atoms)
        if not any(
            matcher.fit(structure, AseAtomsAdaptor.get_structure(k.atoms)) for k in same_name
        ):
            kept.append(candidate)
    return kept


def file_candidates(paths: Sequence[Path], elements: Sequence[str]) -> list[Candidate]:
    """The user's structures (CIF, POSCAR, extxyz, ...), named ``<formula>:<file stem>``;
    a file with an element outside the campaign's is refused by name."""
    out = []
    for path in paths:
        try:
            atoms = read(path)
        except Exception as error:
            raise ValueError(f"{path}: not a structure ASE can read ({error})") from error
        if not isinstance(atoms, Atoms) or not atoms.pbc.all():
            raise ValueError(f"{path}: a periodic crystal is needed (pbc on all three axes)")
        other = sorted(set(atoms.get_chemical_symbols()) - set(elements))
        if other:
            raise ValueError(
                f"{path}: holds {', '.join(other)}, not among the campaign's elements "
                f"{', '.join(elements)}"
            )
        formula = atoms.get_chemical_formula(mode="metal", empirical=True)
        out.append(Candidate(f"{formula}:{Path(path).stem}", Path(path).stem, atoms))
    return out


def structure_sha256(atoms: Atoms) -> str:
    """A candidate's starting cell, hashed (cell, positions to 1e-6 Å, species)."""
    data = np.concatenate([atoms.cell[:].ravel(), atoms.positions.ravel()]).round(6)
    text = json.dumps([data.tolist(), atoms.numbers.tolist()])
    return hashlib.sha256(text.encode()).hexdigest()


def candidates_sha256(candidates: list[Candidate]) -> str:
    """What identifies a set of candidates: their names and starting cells."""
    text = json.dumps([[c.name, structure_sha256(c.atoms)] for c in candidates])
    return hashlib.sha256(text.encode()).hexdigest()
