"""Workflows that label a selection of structures, one Firework per batch."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fireworks import Firework, LaunchPad, Workflow

from calculators import Oracle
from launchers.tasks import LabelStructuresTask

log = logging.getLogger(__name__)


def label_workflow(structure_ids: list[str], campaign: str, iteration: int, oracle: Oracle,
                   store_spec: dict[str, str], batch_size: int = 1,
                   category: str | None = None) -> Workflow:
    """A workflow of independent Fireworks, each labelling ``batch_size`` structures.

    The oracle's resolved settings travel in the spec, so a label can be reproduced from the
    Firework alone; the dataset's URI does not (workers find it, see ``store_access``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fireworks = []
    oracle_spec = {"code": oracle.code, "settings": oracle.settings}
    for start in range(0, len(structure_ids), batch_size):
        batch = structure_ids[start:start + batch_size]
        task = LabelStructuresTask(structure_ids=batch, campaign=campaign, iteration=iteration,
                                   oracle=oracle_spec, store=store_spec,
                                   job_id=uuid.uuid4().hex)
        spec: dict[str, Any] = {"al_loop": {"campaign": campaign, "iteration": iteration,
                                            "stage": "label"}}
        if category:
            spec["_category"] = category
        name = f"label {campaign} it{iteration} {start // batch_size:04d}"
        fireworks.append(Firework([task], spec=spec, name=name))
    metadata = {"al_loop_campaign": campaign, "al_loop_iteration": iteration,
                "al_loop_stage": "label", "settings_hash": oracle.settings_hash}
    return Workflow(fireworks, name=f"label {campaign} iteration {iteration}", metadata=metadata)


def find_label_workflow(lp: LaunchPad, campaign: str, iteration: int,
                        settings_hash: str) -> int | None:
    """The fw_id of an existing labelling workflow for this iteration and settings, if any."""
    doc = lp.workflows.find_one({"metadata.al_loop_campaign": campaign,
                                 "metadata.al_loop_iteration": iteration,
                                 "metadata.al_loop_stage": "label",
                                 "metadata.settings_hash": settings_hash}, {"nodes": 1})
    return doc["nodes"][0] if doc and doc.get("nodes") else None


def submit_label_workflow(lp: LaunchPad, structure_ids: list[str], campaign: str, iteration: int,
                          oracle: Oracle, store_spec: dict[str, str], batch_size: int = 1,
                          category: str | None = None) -> tuple[int, bool]:
    """Add the labelling workflow unless it exists (idempotent); returns (fw_id, added)."""
    existing = find_label_workflow(lp, campaign, iteration, oracle.settings_hash)
    if existing is not None:
        log.info("labelling workflow for %s iteration %d exists (fw %d)", campaign, iteration,
                 existing)
        return existing, False
    wf = label_workflow(structure_ids, campaign, iteration, oracle, store_spec, batch_size,
                        category)
    id_map = lp.add_wf(wf)
    log.info("added %d labelling Fireworks for %s iteration %d", len(wf.fws), campaign,
             iteration)
    return min(id_map.values()), True


def workflow_states(lp: LaunchPad, campaign: str, iteration: int) -> dict[str, int]:
    """Counts of the labelling Fireworks of an iteration by FireWorks state."""
    pipeline = [{"$match": {"spec.al_loop.campaign": campaign,
                            "spec.al_loop.iteration": iteration}},
                {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
    return {d["_id"]: d["n"] for d in lp.fireworks.aggregate(pipeline)}
