"""A campaign's log in the dataset: its registration, the record of every stage, how it ended.

One document per campaign in ``campaigns`` (its configuration, the physics its labels are
computed with, and the history of both), and one record per finished stage in ``metrics``,
keyed by (campaign, iteration, stage). A stage that has a record is done: running it again
returns the record. The database decides nothing here; :mod:`al_loop` does.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from database.documents import software_versions, utcnow
from database.store import Store


class CampaignLog:
    """The log of campaign ``name`` in ``store``."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name

    # -- the campaign document -------------------------------------------------------------
    def exists(self) -> bool:
        return self.store.db.campaigns.count_documents({"_id": self.name}, limit=1) > 0

    def document(self) -> dict[str, Any] | None:
        """The campaign's document (configuration, physics, histories, pointer), if any."""
        return self.store.db.campaigns.find_one({"_id": self.name})

    def register(
        self,
        config: dict[str, Any],
        config_hash: str,
        physics: dict[str, Any],
        physics_hash: str,
        elements: list[str],
    ) -> None:
        """Create the campaign's document, or record what changed since the last run: the old
        configuration goes to ``config_history``, old physics (of the campaign's ``elements``)
        to ``physics_history``."""
        now = utcnow()
        existing = self.document()
        if existing is None:
            with contextlib.suppress(DuplicateKeyError):  # another process registered it first
                self.store.db.campaigns.insert_one(
                    {
                        "_id": self.name,
                        "config": config,
                        "config_hash": config_hash,
                        "config_history": [],
                        "physics": physics,
                        "physics_hash": physics_hash,
                        "physics_history": [],
                        "elements": elements,
                        "iteration": 0,
                        "stage": "created",
                        "created_at": now,
                        "updated_at": now,
                        "software": software_versions(),
                    }
                )
            return
        update: dict[str, Any] = {"$set": {"updated_at": now}, "$push": {}}
        if existing["config_hash"] != config_hash:
            update["$set"] |= {"config": config, "config_hash": config_hash}
            update["$push"]["config_history"] = {
                "config": existing["config"],
                "config_hash": existing["config_hash"],
                "replaced_at": now,
            }
        if existing.get("physics_hash") != physics_hash:
            update["$set"] |= {"physics": physics, "physics_hash": physics_hash}
            update["$set"]["elements"] = elements
            update["$push"]["physics_history"] = {
                "physics": existing.get("physics"),
                "physics_hash": existing.get("physics_hash"),
                "elements": existing.get("elements"),
                "replaced_at": now,
            }
        if update["$push"]:
            self.store.db.campaigns.update_one({"_id": self.name}, update)

    # -- stage records -----------------------------------------------------------------------
    def stage(self, iteration: int, stage: str) -> dict[str, Any] | None:
        """The record of a finished stage (``result``, ``summary``, ``wall_s``), if it finished."""
        return self.store.db.metrics.find_one(
            {"campaign": self.name, "iteration": iteration, "stage": stage, "status": "done"}
        )

    def result(self, iteration: int, stage: str) -> dict[str, Any] | None:
        """The result of a finished stage, if it finished."""
        record = self.stage(iteration, stage)
        return None if record is None else record["result"]

    def record(
        self,
        iteration: int,
        stage: str,
        result: dict[str, Any],
        summary: dict[str, Any] | None = None,
        wall_s: float | None = None,
    ) -> None:
        """Mark a stage done with its result (and a short summary for ``status``), and move the
        campaign's pointer to it."""
        now = utcnow()
        self.store.db.metrics.update_one(
            {"campaign": self.name, "iteration": iteration, "stage": stage},
            {
                "$set": {
                    "status": "done",
                    "result": result,
                    "summary": summary or {},
                    "wall_s": wall_s,
                    "finished_at": now,
                    "software": software_versions(),
                }
            },
            upsert=True,
        )
        self.store.db.campaigns.update_one(
            {"_id": self.name},
            {"$set": {"iteration": iteration, "stage": stage, "updated_at": now}},
        )

    def records(self, stage: str | None = None) -> list[dict[str, Any]]:
        """Every finished stage's record (of one kind, if given), in the order they finished."""
        match: dict[str, Any] = {"campaign": self.name, "status": "done"}
        if stage is not None:
            match["stage"] = stage
        cursor = self.store.db.metrics.find(match)
        return list(cursor.sort([("iteration", ASCENDING), ("finished_at", ASCENDING)]))

    # -- the end ---------------------------------------------------------------------------
    def finish(self, iteration: int, reason: str) -> dict[str, Any]:
        """Record once why the campaign ended (``converged``, ``max_iterations``)."""
        done = self.result(iteration, "finished")
        if done is not None:
            return done
        result = {"reason": reason, "iteration": iteration}
        self.record(iteration, "finished", result, summary=result)
        self.store.db.campaigns.update_one({"_id": self.name}, {"$set": {"finished": result}})
        return result
