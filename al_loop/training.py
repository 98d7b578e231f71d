"""The train stage: fine-tune the committee on every ``ok`` label of the campaign.

Members differ by seed and, by default, by a bootstrap resample of the training labels (their
out-of-bag labels validate them). A fixed fraction of labels, chosen by a hash of the structure
id so that a label never changes side, is held out of every member's training: the committee's
error is measured on it. Each member goes to the database (file in GridFS, provenance in
``models``) as soon as it is trained, so a stopped stage resumes with the members still missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from al_loop.evaluation import errors, summary
from calculators.models.committee import CommitteeCalculator, mace_calculator, resolve_device
from calculators.models.mace_train import (
    TrainedModel,
    TrainSettings,
    labelled_atoms,
    train_mace,
    train_options,
)
from database import LabelQuery
from database.documents import software_versions

if TYPE_CHECKING:
    from al_loop.campaign import CampaignSession

log = logging.getLogger(__name__)


def train_settings(session: CampaignSession) -> TrainSettings:
    c = session.config.committee
    return TrainSettings(
        max_epochs=c.max_epochs,
        batch_size=c.batch_size,
        learning_rate=c.learning_rate,
        dtype=c.dtype,
        device=resolve_device(c.device),
        num_channels=c.num_channels,
        max_L=c.max_L,
        r_max_A=c.r_max_A,
        energy_weight=c.energy_weight,
        forces_weight=c.forces_weight,
        stress_weight=c.stress_weight,
        ema_decay=c.ema_decay,
        replay_samples=c.replay_samples,
        extra_args=dict(c.mace_args),
    )


def is_held_out(structure_id: str, fraction: float) -> bool:
    """Whether a structure belongs to the held-out set (stable: a hash of its id)."""
    return int(structure_id[:8], 16) / 16**8 < fraction


def labelled_structures(session: CampaignSession) -> tuple[list[Atoms], list[Atoms]]:
    """The campaign's ``ok`` labels as training atoms, split into (train, held out); ``info``
    holds ``structure_id``, ``label_id`` and ``first_iteration`` (when the campaign asked)."""
    query = LabelQuery(
        campaign=session.name, status="ok", settings_hash=session.oracle().settings_hash
    )
    fraction = session.config.committee.held_out_fraction
    train, held_out = [], []
    for doc in session.store.find_labels(query):
        atoms = session.store.label_atoms(doc)
        atoms.info["structure_id"] = doc["structure_id"]
        asked = [r["iteration"] for r in doc.get("requests", []) if r["campaign"] == session.name]
        atoms.info["first_iteration"] = min(asked, default=None)
        (held_out if is_held_out(doc["structure_id"], fraction) else train).append(atoms)
    return train, held_out


def member_split(
    train: list[Atoms], member: int, seed: int, bootstrap: bool
) -> tuple[list[int], list[int]]:
    """Indices of one member's training and validation structures."""
    rng = np.random.default_rng([seed, member])
    n = len(train)
    if bootstrap:
        picked = rng.integers(0, n, size=n)
        out_of_bag = sorted(set(range(n)) - set(picked.tolist()))
        return picked.tolist(), out_of_bag or [int(rng.integers(n))]
    order = rng.permutation(n)
    n_valid = max(1, n // 10)
    return order[n_valid:].tolist(), order[:n_valid].tolist()


def _as_training(atoms: Atoms) -> Atoms:
    stress = atoms.calc.results.get("stress")
    return labelled_atoms(atoms, atoms.get_potential_energy(), atoms.get_forces(), stress)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foundation_spec(session: CampaignSession) -> dict[str, Any] | None:
    name = session.config.committee.foundation_model
    if name is None:
        return None
    path = Path(name)
    if path.is_file():
        return {"path": str(path), "sha256": _sha256(path)}
    return {"name": name}


def training_slots(session: CampaignSession, device: str) -> tuple[int, int | None]:
    """(members trained at once, torch threads each): the configured number, or on cpu one per
    core this process may use (a batch job's share) up to the committee size, one on a GPU.
    Measured: 4 members in 68 s two at a time with one thread each, 99 s one after another
    with two threads (benchmarks/training_bench.py)."""
    c = session.config.committee
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if c.parallel_trainings is not None:
        slots = c.parallel_trainings
    else:
        slots = 1 if device.startswith("cuda") else max(1, min(c.n_models, cores))
    return slots, (max(1, cores // slots) if device == "cpu" else None)


def train_stage(session: CampaignSession, iteration: int, progress: Any = None) -> dict[str, Any]:
    """Train (or finish training) the committee of ``iteration``; returns its metrics.

    Members train in parallel subprocesses; each is stored as soon as it is trained, and one
    failure does not lose the others (the first error is raised once they are stored)."""
    cfg = session.config
    store = session.store
    settings = train_settings(session)
    train, held_out = labelled_structures(session)
    if len(train) < 2:
        raise RuntimeError(
            f"campaign {session.name!r}, iteration {iteration}: {len(train)} ok labels to train "
            "on (2 needed); see `al-loop db query` for the failed ones"
        )
    foundation = foundation_spec(session)
    replay = cfg.committee.replay_file
    seed = cfg.seed * 1000 + iteration
    label_ids = [a.info["label_id"] for a in train]
    data_key = hashlib.sha256(
        json.dumps([label_ids, settings.to_document(), foundation, seed], default=str).encode()
    ).hexdigest()
    existing = {d["member"]: d for d in store.models(session.name, iteration)}
    members = {m: d for m, d in existing.items() if d.get("data_key") == data_key}
    todo = [m for m in range(cfg.committee.n_models) if m not in members]
    slots, threads = training_slots(session, settings.device)
    splits = {m: member_split(train, m, seed, cfg.committee.bootstrap) for m in todo}

    def fit(member: int) -> tuple[TrainedModel, float]:
        train_idx, valid_idx = splits[member]
        started = time.perf_counter()
        model = train_mace(
            [_as_training(train[i]) for i in train_idx],
            [_as_training(train[i]) for i in valid_idx],
            session.workdir / "training" / f"iter{iteration:03d}" / f"member{member}",
            seed=seed * 10 + member,
            settings=settings,
            foundation=cfg.committee.foundation_model,
            replay_file=replay,
            threads=threads,
        )
        return model, time.perf_counter() - started

    def provenance(member: int) -> dict[str, Any]:
        train_idx, valid_idx = splits[member]
        return {
            "foundation": foundation,
            "replay_file": str(replay) if replay else None,
            "label_ids": [label_ids[i] for i in train_idx],
            "valid_label_ids": [label_ids[i] for i in valid_idx],
            "data_key": data_key,
            "hyperparameters": settings.to_document(),
            "parallel_trainings": slots,
            "threads": threads,
        }

    train_options()  # mace's parser, imported here: no worker redirects the process's stdout
    # a named foundation is downloaded by the first training that needs it: one alone, then
    # the others find it cached (mace writes the download in place: a parallel one may read it
    # half-written)
    named = foundation is not None and "name" in foundation
    waves = [todo[:1], todo[1:]] if named else [todo]
    failure: BaseException | None = None
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=slots) as pool:
        try:
            for wave in waves:
                futures = {}
                for member in wave:
                    if progress:
                        n_train = len(splits[member][0])
                        progress(
                            "train", {"iteration": iteration, "member": member, "n_train": n_train}
                        )
                    futures[pool.submit(fit, member)] = member
                for future in as_completed(futures):
                    member = futures[future]
                    try:
                        model, wall = future.result()
                        valid = [train[i] for i in splits[member][1]]
                        members[member] = _store_member(
                            session,
                            iteration,
                            member,
                            model,
                            wall,
                            settings,
                            provenance(member),
                            valid,
                            held_out,
                        )
                    except Exception as exc:  # the others are still stored; raised after them
                        log.error("iteration %d member %d failed: %s", iteration, member, exc)
                        failure = failure or exc
                        continue
                    if progress:
                        progress(
                            "member", {"iteration": iteration, "member": member, "wall_s": wall}
                        )
        except BaseException:  # interrupted: start nothing more (running trainings finish)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if failure is not None:
        raise failure
    committee = load_committee(session, iteration, cfg.committee.dtype)
    held = errors(committee, held_out)
    ordered = [members[m] for m in sorted(members)]
    return {
        "models": len(ordered),
        "n_train": len(train),
        "n_held_out": len(held_out),
        "held_out": summary(held),
        "members_held_out_force_rmse_eV_A": [
            m["metrics"]["held_out"].get("force_rmse_eV_A") for m in ordered
        ],
        "training_wall_s": sum(m["training_wall_s"] for m in ordered),
        "stage_wall_s": time.perf_counter() - started,
        "parallel_trainings": slots,
    }


def _store_member(
    session: CampaignSession,
    iteration: int,
    member: int,
    model: TrainedModel,
    wall: float,
    settings: TrainSettings,
    provenance: dict[str, Any],
    valid: list[Atoms],
    held_out: list[Atoms],
) -> dict[str, Any]:
    """Put one trained member in GridFS and ``models`` (with its errors) and the local cache."""
    single = mace_calculator([model.path], settings.device, settings.dtype)
    doc = {
        "campaign": session.name,
        "iteration": iteration,
        "member": member,
        "seed": model.seed,
        **provenance,
        "mace_args": model.args,
        "heads": model.heads,
        "metrics": {
            "valid": summary(errors(single, valid)),
            "held_out": summary(errors(single, held_out)),
        },
        "training_wall_s": wall,
        "software": software_versions(),
    }
    data = model.path.read_bytes()
    doc["sha256"] = hashlib.sha256(data).hexdigest()
    session.store.add_model(doc, data)
    cache = _cache(session, iteration, member)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(data)
    log.info("iteration %d member %d trained in %.0f s", iteration, member, wall)
    return doc


def _cache(session: CampaignSession, iteration: int, member: int) -> Path:
    return session.workdir / "models" / f"iter{iteration:03d}" / f"member{member}.model"


def committee_files(session: CampaignSession, iteration: int) -> list[Path]:
    """The committee's model files of ``iteration``, fetched from GridFS when the local copy is
    missing or its SHA-256 differs from the stored one (the database is the reference)."""
    trained = session.store.db.metrics.find_one(
        {"campaign": session.name, "iteration": iteration, "stage": "train", "status": "done"}
    )
    if trained and trained["result"].get("reused_from") is not None:  # nothing was selected
        iteration = trained["result"]["reused_from"]
    docs = session.store.models(session.name, iteration)
    if len(docs) < session.config.committee.n_models:
        raise RuntimeError(
            f"campaign {session.name!r}: {len(docs)} models stored for iteration {iteration}, "
            f"{session.config.committee.n_models} expected"
        )
    paths = []
    for doc in docs:
        path = _cache(session, iteration, doc["member"])
        if not path.is_file() or _sha256(path) != doc.get("sha256"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(session.store.read_file(doc["file_id"]))
        paths.append(path)
    return paths


def load_committee(
    session: CampaignSession, iteration: int, dtype: str | None = None
) -> CommitteeCalculator:
    c = session.config.committee
    return CommitteeCalculator(committee_files(session, iteration), c.device, dtype or c.dtype)
