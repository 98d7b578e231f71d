"""The structures a foundation is pre-trained on, across a pressure range.

Five kinds, each cell sized to a pressure drawn uniformly from the range: each element's V(P)
from the source's own equations of state, mixed by composition, then one Newton step on the
source's own pressure of the cell (compounds are denser than the mix: without it three in four
cells of a Ca-Fe-Ni foundation were below 5 GPa for a range of 0-24 GPa):

- ``prototype``: the phase stage's prototypes (elemental lattices, B2, L1_2, Laves, CaCu5,
  Heusler, ...) on every choice of elements, lightly strained and rattled;
- ``alloy``: random substitutional alloys on fcc, bcc and hcp supercells;
- ``strained``: alloys under a random strain of up to ±8 % (shear included);
- ``rattled``: alloys with every atom displaced by 0.1-0.25 Å;
- ``md``: frames of short Langevin runs with the source, at each temperature.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from al_loop.evaluation import pressure_GPa
from al_loop.foundation.source import Source
from al_loop.foundation.trust import TrustReport
from al_loop.phase.candidates import PROTOTYPES, build
from al_loop.seeds import CELL_ATOMS, prototype

log = logging.getLogger(__name__)

#: Bumped whenever what :func:`generate` makes changes: part of the label cache's key.
GENERATOR_VERSION = 3
#: Share of each kind in the structures.
KINDS = {"prototype": 0.25, "alloy": 0.25, "strained": 0.15, "rattled": 0.15, "md": 0.20}
#: MD: steps per run, frames kept per run (evenly spaced, after a quarter of the run).
MD_STEPS, MD_FRAMES = 32, 4


@dataclass(frozen=True)
class Generator:
    """What the structures are made of; every field is part of the foundation's recipe."""

    elements: tuple[str, ...]
    pressure_max_GPa: float
    n_structures: int
    max_atoms: int = 16
    temperatures_K: tuple[float, ...] = (300.0, 1500.0, 3000.0)
    seed: int = 0
    #: Share of each kind (the default: :data:`KINDS`).
    kinds: tuple[tuple[str, float], ...] = tuple(KINDS.items())


def _volume(atoms: Atoms, trust: TrustReport, p_GPa: float) -> Atoms:
    """``atoms`` scaled to the volume its composition has at ``p_GPa``."""
    target = sum(trust.volume_at(s, p_GPa) for s in atoms.get_chemical_symbols())
    atoms.set_cell(atoms.cell * (target / atoms.get_volume()) ** (1 / 3), scale_atoms=True)
    return atoms


#: The Newton step on the volume changes it by at most this factor either way.
MAX_VOLUME_STEP = 1.3


def _sized(atoms: Atoms, source: Source, trust: TrustReport, p_GPa: float) -> Atoms:
    """``atoms`` scaled to the volume its composition has at ``p_GPa``: the elements' volumes
    mixed, then corrected by the source's pressure of that cell with the elements' mean bulk
    modulus (dV/V = -dP/B). A source that fails on the cell leaves the mixed volume."""
    atoms = _volume(atoms, trust, p_GPa)
    probe = atoms.copy()
    probe.calc = source.calculator()
    try:
        now = pressure_GPa(probe.get_stress())
    except Exception as exc:  # the cell is labelled (and its failure recorded) later anyway
        log.debug("no pressure of %s to size it: %s", atoms.get_chemical_formula(), exc)
        return atoms
    b = float(np.mean([trust.bulk_modulus_at(s, p_GPa) for s in atoms.get_chemical_symbols()]))
    ratio = float(
        np.clip(np.exp((now - p_GPa) / max(b, 1.0)), 1 / MAX_VOLUME_STEP, MAX_VOLUME_STEP)
    )
    atoms.set_cell(atoms.cell * ratio ** (1 / 3), scale_atoms=True)
    return atoms


def _strain(atoms: Atoms, rng: np.random.Generator, amplitude: float) -> Atoms:
    eps = rng.uniform(-amplitude, amplitude, (3, 3))
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
    return atoms


