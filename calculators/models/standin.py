"""The test suite's tiny EMT foundation, and EMT-labelled random alloys for tests and
benchmarks.

A small MACE (16 channels, max_L 0, r_max 5.5 Å: EMT's own cutoff reaches ~5.4 Å, and 4 Å left
energies at 85 meV/atom, docs/design.md) pre-trained on EMT-labelled random fcc/bcc alloys at
70-105 % of their volume, with energies, forces and stresses all weighed in. The tests and the
EMT benchmarks fine-tune from it as a user fine-tunes from a foundation; their committed
figures were measured with it. A user builds a foundation with ``al-loop foundation``
(al_loop/foundation/: any source, its trusted range measured, a richer set of structures); the
training set is kept beside the model (``<name>.replay.xyz``) as the replay set of multi-head
fine-tuning, and the recipe (``<name>.recipe.json``) too.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT, parameters

from calculators.models.mace_train import TrainSettings, labelled_atoms, train_mace

log = logging.getLogger(__name__)

STANDIN_SETTINGS = TrainSettings(
    max_epochs=30,
    batch_size=10,
    num_channels=16,
    max_L=0,
    r_max_A=5.5,
    energy_weight=100.0,
    forces_weight=10.0,
    stress_weight=1000.0,
    ema_decay=0.99,
)
#: EMT cells the stand-in is pre-trained on.
STANDIN_STRUCTURES = 500


def emt_structures(
    elements: Sequence[str],
    n: int,
    seed: int = 0,
    volumes: tuple[float, float] = (0.70, 1.05),
    rattle_A: tuple[float, float] = (0.1, 0.1),
    calculator: type[EMT] = EMT,
) -> list[Atoms]:
    """``n`` labelled random alloys of ``elements``: fcc/bcc cells of 2-8 atoms, volume scaled
    by a factor drawn from ``volumes`` (70-105 %: 0 to ~100 GPa for Cu-Ni-Al), rattled by an
    amplitude drawn from ``rattle_A``, labelled by ``calculator`` (EMT or a variant of it)."""
    unknown = sorted(set(elements) - set(parameters))
    if unknown:
        raise ValueError(
            f"EMT cannot label {unknown}; it knows {sorted(parameters)} (name EMT elements to "
            "label in their place: al-loop foundation --surrogates)"
        )
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lattice = str(rng.choice(["fcc", "bcc"]))
        atoms = bulk("Cu", lattice, a=3.6 if lattice == "fcc" else 2.87, cubic=True)
        atoms = atoms.repeat((1, 1, 2)) if rng.random() < 0.5 else atoms
        atoms.set_chemical_symbols(list(rng.choice(list(elements), size=len(atoms))))
        atoms.set_cell(atoms.cell * rng.uniform(*volumes) ** (1 / 3), scale_atoms=True)
        lo, hi = rattle_A  # a fixed amplitude draws nothing: the stand-in's cells stay the same
        atoms.rattle(lo if lo == hi else rng.uniform(lo, hi), seed=int(rng.integers(2**31)))
        atoms.calc = calculator()
        out.append(
            labelled_atoms(
                atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
            )
        )
    return out


def build_standin_foundation(
    elements: Sequence[str],
    out: Path,
    n_structures: int = STANDIN_STRUCTURES,
    seed: int = 0,
    settings: TrainSettings = STANDIN_SETTINGS,
    threads: int | None = None,
) -> Path:
    """Pre-train the stand-in on EMT data and write it to ``out`` (and its replay set)."""
    from ase.io import write

    structures = emt_structures(elements, n_structures, seed)
    n_valid = max(1, n_structures // 10)
    workdir = out.parent / f".{out.stem}-training"
    model = train_mace(
        structures[n_valid:], structures[:n_valid], workdir, seed, settings, threads=threads
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model.path, out)
    write(replay_file(out), structures, format="extxyz")
    recipe_file(out).write_text(json.dumps(recipe(elements, n_structures, seed, settings)))
    shutil.rmtree(workdir, ignore_errors=True)
    log.info("stand-in foundation model for %s written to %s", "-".join(elements), out)
    return out


def recipe(
    elements: Sequence[str], n_structures: int, seed: int, settings: TrainSettings
) -> dict[str, Any]:
    """What a stand-in is made of."""
    return {
        "elements": sorted(elements),
        "n_structures": n_structures,
        "seed": seed,
        "settings": settings.to_document(),
    }


def recipe_file(model: Path) -> Path:
    return model.with_suffix(".recipe.json")


def replay_file(model: Path) -> Path:
    """Where :func:`build_standin_foundation` keeps a model's pre-training set."""
    return model.with_suffix(".replay.xyz")
