"""Exports of labels to extxyz and to an ASE database (energies, forces, stress, provenance)."""

from __future__ import annotations

import logging
from pathlib import Path

from database.queries import LabelQuery
from database.store import Store

log = logging.getLogger(__name__)


def export_extxyz(store: Store, query: LabelQuery, path: str | Path) -> int:
    """Write the matching labels to an extended-XYZ file; returns how many."""
    from ase.io import write

    frames = [store.label_atoms(doc) for doc in store.find_labels(query)]
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
            atoms = store.label_atoms(doc)
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