def _alloy(gen: Generator, rng: np.random.Generator) -> Atoms:
    """A random substitutional alloy: fcc, bcc or hcp, up to ``max_atoms`` atoms."""
    lattice = str(rng.choice(["fcc", "bcc", "hcp"]))
    cell = prototype(lattice, 10.0)
    repeats = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]
    fits = [r for r in repeats if CELL_ATOMS[lattice] * np.prod(r) <= gen.max_atoms]
    cell = cell.repeat(fits[int(rng.integers(len(fits)))])
    weights = rng.dirichlet(np.ones(len(gen.elements)))
    cell.set_chemical_symbols(list(rng.choice(list(gen.elements), size=len(cell), p=weights)))
    return cell


def _prototypes(gen: Generator) -> list[Atoms]:
    """Every prototype on every ordered choice of elements, primitive cells within max_atoms."""
    out = []
    for name, proto in PROTOTYPES.items():
        for chosen in itertools.permutations(gen.elements, len(proto.species)):
            atoms = build(name, chosen).atoms
            if len(atoms) <= gen.max_atoms:
                out.append(atoms)
    return out


def _md_frames(
    start: Atoms, source: Source, temperature_K: float, rng: np.random.Generator
) -> list[Atoms]:
    """Frames of a short NVT run with the source (the source labels each step)."""
    atoms = start.copy()
    atoms.calc = source.calculator()
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    dyn = Langevin(
        atoms, 2.0 * units.fs, temperature_K=temperature_K, friction=0.02, fixcm=False, rng=rng
    )
    frames = []
    every = MD_STEPS * 3 // 4 // MD_FRAMES
    for step in range(MD_STEPS):
        dyn.run(1)
        if step >= MD_STEPS // 4 and (step - MD_STEPS // 4) % every == every - 1:
            frames.append(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True))
    return frames[:MD_FRAMES]


def generate(
    gen: Generator, source: Source, trust: TrustReport
) -> Iterator[tuple[str, float, Atoms]]:
    """(kind, target pressure, unlabelled cell) for ``n_structures`` cells."""
    rng = np.random.default_rng(gen.seed)
    shares = dict(gen.kinds)
    unknown = sorted(set(shares) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; known: {', '.join(KINDS)}")
    counts = {k: round(shares.get(k, 0.0) * gen.n_structures) for k in KINDS}
    biggest = max(shares, key=shares.__getitem__)
    counts[biggest] += gen.n_structures - sum(counts.values())

    def pressure() -> float:
        return float(rng.uniform(0.0, gen.pressure_max_GPa))

    protos = _prototypes(gen)
    for i in range(counts["prototype"]):
        p = pressure()
        atoms = _sized(protos[i % len(protos)].copy(), source, trust, p)
        atoms = _strain(atoms, rng, 0.02)
        atoms.rattle(0.02, seed=int(rng.integers(2**31)))
        yield "prototype", p, atoms
    for _ in range(counts["alloy"]):
        p = pressure()
        atoms = _sized(_alloy(gen, rng), source, trust, p)
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        yield "alloy", p, atoms
    for _ in range(counts["strained"]):
        p = pressure()
        atoms = _strain(_sized(_alloy(gen, rng), source, trust, p), rng, 0.08)
        atoms.rattle(0.03, seed=int(rng.integers(2**31)))
        yield "strained", p, atoms
    for _ in range(counts["rattled"]):
        p = pressure()
        atoms = _sized(_alloy(gen, rng), source, trust, p)
        atoms.rattle(float(rng.uniform(0.1, 0.25)), seed=int(rng.integers(2**31)))
        yield "rattled", p, atoms
    made = 0
    while made < counts["md"]:
        p = pressure()
        temperature = float(gen.temperatures_K[made // MD_FRAMES % len(gen.temperatures_K)])
        start = _alloy(gen, rng)
        start = _sized(start.repeat((2, 1, 1)) if len(start) < 4 else start, source, trust, p)
        try:
            frames = _md_frames(start, source, temperature, rng)
        except Exception as exc:  # the source failed mid-run: this run's frames are lost only
            formula = start.get_chemical_formula()
            log.warning("MD of %s at %.0f K stopped: %s", formula, temperature, exc)
            frames = []
        for atoms in frames[: counts["md"] - made]:
            made += 1
            yield f"md-{temperature:.0f}K", p, atoms
        if not frames:
            made += 1  # never loop forever on a source that fails every run


def kind_counts(kinds: Sequence[str]) -> dict[str, int]:
    """How many structures of each kind (MD temperatures merged)."""
    out: dict[str, int] = {}
    for kind in kinds:
        key = kind.split("-")[0]
        out[key] = out.get(key, 0) + 1
    return out
