"""Train: fine-tune the committee on every ``ok`` label of the campaign (its current physics).

Members differ by seed and, by default, by a bootstrap resample of the training labels (their
out-of-bag labels validate them); the held-out labels (al_loop/committee.py) are never trained
on. Each member goes to the database (file in GridFS, provenance in ``models``) as soon as it is
trained, so a stopped stage resumes with the members still missing. An iteration that selected
nothing trains nothing: it reuses the previous committee.

With ``committee.queue`` (a GPU partition) each member still missing becomes a Firework
(launchers.tasks.TrainMemberTask, its job signed with this machine's model-signing key) of that
queue's category, and the stage submits jobs while they are READY and waits until every member
is stored (al_loop/stages/queue_jobs.py): a job cancelled or past its wall time has its member
trained again in a new one; a FIZZLED member, a queue refusing jobs, or jobs that end without
taking the Fireworks stop the stage unfinished with the reason (the next run reruns it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from al_loop.committee import (
    FIXED,
    committee_files,
    held_out_slices,
    labelled_structures,
    load_committee,
    sha256_of,
)
from al_loop.evaluation import errors, summary
from al_loop.stages.base import Stage
from al_loop.stages.queue_jobs import wait_on_queue
from calculators.models.committee import mace_calculator, resolve_device
from calculators.models.mace_train import TrainSettings, train_options
from calculators.models.member_training import (
    MemberJob,
    stored_member,
    train_member,
    usable_cores,
)

if TYPE_CHECKING:
    from al_loop.campaign import CampaignSession

log = logging.getLogger(__name__)


def train_settings(session: CampaignSession, resolve: bool = True) -> TrainSettings:
    """The trainer's settings from the campaign's ``committee`` section (same names); the
    device ``auto`` resolved here, or (``resolve`` false: training on a queue) where it
    trains."""
    c = session.config.committee
    same = {f.name for f in dataclasses.fields(TrainSettings)} & set(type(c).model_fields)
    named = {name: getattr(c, name) for name in same}
    device = resolve_device(c.device) if resolve else c.device
    return TrainSettings(**named | {"device": device, "extra_args": dict(c.mace_args)})


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
    cores = usable_cores()
    if c.parallel_trainings is not None:
        slots = c.parallel_trainings
    else:
        slots = 1 if device.startswith("cuda") else max(1, min(c.n_models, cores))
    return slots, (max(1, cores // slots) if device == "cpu" else None)


def member_jobs(
    session: CampaignSession, iteration: int, train: list[Atoms], settings: TrainSettings
) -> tuple[list[MemberJob], str]:
    """The jobs of the members of ``iteration`` (every one, stored or not) and their data key:
    the labels, settings, foundation and seed that make the committee."""
    cfg = session.config
    foundation = foundation_spec(session)
    replay = cfg.committee.replay_file
    seed = cfg.seed * 1000 + iteration
    label_ids = [a.info["label_id"] for a in train]
    # where it trains is not what it is: the device stays out (on a queue it is resolved there)
    trained_with = {k: v for k, v in settings.to_document().items() if k != "device"}
    data_key = hashlib.sha256(
        json.dumps([label_ids, trained_with, foundation, seed], default=str).encode()
    ).hexdigest()
    now = time.time()
    jobs = []
    for member in range(cfg.committee.n_models):
        train_idx, valid_idx = member_split(train, member, seed, cfg.committee.bootstrap)
        jobs.append(
            MemberJob(
                campaign=session.name,
                iteration=iteration,
                member=member,
                train_label_ids=[label_ids[i] for i in train_idx],
                valid_label_ids=[label_ids[i] for i in valid_idx],
                settings=settings.to_document(),
                seed=seed * 10 + member,
                data_key=data_key,
                foundation=cfg.committee.foundation_model,
                replay_file=str(replay) if replay else None,
                provenance={
                    "foundation": foundation,
                    "replay_file": str(replay) if replay else None,
                },
                submitted_at=now,
            )
        )
    return jobs, data_key


def train_committee(
    session: CampaignSession, iteration: int, report: Callable[..., None]
) -> dict[str, Any]:
    """Train (or finish training) the committee of ``iteration``; returns its metrics.

    Members train here, in parallel subprocesses, or with ``committee.queue`` as Fireworks in
    jobs of that queue (train_on_queue); each is stored as soon as it is
    trained, and one failure does not lose the others. Then every member is measured on its
    validation labels and on the held-out ones."""
    cfg = session.config
    queue = cfg.committee.queue
    settings = train_settings(session, resolve=queue is None)
    train, held_out = labelled_structures(session)
    if len(train) < 2:
        raise RuntimeError(
            f"campaign {session.name!r}, iteration {iteration}: {len(train)} ok labels to train "
            "on (2 needed); see `al-loop db query` for the failed ones"
        )
    jobs, data_key = member_jobs(session, iteration, train, settings)
    todo = [job for job in jobs if stored_member(session.store, job) is None]
    started = time.perf_counter()
    if queue is not None:
        slots = None
        unfinished = train_on_queue(session, iteration, todo, queue, report) if todo else None
        if unfinished is not None:
            return {"unfinished": unfinished, "queue": queue}
    else:
        slots = train_here(session, iteration, todo, settings, report)
    stored = {d["member"]: d for d in session.store.models(session.name, iteration)}
    if any(stored.get(job.member, {}).get("data_key") != data_key for job in jobs):
        raise RuntimeError(f"iteration {iteration}: members missing after training")
    members = {job.member: stored[job.member] for job in jobs}
    by_id = {a.info["label_id"]: a for a in train}
    files = dict(zip(sorted(members), committee_files(session, iteration), strict=True))
    for job in jobs:
        doc, path = members[job.member], files[job.member]
        if "metrics" not in doc:  # measured once, here, for members trained here or elsewhere
            single = mace_calculator(
                [path], resolve_device(cfg.committee.device), cfg.committee.dtype
            )
            valid = [by_id[i] for i in job.valid_label_ids]
            metrics = {
                "valid": summary(errors(single, valid)),
                "held_out": summary(errors(single, held_out)),
            }
            session.store.set_model_metrics(doc, metrics)
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
        "queue": queue,
    }


def train_here(
    session: CampaignSession,
    iteration: int,
    todo: list[MemberJob],
    settings: TrainSettings,
    report: Callable[..., None],
) -> int:
    """Train ``todo`` in this process, members in parallel subprocesses (threads here); each
    is stored as soon as it is trained, and one failure does not lose the others (the first
    error is raised once they are stored). Returns how many trained at once."""
    slots, threads = training_slots(session, settings.device)
    train_options()  # mace's parser, imported here: no worker redirects the process's stdout
    # a named foundation is downloaded by the first training that needs it: one alone, then
    # the others find it cached (mace writes the download in place: a parallel one may read it
    # half-written)
    named = "name" in (foundation_spec(session) or {})
    waves = [todo[:1], todo[1:]] if named else [todo]
    workdir = session.workdir / "training" / f"iter{iteration:03d}"

    def fit(job: MemberJob) -> dict[str, Any]:
        job = dataclasses.replace(
            job, provenance={**job.provenance, "parallel_trainings": slots, "threads": threads}
        )
        return train_member(session.store, job, workdir / f"member{job.member}", threads)

    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=slots) as pool:
        try:
            for wave in waves:
                futures = {}
                for job in wave:
                    report(member=job.member, training_labels=len(job.train_label_ids))
                    futures[pool.submit(fit, job)] = job.member
                for future in as_completed(futures):
                    member = futures[future]
                    try:
                        doc = future.result()
                    except Exception as exc:  # the others are still stored; raised after them
                        log.error("iteration %d member %d failed: %s", iteration, member, exc)
                        failure = failure or exc
                        continue
                    report(member=member, trained_in_s=doc["training_wall_s"])
        except BaseException:  # interrupted: start nothing more (running trainings finish)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    if failure is not None:
        raise failure
    return slots


def train_on_queue(
    session: CampaignSession,
    iteration: int,
    jobs: list[MemberJob],
    queue: str,
    report: Callable[..., Any],
) -> str | None:
    """Have ``jobs`` trained in jobs of ``queue``; None when every member is stored, else why
    the stage stops unfinished."""
    fw_ids = session.fireworks.submit_training(
        jobs, session.config.queue_category(queue), session.config.committee.n_models
    )
    report(queue=queue, training_fireworks=len(fw_ids))

    def missing() -> list[int]:
        return [job.member for job in jobs if stored_member(session.store, job) is None]

    return wait_on_queue(session, queue, fw_ids, missing, report)


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

    def complete(self, result: dict[str, Any]) -> bool:
        if result.get("unfinished"):
            log.warning("the committee is not trained: %s", result["unfinished"])
            return False
        return True

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        if result.get("unfinished"):
            return {"unfinished": result["unfinished"]}
        out = {
            "training_labels": result["n_train"],
            "held_out_labels": result["n_held_out"],
            "fixed_held_out_force_rmse_eV_A": result["held_out"].get("force_rmse_eV_A"),
            "fixed_held_out_energy_rmse_meV_atom": result["held_out"].get("energy_rmse_meV_atom"),
        }
        if result.get("reused_from") is not None:
            out["reused_from"] = result["reused_from"]
        return out
