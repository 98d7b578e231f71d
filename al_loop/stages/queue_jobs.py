"""Waiting on a queue: its jobs listed with patience (a slurmctld timeout is not the end of a
campaign), jobs submitted while Fireworks are READY, lost runs repaired (a Firework may lose its
launcher twice in one run), and a clear reason when the wait cannot end well."""

from __future__ import annotations

import collections
import logging
import subprocess
import time
from collections.abc import Callable, Sized
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from al_loop.campaign import CampaignSession
    from launchers import CampaignFireworks

log = logging.getLogger(__name__)

#: Seconds between two looks at Fireworks, claims and jobs while waiting for workers.
POLL_S = 5.0
#: Times a Firework may lose its launcher (or a structure be submitted again) in one run.
RESUBMISSIONS = 2


class QueueListing:
    """The campaign's jobs in one queue; a listing that fails counts as jobs still there,
    three times in a row at most (then RuntimeError)."""

    def __init__(self, fireworks: CampaignFireworks, queue: str) -> None:
        self.fireworks, self.queue = fireworks, queue
        self.failures = 0

    def jobs(self) -> dict[str, str]:
        try:
            jobs = self.fireworks.queue_jobs(self.queue)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            self.failures += 1
            if self.failures >= 3:
                raise RuntimeError(
                    f"queue {self.queue}: cannot list its jobs three times in a row ({exc}); is "
                    "this a login node of that queue?"
                ) from exc
            log.warning("queue %s: cannot list its jobs (%s); trying again", self.queue, exc)
            return {"unknown": "listing failed"}
        self.failures = 0
        return jobs


def feed_queue(
    fireworks: CampaignFireworks, queue: str, ready: int, queued: dict[str, str], stuck: int
) -> tuple[int, str | None, int]:
    """One look at ``queue`` with ``ready`` READY Fireworks and ``queued`` jobs listed: jobs
    submitted for them. Returns (the READY count to call stuck if no job takes them, why the
    wait cannot go on or None, jobs submitted). ``stuck``: that count from the last look (-1:
    none)."""
    if not ready:
        return stuck, None, 0
    where = fireworks.queue_dir(queue) / "jobs"
    if not queued and ready == stuck:
        return (
            stuck,
            f"jobs of queue {queue} ended and left {ready} Fireworks READY; see {where}",
            0,
        )
    submitted = fireworks.submit_to_queue(queue, ready, queued)
    if submitted:
        return (ready if not queued else -1), None, len(submitted)
    if not queued:  # refused by the queue (account, partition, limits)
        why = f"no job could be submitted to queue {queue} (FireWorks' log says why; see {where})"
        return stuck, why, 0
    return stuck, None, 0


def lost_too_often(lost: collections.Counter[int]) -> str | None:
    """Why to stop when a Firework lost its launcher more than RESUBMISSIONS times in this run
    (a job past its wall time, a node that kills it), else None."""
    if not lost or max(lost.values()) <= RESUBMISSIONS:
        return None
    fw_id, times = lost.most_common(1)[0]
    return (
        f"Firework {fw_id} lost its launcher {times} times in this run (a job past its wall "
        "time? raise the queue's walltime; a node that kills it?): fix the cause and run again"
    )


def wait_on_queue(
    session: CampaignSession,
    queue: str,
    fw_ids: list[int],
    missing: Callable[[], Sized],
    report: Callable[..., Any],
) -> str | None:
    """Keep jobs of ``queue`` coming while the Fireworks ``fw_ids`` are READY until
    ``missing()`` (what they still have to store) is empty: None. Else the reason the wait
    stops: one of them FIZZLED (its error), the queue refuses jobs, jobs ended and left them
    READY, one lost its job more than twice, or nothing is left to run."""
    fireworks = session.fireworks
    listing = QueueListing(fireworks, queue)
    lost: collections.Counter[int] = collections.Counter()
    stuck_ready, said_waiting = -1, time.monotonic()
    while True:
        if session.lock is not None:
            session.lock.check()
        left = missing()
        if not len(left):
            return None
        failed = fireworks.failures(fw_ids)
        if failed:
            return "Fireworks failed: " + "; ".join(
                f"Firework {fw_id}: {error}" for fw_id, error in sorted(failed.items())
            )
        queued = listing.jobs()
        states = fireworks.states(fw_ids=fw_ids)
        ready = states.get("READY", 0)
        stuck_ready, why, submitted = feed_queue(fireworks, queue, ready, queued, stuck_ready)
        if why is not None:
            return why
        if submitted:
            report(queue=queue, jobs_submitted=submitted)
        repaired, live = fireworks.sweep_runs()
        lost.update(repaired)
        why = lost_too_often(lost)
        if why is not None:
            return why
        if repaired:
            stuck_ready = -1
            continue  # READY again: jobs for them first
        if not ready and not live and not queued and not fireworks.pending(states):
            return f"Fireworks {fw_ids} finished but {left} is still missing: run again"
        if time.monotonic() - said_waiting > 60:
            said_waiting = time.monotonic()
            report(waiting_for=left, queue_jobs=len(queued), fireworks=states)
        time.sleep(POLL_S)
