"""The campaign session, its state in MongoDB, and the first stages (seed, label).

Every stage is keyed by (campaign, iteration, stage) in the ``metrics`` collection; running a
stage that is recorded as done does nothing, so a campaign resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fireworks import LaunchPad
from pymongo.errors import DuplicateKeyError

from al_loop.config import CampaignConfig
from al_loop.seeds import file_seeds, lattice_seeds
from calculators.oracles import Oracle, make_oracle
from database import Store, open_store, resolve_uri
from database.documents import software_versions, utcnow
from launchers import (
    fworker_env,
    make_fworker,
    make_launchpad,
    rerun_lost_local_runs,
    run_workers,
    submit_label_workflow,
    workflow_states,
    write_fworker_file,
    write_launchpad_file,
)

log = logging.getLogger(__name__)

#: FireWorks states after which a Firework needs nothing more from a worker.
TERMINAL_STATES = ("COMPLETED", "FIZZLED", "DEFUSED", "PAUSED")

Progress = Callable[[str, dict[str, Any]], None]


def _quiet(stage: str, info: dict[str, Any]) -> None:
    log.info("%s: %s", stage, info)


@dataclass
class CampaignSession:
    """An open campaign: configuration, dataset, LaunchPad and the files its workers read."""

    config: CampaignConfig
    store: Store
    workdir: Path
    launchpad_file: Path
    fworker_file: Path

    @property
    def name(self) -> str:
        return self.config.name

    @functools.cached_property
    def launchpad(self) -> LaunchPad:
        return make_launchpad(self.store.uri or "", self.config.store.launchpad_database)

    def worker_env(self) -> dict[str, str]:
        """Environment of local rocket launchers (the URI when it comes from a variable)."""
        uri_env = self.config.store.uri_env
        return {"AL_LOOP_STORE_URI": os.environ[uri_env]} if uri_env else {}

    def oracle(self) -> Oracle:
        spec = self.config.oracle
        return make_oracle(spec.code, spec.preset, spec.overrides)

    def store_spec(self) -> dict[str, str]:
        return {
            "database": self.store.database_name,
            "launchpad_database": self.config.store.launchpad_database,
        }


class CampaignNotFound(RuntimeError):
    """A command that reads a campaign found no dataset for it."""


@contextlib.contextmanager
def open_campaign(config: CampaignConfig, create: bool = True) -> Iterator[CampaignSession]:
    """Connect to the campaign's dataset (embedded server if no URI) and register it.

    With ``create=False`` (commands that only read) nothing new is made: a campaign without a
    dataset raises :class:`CampaignNotFound` naming where it looked.
    """
    workdir = config.resolved_workdir()
    store_cfg = config.store
    uri = resolve_uri(store_cfg.uri, store_cfg.uri_file, store_cfg.uri_env)  # fails early
    embedded = uri is None
    where = f"`al-loop run {config.source_file or config.name}` first, or set workdir"
    if not create and embedded and not (workdir / "db" / "wiredtiger").exists():
        raise CampaignNotFound(
            f"no dataset of campaign {config.name!r} in {workdir / 'db'}: run {where}"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    with open_store(
        store_cfg.database, workdir / "db", uri=uri, launchpad_database=store_cfg.launchpad_database
    ) as store:
        if not create and store.db.campaigns.count_documents({"_id": config.name}) == 0:
            raise CampaignNotFound(
                f"campaign {config.name!r} is not in database {store_cfg.database!r}: run {where}"
            )
        env = fworker_env(
            data_dir=workdir / "db" if embedded else None, uri_file=store_cfg.uri_file
        )
        if store_cfg.uri and not env:
            env["al_loop_store_uri"] = store_cfg.uri  # validated: holds no password
        fworker = make_fworker(
            config.launcher.fworker_name, config.launcher.category, env, campaign=config.name
        )
        session = CampaignSession(
            config=config,
            store=store,
            workdir=workdir,
            launchpad_file=write_launchpad_file(
                workdir / "my_launchpad.yaml", store.uri or "", store_cfg.launchpad_database
            ),
            fworker_file=write_fworker_file(workdir / "my_fworker.yaml", fworker),
        )
        if create:
            register_campaign(store, config)
        yield session


def register_campaign(store: Store, config: CampaignConfig) -> None:
    """Create the campaign document, or record a changed configuration in its history."""
    now = utcnow()
    document = config.to_document()
    digest = config.config_hash()
    existing = store.db.campaigns.find_one({"_id": config.name}, {"config_hash": 1})
    if existing is None:
        with contextlib.suppress(DuplicateKeyError):
            store.db.campaigns.insert_one(
                {
                    "_id": config.name,
                    "config": document,
                    "config_hash": digest,
                    "config_history": [],
                    "iteration": 0,
                    "stage": "created",
                    "created_at": now,
                    "updated_at": now,
                    "software": software_versions(),
                }
            )
        return
    if existing["config_hash"] != digest:
        log.warning(
            "campaign %s: the configuration changed since the last run; the new one is "
            "used and the old one kept in config_history",
            config.name,
        )
        old = store.db.campaigns.find_one({"_id": config.name}, {"config": 1, "config_hash": 1})
        store.db.campaigns.update_one(
            {"_id": config.name},
            {
                "$set": {"config": document, "config_hash": digest, "updated_at": now},
                "$push": {
                    "config_history": {
                        "config": old["config"],
                        "config_hash": old["config_hash"],
                        "replaced_at": now,
                    }
                },
            },
        )


def stage_record(store: Store, campaign: str, iteration: int, stage: str) -> dict | None:
    """The record of a finished stage, if it finished."""
    return store.db.metrics.find_one(
        {"campaign": campaign, "iteration": iteration, "stage": stage, "status": "done"}
    )


def record_stage(
    store: Store, campaign: str, iteration: int, stage: str, result: dict[str, Any]
) -> None:
    """Mark a stage done with its result, and move the campaign's pointer to it."""
    now = utcnow()
    store.db.metrics.update_one(
        {"campaign": campaign, "iteration": iteration, "stage": stage},
        {
            "$set": {
                "status": "done",
                "result": result,
                "finished_at": now,
                "software": software_versions(),
            }
        },
        upsert=True,
    )
    store.db.campaigns.update_one(
        {"_id": campaign}, {"$set": {"iteration": iteration, "stage": stage, "updated_at": now}}
    )


