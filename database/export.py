"""Exports of labels to extxyz and to an ASE database (energies, forces, stress, provenance)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from database.documents import EV_A3_TO_GPA, atoms_from_arrays
from database.queries import LabelQuery

if TYPE_CHECKING:
    from database.store import Store

log = logging.getLogger(__name__)

_INFO_KEYS = (
    "status",
    "settings_hash",
    "structure_id",
    "code",
    "code_version",
    "pressure_GPa",
    "energy_per_atom_eV",
    "wall_time_s",
    "formula",
)


def label_to_atoms(doc: dict[str, Any], store: Store) -> Atoms:
    """``Atoms`` of a label with its results in a ``SinglePointCalculator`` and ids in ``info``."""
    arrays = doc["arrays"] if isinstance(doc.get("arrays"), dict) else store.unpack_arrays(doc)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if "numbers" in arrays:
        atoms = atoms_from_arrays(arrays)
    else:  # a label still running has no arrays yet: its structure has them
        atoms = store.get_structure(doc["structure_id"])
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
    for key in _INFO_KEYS:
        if doc.get(key) is not None:
            atoms.info[key] = doc[key]
    requests = doc.get("requests") or []
    if requests:
        atoms.info["campaign"] = requests[0]["campaign"]
        atoms.info["iteration"] = requests[0]["iteration"]
    return atoms


def export_extxyz(store: Store, query: LabelQuery, path: str | Path) -> int:
    """Write the matching labels to an extended-XYZ file; returns how many."""
    from ase.io import write

    frames = [label_to_atoms(doc, store) for doc in store.find_labels(query)]
    write(str(path), frames, format="extxyz")
    log.info("wrote %d labels to %s", len(frames), path)
    return len(frames)


def export_ase_db(store: Store, query: LabelQuery, path: str | Path) -> int:
    """Add the matching labels to an ASE database (``.db`` SQLite or ``.json``).

    Labels already in it (same ``label_id``) are skipped; returns how many were written.
    """
    import ase.db
    from ase.db.core import convert_str_to_int_float_bool_or_str

    count = 0
    with ase.db.connect(str(path)) as db:
        present = {row.get("label_id") for row in db.select(columns=["key_value_pairs"])}
        for doc in store.find_labels(query):
            if str(doc["_id"]) in present:
                continue
            atoms = label_to_atoms(doc, store)
            pairs = {
                k: v
                for k, v in atoms.info.items()
                if isinstance(v, (str, int, float, bool)) and k != "formula"
            }
            # ASE refuses strings that read as numbers (code_version "6.7", campaign "2024"):
            # those go to the row's data instead
            text = {
                k: v
                for k, v in pairs.items()
                if isinstance(v, str)
                and not isinstance(convert_str_to_int_float_bool_or_str(v), str)
            }
            pairs = {k: v for k, v in pairs.items() if k not in text}
            data = {"settings": doc.get("settings"), "software": doc.get("software")}
            if text:
                data["info"] = text
            db.write(atoms, key_value_pairs=pairs, data=data)
            count += 1
    log.info("wrote %d labels to %s", count, path)
    return count
