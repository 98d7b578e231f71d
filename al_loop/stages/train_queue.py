"""The committee trained in jobs of an HPC queue (``committee.queue``: a GPU partition).

Each member not stored yet becomes a Firework (launchers.tasks.TrainMemberTask, its job signed
with this machine's model-signing key) of the queue's category; jobs are submitted while
Fireworks are READY (up to the queue's ``max_jobs``), and the stage waits until every member is
in the database. A job cancelled or past its wall time leaves its Firework RUNNING: it is
repaired and trained again in a new job (twice at most per run). The stage stops unfinished,
with the reason, when a training Firework FIZZLED (its error is shown; the next run reruns it),
when the queue refuses jobs, or when jobs end without taking the READY Fireworks.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from al_loop.stages.queue_jobs import POLL_S, RESUBMISSIONS, QueueListing
from calculators.models.member_training import MemberJob, stored_member

if TYPE_CHECKING:
    from al_loop.campaign import CampaignSession

log = logging.getLogger(__name__)


def train_on_queue(
    session: CampaignSession,
    iteration: int,
    jobs: list[MemberJob],
    queue: str,
    report: Callable[..., Any],
) -> str | None:
    """Have ``jobs`` trained in jobs of ``queue``; None when every member is stored, else why
    the stage stops unfinished."""
    fireworks, store = session.fireworks, session.store
    added = fireworks.submit_training(jobs, session.config.queue_category(queue))
    report(queue=queue, training_fireworks_added=added, members=len(jobs))
    listing = QueueListing(fireworks, queue)
    lost: collections.Counter[int] = collections.Counter()
    stuck_ready, said_waiting = -1, time.monotonic()
    while True:
        if session.lock is not None:
            session.lock.check()
        missing = [job.member for job in jobs if stored_member(store, job) is None]
        if not missing:
            return None
        failed = fireworks.failures(iteration, "train")
        if failed:
            return "training Fireworks failed: " + "; ".join(
                f"Firework {fw_id}: {error}" for fw_id, error in sorted(failed.items())
            )
        queued = listing.jobs()
        states = fireworks.states(iteration, "train")
        ready = states.get("READY", 0)
        if ready:
            if not queued and ready == stuck_ready:
                return (
                    f"jobs of queue {queue} ended and left {ready} training Fireworks READY; see "
                    f"their output in {fireworks.queue_dir(queue) / 'jobs'}"
                )
            submitted = fireworks.submit_to_queue(queue, ready)
            if submitted:
                stuck_ready = ready if not queued else -1
                report(queue=queue, jobs_submitted=len(submitted))
            elif not queued:
                return (
                    f"no job could be submitted to queue {queue} (FireWorks' log says why; the "
                    f"scripts are in {fireworks.queue_dir(queue) / 'jobs'})"
                )
        repaired, live = fireworks.sweep_runs()
        lost.update(repaired)
        if lost and max(lost.values()) > RESUBMISSIONS:
            fw_id, times = lost.most_common(1)[0]
            return (
                f"training Firework {fw_id} lost its job {times} times in this run (past its "
                "wall time? raise the queue's walltime)"
            )
        if repaired:
            stuck_ready = -1
            continue  # READY again: jobs for them first
        if not ready and not live and not queued and not fireworks.pending(states):
            return (
                f"the training Fireworks finished but members {missing} are not stored "
                "(deleted meanwhile?): run again"
            )
        if time.monotonic() - said_waiting > 60:
            said_waiting = time.monotonic()
            report(waiting_for_members=missing, queue_jobs=len(queued), fireworks=states)
        time.sleep(POLL_S)
