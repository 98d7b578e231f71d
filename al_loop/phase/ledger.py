"""The dataset as the ledger of DFT relaxations (``phase.model: oracle``): every run of the
oracle becomes a label in the database as soon as it ends, and a run whose label is already
there is not repeated."""

from __future__ import annotations

import os
import socket
from typing import Any

from ase import Atoms

from calculators.oracles.base import LabelResult, Oracle
from database.documents import structure_id
from database.store import Store
from launchers.tasks import label_fields


class DatasetLedger:
    """Labels of ``oracle``'s physics in ``store``, asked for by ``campaign`` (a name of its
    own, e.g. ``<campaign>/phase``: the committee's training set is left as it is); ``origin``
    is recorded as each structure's source."""

    def __init__(
        self, store: Store, oracle: Oracle, campaign: str, iteration: int, origin: str = "phase"
    ) -> None:
        self.store, self.oracle = store, oracle
        self.campaign, self.iteration, self.origin = campaign, iteration, origin

    def _hash(self, atoms: Atoms) -> str:
        return self.oracle.physics_hash_for(atoms.get_chemical_symbols())

    def recall(self, atoms: Atoms) -> Atoms | None:
        doc = self.store.find_label(structure_id(atoms), self._hash(atoms))
        if doc is None or doc.get("status") != "ok":
            return None
        return self.store.label_atoms(doc)

    def keep(self, atoms: Atoms, result: LabelResult) -> None:
        sid = self.store.add_structure(
            atoms, self.campaign, self.iteration, {"source": self.origin}
        )
        worker: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "job_id": f"phase-{sid}",  # a rerun after a crash takes its own claim over
        }
        claim = self.store.claim_label(
            sid, self._hash(atoms), self.campaign, self.iteration, worker
        )
        if claim is None:  # labelled meanwhile by someone else: theirs stands
            return
        self.store.complete_label(
            claim, atoms, label_fields(result, len(atoms), worker), result.forces_eV_A
        )
