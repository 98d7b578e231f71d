"""The campaign's data and committees as the stages read them: its ``ok`` labels split into
training and held-out sets, and the committee of an iteration, loaded from the database.

A fixed fraction of labels, chosen by a hash of the structure id so that a label never changes
side, is held out of every member's training: the committee's error is measured on it. The
held-out labels first asked for up to ``committee.held_out_fixed_after`` form the *fixed* set,
on which every committee is compared; later held-out labels form one new slice per iteration,
reported separately (:func:`held_out_slices`). Only labels computed with the campaign's current
physics are read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ase import Atoms

from calculators.models.committee import CommitteeCalculator
from database import LabelQuery

if TYPE_CHECKING:
    from al_loop.campaign import CampaignSession


def is_held_out(structure_id: str, fraction: float) -> bool:
    """Whether a structure belongs to the held-out set (stable: a hash of its id)."""
    return int(structure_id[:8], 16) / 16**8 < fraction


def labelled_structures(session: CampaignSession) -> tuple[list[Atoms], list[Atoms]]:
    """The campaign's ``ok`` labels with its current physics, as atoms with their results,
    split into (train, held out); ``info`` holds ``structure_id``, ``label_id`` and
    ``first_iteration`` (when the campaign first asked for it)."""
    query = LabelQuery(campaign=session.name, status="ok", physics_hash=session.label_hashes)
    fraction = session.config.committee.held_out_fraction
    train, held_out = [], []
    for doc in session.store.find_labels(query):
        atoms = session.store.label_atoms(doc)
        atoms.info["structure_id"] = doc["structure_id"]
        asked = [r["iteration"] for r in doc.get("requests", []) if r["campaign"] == session.name]
        atoms.info["first_iteration"] = min(asked, default=None)
        (held_out if is_held_out(doc["structure_id"], fraction) else train).append(atoms)
    return train, held_out


#: The name of the held-out slice every committee is compared on.
FIXED = "fixed"


def held_out_slices(held_out: list[Atoms], fixed_after: int) -> dict[str, list[Atoms]]:
    """``held_out`` by slice: ``"fixed"`` (first asked for in iterations <= ``fixed_after``, or
    a user's file) and ``"iteration k"`` for each later iteration k, in order."""
    slices: dict[str, list[Atoms]] = {FIXED: []}
    later: dict[int, list[Atoms]] = {}
    for atoms in held_out:
        first = atoms.info.get("first_iteration")
        if first is None or first <= fixed_after:
            slices[FIXED].append(atoms)
        else:
            later.setdefault(first, []).append(atoms)
    return slices | {f"iteration {k}": later[k] for k in sorted(later)}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_cache(session: CampaignSession, iteration: int, member: int) -> Path:
    """Where a member's model file is cached locally (the database holds the reference)."""
    return session.workdir / "models" / f"iter{iteration:03d}" / f"member{member}.model"


def committee_files(session: CampaignSession, iteration: int) -> list[Path]:
    """The committee's model files of ``iteration`` (of the iteration it reuses, when nothing
    was selected), fetched from GridFS when the local copy is missing or its SHA-256 differs."""
    trained = session.log.result(iteration, "train")
    if trained and trained.get("reused_from") is not None:
        iteration = trained["reused_from"]
    expected = session.config.committee.n_models
    # members 0 .. n_models - 1 (a committee made smaller keeps its other members stored)
    docs = [d for d in session.store.models(session.name, iteration) if d["member"] < expected]
    if len(docs) < expected:
        raise RuntimeError(
            f"campaign {session.name!r}: {len(docs)} models stored for iteration {iteration}, "
            f"{expected} expected"
        )
    paths = []
    for doc in docs:
        path = model_cache(session, iteration, doc["member"])
        if not path.is_file() or sha256_of(path) != doc.get("sha256"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(session.store.read_model_file(doc))
        paths.append(path)
    return paths


def load_committee(
    session: CampaignSession, iteration: int, dtype: str | None = None
) -> CommitteeCalculator:
    """The committee of ``iteration`` as one calculator (mean and spread)."""
    c = session.config.committee
    return CommitteeCalculator(committee_files(session, iteration), c.device, dtype or c.dtype)
