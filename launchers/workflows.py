"""Workflows of the campaign: labelling a selection of structures (one Firework per batch), and
training committee members on a queue (one Firework per member)."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fireworks import Firework, LaunchPad, Workflow

from calculators.models.member_training import MemberJob
from calculators.oracles import Oracle
from launchers.tasks import LabelStructuresTask, TrainMemberTask

log = logging.getLogger(__name__)


def label_workflows(
    structure_ids: list[str],
    campaign: str,
    iteration: int,
    oracle: Oracle,
    store_spec: dict[str, str],
    batch_size: int = 1,
    category: str | None = None,
    elements: Sequence[str] = (),
    claim_expiry_s: float | None = None,
) -> list[Workflow]:
    """One single-Firework workflow per batch of ``batch_size`` structures.

    Independent workflows, not one big one: FireWorks refreshes and locks a whole workflow on
    every state change, so one workflow of N Fireworks costs more per Firework as N grows
    (measured: 0.71 s per Firework at N = 200 against 0.48 s for single ones), and a launcher
    killed while holding the lock stalls every other Firework for FireWorks' 5-minute lock
    expiry. The oracle's resolved settings travel in the spec, so a label can be reproduced
    from its Firework alone, with the physics of the campaign's ``elements`` that each worker
    checks it computes; the dataset's URI and the commands a worker runs do not (workers find
    them in their own configuration: launchers.worker_env).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    commands = oracle.settings.command_fields  # a worker's own: never in a Firework
    settings = {k: v for k, v in oracle.settings.to_dict().items() if k not in commands}
    oracle_spec: dict[str, Any] = {"code": oracle.code, "settings": settings}
    if elements:  # workers check that they compute this physics (their own files included)
        oracle_spec |= {
            "elements": sorted(elements),
            "physics": oracle.physics_for(elements),
            "physics_hash": oracle.physics_hash_for(elements),
        }
    metadata = {
        "al_loop_campaign": campaign,
        "al_loop_iteration": iteration,
        "al_loop_stage": "label",
        "physics_hash": oracle.physics_hash_for(elements or ()),
    }
    workflows = []
    for start in range(0, len(structure_ids), batch_size):
        batch = structure_ids[start : start + batch_size]
        task = LabelStructuresTask(
            structure_ids=batch,
            campaign=campaign,
            iteration=iteration,
            oracle=oracle_spec,
            store=store_spec,
            job_id=uuid.uuid4().hex,
            **({} if claim_expiry_s is None else {"claim_expiry_s": claim_expiry_s}),
        )
        spec: dict[str, Any] = {
            "al_loop": {"campaign": campaign, "iteration": iteration, "stage": "label"}
        }
        if category:
            spec["_category"] = category
        name = f"label {campaign} it{iteration} {start // batch_size:04d}"
        firework = Firework([task], spec=spec, name=name)
        workflows.append(Workflow([firework], name=name, metadata=metadata))
    return workflows


def train_workflows(
    jobs: list[MemberJob], store_spec: dict[str, str], category: str | None
) -> list[Workflow]:
    """One single-Firework workflow per member (its job signed by this machine's key)."""
    workflows = []
    for job in jobs:
        identity = {"campaign": job.campaign, "iteration": job.iteration, "stage": "train"}
        spec: dict[str, Any] = {
            "al_loop": {**identity, "member": job.member, "data_key": job.data_key}
        }
        if category:
            spec["_category"] = category
        name = f"train {job.campaign} it{job.iteration} member{job.member}"
        signed = dataclasses.replace(job, store=dict(store_spec)).signed()
        task = TrainMemberTask(job=signed.to_dict())
        metadata = {
            "al_loop_campaign": job.campaign,
            "al_loop_iteration": job.iteration,
            "al_loop_stage": "train",
            "data_key": job.data_key,
        }
        workflows.append(
            Workflow([Firework([task], spec=spec, name=name)], name=name, metadata=metadata)
        )
    return workflows


def label_coverage(lp: LaunchPad, campaign: str, iteration: int, physics_hash: str) -> set[str]:
    """The structures that labelling Fireworks of this iteration and physics hold.

    A workflow without its Fireworks (the process that added them killed between FireWorks'
    insert of the workflows and that of the Fireworks) holds nothing: it is removed, so that
    its structures are submitted again."""
    match = {
        "metadata.al_loop_campaign": campaign,
        "metadata.al_loop_iteration": iteration,
        "metadata.al_loop_stage": "label",
        "metadata.physics_hash": physics_hash,
    }
    workflows = list(lp.workflows.find(match, {"nodes": 1}))
    nodes = [n for wf in workflows for n in wf.get("nodes", [])]
    covered: set[str] = set()
    present = set()
    fields = {"fw_id": 1, "spec._tasks.structure_ids": 1}
    wanted = set(nodes)
    # the iteration's Fireworks, matched to the workflows' nodes here: a long $in is slow
    mine = {"spec.al_loop.campaign": campaign, "spec.al_loop.iteration": iteration}
    for fw in lp.fireworks.find(mine, fields):
        if fw["fw_id"] not in wanted:
            continue
        present.add(fw["fw_id"])
        for task in fw["spec"].get("_tasks", []):
            covered.update(task.get("structure_ids", []))
    orphans = [wf["_id"] for wf in workflows if not set(wf.get("nodes", [])) & present]
    if orphans:
        lp.workflows.delete_many({"_id": {"$in": orphans}})
        log.warning(
            "removed %d labelling workflows of %s iteration %d that had no Fireworks (an "
            "interrupted submission); their structures are submitted again",
            len(orphans),
            campaign,
            iteration,
        )
    return covered


def workflow_states(
    lp: LaunchPad,
    campaign: str,
    iteration: int | None = None,
    stage: str | None = None,
    fw_ids: list[int] | None = None,
) -> dict[str, int]:
    """Counts of a campaign's Fireworks (of one iteration, one stage, those ``fw_ids``, if
    given) by state."""
    match: dict[str, Any] = {"spec.al_loop.campaign": campaign}
    if iteration is not None:
        match["spec.al_loop.iteration"] = iteration
    if stage is not None:
        match["spec.al_loop.stage"] = stage
    if fw_ids is not None:
        match["fw_id"] = {"$in": fw_ids}
    pipeline = [{"$match": match}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
    return {d["_id"]: d["n"] for d in lp.fireworks.aggregate(pipeline)}


def states_by_stage(lp: LaunchPad, campaign: str) -> dict[str, dict[str, int]]:
    """A campaign's Fireworks counted by stage (label, train, distil, ...) and state."""
    pipeline = [
        {"$match": {"spec.al_loop.campaign": campaign}},
        {"$group": {"_id": {"stage": "$spec.al_loop.stage", "state": "$state"}, "n": {"$sum": 1}}},
    ]
    out: dict[str, dict[str, int]] = {}
    for d in lp.fireworks.aggregate(pipeline):
        out.setdefault(str(d["_id"].get("stage")), {})[d["_id"]["state"]] = d["n"]
    return out
