"""An open campaign: its configuration, dataset, log, oracle and Fireworks, in one session.

Opening a campaign registers it in its log (:class:`database.CampaignLog`). The physics of its
labels (the oracle's physics part, files hashed by content) is compared with the stored one:
a change would hide every earlier label from training, so it is refused unless the caller
accepts it, and then it is recorded in the log's ``physics_history``. Execution settings
(wall time, parallel command, paths) may change freely: labels keep their identity.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from al_loop.config import CampaignConfig
from calculators.oracles import Oracle, oracle_class
from calculators.oracles.settings import differences
from database import CampaignLock, CampaignLog, Store, open_store, resolve_uri
from launchers import CampaignFireworks, QueueSpec, fworker_env, process_env

log = logging.getLogger(__name__)


class CampaignNotFound(RuntimeError):
    """A command that reads a campaign found no dataset for it."""


class PhysicsChanged(ValueError):
    """The campaign file's label physics differs from the stored campaign's."""


@dataclass
class CampaignSession:
    """An open campaign: configuration, dataset, its log, and its Fireworks."""

    config: CampaignConfig
    store: Store
    workdir: Path
    fireworks: CampaignFireworks
    #: The lock this session holds (``open_campaign(..., lock=kind)``), if any.
    lock: CampaignLock | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @functools.cached_property
    def log(self) -> CampaignLog:
        return CampaignLog(self.store, self.name)

    @functools.cached_property
    def oracle(self) -> Oracle:
        """The campaign's oracle, from the settings resolved when the file was loaded."""
        return oracle_class(self.config.oracle.code)(self.config.oracle.settings)

    @property
    def elements(self) -> list[str]:
        return list(self.config.system.elements)

    @functools.cached_property
    def physics_hash(self) -> str:
        """The identity of the campaign's physics: the oracle's physics for its elements."""
        return self.oracle.physics_hash_for(self.elements)

    @functools.cached_property
    def label_hashes(self) -> list[str]:
        """Every identity a label of this campaign can have (one per subset of its elements:
        a structure's identity holds only its own elements' settings and files)."""
        return self.oracle.identity_hashes(self.elements)


@contextlib.contextmanager
def open_campaign(
    config: CampaignConfig,
    create: bool = True,
    accept_physics_change: bool = False,
    lock: str | None = None,
) -> Iterator[CampaignSession]:
    """Connect to the campaign's dataset (the embedded server if no URI) and register it.

    With ``create=False`` (commands that only read) nothing new is made: a campaign without a
    dataset raises :class:`CampaignNotFound` naming where it looked. A changed label physics
    raises :class:`PhysicsChanged` unless ``accept_physics_change``. With ``lock`` (``run``,
    ``distil``, ...) the session holds that lock of the campaign (database/campaign_lock.py)
    or raises :class:`database.CampaignLocked` before anything is registered.
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
        campaign_log = CampaignLog(store, config.name)
        if not create and not campaign_log.exists():
            raise CampaignNotFound(
                f"campaign {config.name!r} is not in database {store_cfg.database!r}: run {where}"
            )
        fireworks = CampaignFireworks(
            campaign=config.name,
            uri=store.uri or "",
            launchpad_database=store_cfg.launchpad_database,
            workdir=workdir,
            store_spec={
                "database": store.database_name,
                "launchpad_database": store_cfg.launchpad_database,
            },
            fworker_name=config.launcher.fworker_name,
            category=config.labelling_category(),
            fworker_env=fworker_env(
                uri=store_cfg.uri,
                uri_file=store_cfg.uri_file,
                uri_env=store_cfg.uri_env,
                data_dir=workdir / "db" if embedded else None,
                execution=local_commands(config),
            ),
            process_env=process_env(store_cfg.uri_env),
            uri_file=store_cfg.uri_file,
            uri_env=store_cfg.uri_env,
            queues=queue_specs(config),
        )
        session = CampaignSession(config, store, workdir, fireworks)
        with contextlib.ExitStack() as held:
            if lock is not None:
                session.lock = held.enter_context(CampaignLock(store, config.name, lock))
            if create:
                register(session, accept_physics_change)
            yield session


def queue_specs(config: CampaignConfig) -> dict[str, QueueSpec]:
    """The campaign file's queues, as launchers.queues takes them."""
    return {
        name: QueueSpec(
            name=name,
            category=config.queue_category(name),
            **queue.model_dump(exclude={"category", "modules", "pre_rocket"}),
            modules=tuple(queue.modules),
            pre_rocket=tuple(queue.pre_rocket),
        )
        for name, queue in config.queues.items()
    }


def local_commands(config: CampaignConfig) -> dict[str, dict[str, object]]:
    """The commands the campaign's own (local) workers run, from the campaign file: they go to
    the local FWorker's ``al_loop_execution``, never into a Firework."""
    settings = config.oracle.settings
    commands = {k: v for k, v in settings.to_dict().items() if k in settings.command_fields}
    return {config.oracle.code: commands} if commands else {}


def register(session: CampaignSession, accept_physics_change: bool = False) -> None:
    """Record the campaign in its log; refuse a change of label physics unless accepted.

    The physics compared is that of the elements the campaign had: adding an element keeps
    every earlier label valid."""
    config, oracle = session.config, session.oracle
    stored = session.log.document()
    changed = []
    if stored is not None and stored.get("physics") is not None:
        before = stored["physics"]
        changed = differences(before, oracle.physics_for(stored["elements"]))
    if changed:
        summary = ", ".join(changed)
        if not accept_physics_change:
            raise PhysicsChanged(
                f"{config.source_file or config.name}: oracle: the physics of the labels of "
                f"campaign {config.name!r} changed since the last run ({summary}): its earlier "
                "labels would not train the committee any more. Undo the change, or start a "
                "new campaign (another name), or run again with --accept-physics-change to go "
                "on with new labels (recorded in the campaign's physics_history)"
            )
        log.warning(
            "campaign %s: label physics changed (%s), accepted; earlier labels stay in the "
            "database and every structure is labelled again with the new physics",
            config.name,
            summary,
        )
    elif stored is not None and stored.get("config_hash") != config.config_hash():
        log.warning(
            "campaign %s: the campaign file changed since the last run (physics unchanged); "
            "the new one is used and the old one kept in config_history",
            config.name,
        )
    session.log.register(
        config.to_document(),
        config.config_hash(),
        oracle.physics_for(session.elements),
        session.physics_hash,
        session.elements,
    )
