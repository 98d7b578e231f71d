"""One committee member's training, from its labels in the database to its model there.

The train stage describes each member as a :class:`MemberJob` (its training and validation
labels by id, the trainer's settings, seed, foundation) and has :func:`train_member` run it,
either in the campaign's process or inside a Firework on a queue (a GPU partition:
``committee.queue``, launchers/tasks.py). Either way the same thing happens: the labels are
read from the database, mace trains, and the model is stored (signed) with its provenance;
a member already stored with the same ``data_key`` is never trained again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ase import Atoms

from calculators.models.committee import resolve_device
from calculators.models.mace_train import TrainSettings, labelled_atoms, train_mace
from database import Store
from database.documents import software_versions
from database.model_signing import sign, verify

log = logging.getLogger(__name__)

#: Members trained in threads of one process load their model files one at a time (loading a
#: MACE model may patch torch for the whole process: mace_train.TrainedModel).
_LOADING = threading.Lock()


@dataclasses.dataclass(frozen=True)
class MemberJob:
    """What one member is trained on and how (plain data: it travels in a Firework)."""

    campaign: str
    iteration: int
    member: int
    train_label_ids: list[str]
    valid_label_ids: list[str]
    #: :class:`TrainSettings` as a document; its ``device`` may be ``auto`` (resolved where
    #: the member trains).
    settings: dict[str, Any]
    seed: int
    #: Identifies the member's data and settings: a stored member with it is reused.
    data_key: str
    #: A foundation model file or named model; null: from scratch.
    foundation: str | None = None
    replay_file: str | None = None
    #: Recorded with the model (foundation's hash, how many trained at once, ...).
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: When the stage made the job (epoch s): a member stored by a newer job (other labels or
    #: settings) is never replaced by an older one that ends later (a superseded Firework).
    submitted_at: float = 0.0
    #: The dataset's database names (``database``, ``launchpad_database``) a worker stores the
    #: member in (a Firework's job: signed with the rest).
    store: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The campaign machine's signature (database/model_signing.py): a job read from a
    #: Firework runs only if it matches, for its foundation file and mace options are loaded
    #: and run, and anyone who can write to the LaunchPad could write a Firework.
    signature: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemberJob:
        return cls(**data)

    def _context(self) -> dict[str, Any]:
        return {"kind": "member-job", **self.to_dict(), "signature": None}

    def signed(self) -> MemberJob:
        """This job signed with this machine's key."""
        return dataclasses.replace(self, signature=sign(b"", self._context()))

    def check(self) -> MemberJob:
        """This job if its signature matches this machine's key; else UntrustedModel."""
        what = (
            f"the training job of {self.campaign} iteration {self.iteration} member {self.member}"
        )
        verify(b"", self.signature, what, self._context())
        return self


def stored_member(store: Store, job: MemberJob) -> dict[str, Any] | None:
    """The member's model document if it was stored with this job's ``data_key``."""
    key = {"campaign": job.campaign, "iteration": job.iteration, "member": job.member}
    return store.db.models.find_one({**key, "data_key": job.data_key})


def superseded_by(store: Store, job: MemberJob) -> dict[str, Any] | None:
    """The member stored by a newer job (other labels or settings), which ``job`` must not
    replace, if any."""
    return store.db.models.find_one(
        {
            "campaign": job.campaign,
            "iteration": job.iteration,
            "member": job.member,
            "data_key": {"$ne": job.data_key},
            "submitted_at": {"$gt": job.submitted_at},
        }
    )


def training_atoms(store: Store, label_ids: list[str]) -> list[Atoms]:
    """The labels ``label_ids`` (in that order) as atoms carrying mace's reference values."""
    out = []
    for doc in store.labels_by_id(label_ids):
        atoms = store.label_atoms(doc)
        stress = atoms.calc.results.get("stress")
        out.append(labelled_atoms(atoms, atoms.get_potential_energy(), atoms.get_forces(), stress))
    return out


def usable_cores() -> int:
    """The cores this process may use (a batch job's share, not the node's)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def job_threads(device: str) -> int | None:
    """Torch threads of a member trained alone here: every usable core on cpu; mace's choice
    on a GPU."""
    return usable_cores() if device == "cpu" else None


def train_member(
    store: Store, job: MemberJob, workdir: Path, threads: int | None = None
) -> dict[str, Any]:
    """Train ``job``'s member in ``workdir`` and store it; returns its model document (without
    metrics: the train stage measures every member on the same held-out labels). A member
    stored before with the same ``data_key`` is returned as it is."""
    done = stored_member(store, job)
    if done is not None:
        log.info(
            "%s iteration %d member %d is stored already", job.campaign, job.iteration, job.member
        )
        return done
    settings = TrainSettings(**job.settings)
    settings = dataclasses.replace(settings, device=resolve_device(settings.device))
    started = time.perf_counter()
    model = train_mace(
        training_atoms(store, job.train_label_ids),
        training_atoms(store, job.valid_label_ids),
        workdir,
        seed=job.seed,
        settings=settings,
        foundation=job.foundation,
        replay_file=Path(job.replay_file) if job.replay_file else None,
        threads=threads if threads is not None else job_threads(settings.device),
    )
    wall = time.perf_counter() - started
    data = model.path.read_bytes()
    with _LOADING:
        heads = model.heads
    doc = {
        "campaign": job.campaign,
        "iteration": job.iteration,
        "member": job.member,
        "seed": model.seed,
        **job.provenance,
        "label_ids": job.train_label_ids,
        "valid_label_ids": job.valid_label_ids,
        "data_key": job.data_key,
        "hyperparameters": settings.to_document(),
        "mace_args": model.args,
        "heads": heads,
        "training_wall_s": wall,
        "host": socket.gethostname(),
        "software": software_versions(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "submitted_at": job.submitted_at,
    }
    newer = superseded_by(store, job)
    if newer is not None:
        log.warning(
            "%s iteration %d member %d: a newer job stored it meanwhile; this one is superseded "
            "and not stored",
            job.campaign,
            job.iteration,
            job.member,
        )
        return newer
    store.add_model(doc, data)
    log.info(
        "%s iteration %d member %d trained in %.0f s", job.campaign, job.iteration, job.member, wall
    )
    return doc