def seed_stage(session: CampaignSession) -> list[str]:
    """Iteration 0's structures: generated seeds and user files, stored before anything runs."""
    store, cfg = session.store, session.config
    done = stage_record(store, session.name, 0, "seed")
    if done:
        return store.structure_ids(session.name, 0)
    seeds = lattice_seeds(
        cfg.system.elements,
        cfg.seeds.prototypes,
        cfg.seeds.n_structures,
        cfg.seeds.max_atoms,
        cfg.seeds.rattle_A,
        cfg.seeds.volume_scale_range,
        seed=cfg.seed,
    )
    seeds += file_seeds(cfg.seeds.files, cfg.system.elements)
    ids = [store.add_structure(s.atoms, session.name, 0, s.source) for s in seeds]
    unique = list(dict.fromkeys(ids))
    record_stage(store, session.name, 0, "seed", {"structures": len(unique)})
    log.info("stored %d seed structures", len(unique))
    return unique


def label_stage(
    session: CampaignSession,
    iteration: int,
    structure_ids: list[str],
    workers: int | None = None,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Label ``structure_ids`` through FireWorks: submit (once), run local rockets, report."""
    store, cfg = session.store, session.config
    oracle = session.oracle()
    lp = session.launchpad
    done = stage_record(store, session.name, iteration, "label")
    if done:  # report what is true now (a rerun may have changed it), not the stored counts
        return {
            **done["result"],
            "fireworks": workflow_states(lp, session.name, iteration),
            "labels_by_status": _label_counts(store, structure_ids, oracle.settings_hash),
        }
    _fw_id, added = submit_label_workflow(
        lp,
        structure_ids,
        session.name,
        iteration,
        oracle,
        session.store_spec(),
        cfg.launcher.batch_size,
        cfg.launcher.category,
    )
    recovered = rerun_lost_local_runs(lp, session.name, session.workdir / "launches")
    states = workflow_states(lp, session.name, iteration)
    progress(
        "label",
        {
            "fireworks": sum(states.values()),
            "states": states,
            "added": added,
            "recovered": recovered,
        },
    )
    pending = sum(n for state, n in states.items() if state not in TERMINAL_STATES)
    if pending:
        n_workers = workers or cfg.launcher.workers
        progress("launch", {"workers": n_workers, "pending": pending})
        codes = run_workers(
            session.launchpad_file,
            session.fworker_file,
            session.workdir / "launches",
            n_workers,
            env=session.worker_env(),
        )
        if any(codes):
            log.warning(
                "rocket launchers exited with codes %s; see %s", codes, session.workdir / "launches"
            )
        states = workflow_states(lp, session.name, iteration)
    result = {
        "fireworks": states,
        "settings_hash": oracle.settings_hash,
        "labels_by_status": _label_counts(store, structure_ids, oracle.settings_hash),
    }
    progress("labelled", result)
    if all(state in TERMINAL_STATES for state in states):
        record_stage(store, session.name, iteration, "label", result)
    else:
        log.warning(
            "some labelling Fireworks are not finished (%s): run `al-loop launch` or "
            "`lpad detect_lostruns --rerun` and then `al-loop run` again",
            states,
        )
    return result


def _label_counts(store: Store, structure_ids: list[str], settings_hash: str) -> dict[str, int]:
    pipeline = [
        {"$match": {"structure_id": {"$in": structure_ids}, "settings_hash": settings_hash}},
        {"$group": {"_id": "$status", "n": {"$sum": 1}}},
    ]
    counts = {d["_id"]: d["n"] for d in store.db.labels.aggregate(pipeline)}
    missing = len(set(structure_ids)) - sum(counts.values())
    if missing:
        counts["unlabelled"] = missing
    return counts
