"""Train: fine-tune the committee on every ``ok`` label of the campaign (its current physics).

Members differ by seed and, by default, by a bootstrap resample of the training labels (their
out-of-bag labels validate them); the held-out labels (al_loop/committee.py) are never trained
on. Each member goes to the database (file in GridFS, provenance in ``models``) as soon as it is
trained, so a stopped stage resumes with the members still missing. An iteration that selected
nothing trains nothing: it reuses the previous committee.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from al_loop.committee import (
    FIXED,
    held_out_slices,
    labelled_structures,
    load_committee,
    model_cache,
    sha256_of,
)
from al_loop.evaluation import errors, summary
from al_loop.stages.base import Stage
from calculators.models.committee import mace_calculator, resolve_device
from calculators.models.mace_train import (
    TrainedModel,
    TrainSettings,
    labelled_atoms,
    train_mace,
    train_options,
)
from database.documents import software_versions

if TYPE_CHECKING:
    from al_loop.campaign import CampaignSession

log = logging.getLogger(__name__)


def train_settings(session: CampaignSession) -> TrainSettings:
    """The trainer's settings from the campaign's ``committee`` section (same names)."""
    c = session.config.committee
    same = {f.name for f in dataclasses.fields(TrainSettings)} & set(type(c).model_fields)
    named = {name: getattr(c, name) for name in same}
    return TrainSettings(
        **named | {"device": resolve_device(c.device), "extra_args": dict(c.mace_args)}
    )


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


def foundation_spec(session: CampaignSession) -> dict[str, Any] | None:
    name = session.config.committee.foundation_model
    if name is None:
        return None
    path = Path(name)
    if path.is_file():
        return {"path": str(path), "sha256": sha256_of(path)}
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


def train_committee(
    session: CampaignSession, iteration: int, report: Callable[..., None]
) -> dict[str, Any]:
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
                    report(member=member, training_labels=len(splits[member][0]))
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
                    report(member=member, trained_in_s=wall)
        except BaseException:  # interrupted: start nothing more (running trainings finish)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if failure is not None:
        raise failure
    committee = load_committee(session, iteration, cfg.committee.dtype)
    fixed = held_out_slices(held_out, cfg.committee.held_out_fixed_after)[FIXED]
    held = errors(committee, fixed, cfg.committee.error_pressure_bins_GPa)
    ordered = [members[m] for m in sorted(members)]
    return {
        "models": len(ordered),
        "n_train": len(train),
        "n_held_out": len(held_out),
        "held_out": summary(held),  # the fixed held-out set (al_loop/committee.py)
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
    cache = model_cache(session, iteration, member)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(data)
    log.info("iteration %d member %d trained in %.0f s", iteration, member, wall)
    return doc


class TrainStage(Stage):
    name = "train"

    def compute(self, iteration: int) -> dict[str, Any]:
        selected = self.session.log.result(iteration, "select") if iteration else None
        if selected is not None and not selected["structure_ids"]:
            previous = self.session.log.result(iteration - 1, "train")
            if previous is None:
                raise RuntimeError(f"iteration {iteration}: no committee {iteration - 1} to reuse")
            log.warning("iteration %d selected nothing; the committee is kept", iteration)
            return {**previous, "reused_from": previous.get("reused_from", iteration - 1)}

        def report(**figures: Any) -> None:
            self.emit(iteration, "step", **figures)

        return train_committee(self.session, iteration, report)

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        out = {
            "training_labels": result["n_train"],
            "held_out_labels": result["n_held_out"],
            "fixed_held_out_force_rmse_eV_A": result["held_out"].get("force_rmse_eV_A"),
            "fixed_held_out_energy_rmse_meV_atom": result["held_out"].get("energy_rmse_meV_atom"),
        }
        if result.get("reused_from") is not None:
            out["reused_from"] = result["reused_from"]
        return out
