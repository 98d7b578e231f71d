"""A foundation's source labels in a campaign's dataset, under the source's own physics
identity (campaign ``<name>/foundation``): queryable like any label, and the replay data of
multi-head fine-tuning."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ase import Atoms

from al_loop.foundation.source import Source
from al_loop.phase.ledger import DatasetLedger
from database.store import Store


def store_source_labels(
    store: Store,
    source: Source,
    labelled: Sequence[Atoms],
    campaign: str,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Store every labelled structure not stored yet; returns how many were new."""
    identity = source.identity()
    ledger = DatasetLedger(store, source.oracle, f"{campaign}/foundation", 0, origin="foundation")
    new = 0
    for k, atoms in enumerate(labelled, start=1):
        if ledger.recall(atoms) is None:
            result = source.oracle.ok_result(
                {
                    "energy": atoms.get_potential_energy(),
                    "forces": atoms.get_forces(),
                    "stress": atoms.get_stress(),
                },
                extra={"surrogates": identity["surrogates"], "kind": atoms.info.get("kind")},
            )
            result.physics, result.physics_hash = identity["physics"], identity["physics_hash"]
            ledger.keep(atoms, result)
            new += 1
        if progress is not None and (k % 100 == 0 or k == len(labelled)):
            progress(f"stored: {k}/{len(labelled)} ({new} new)")
    return new
