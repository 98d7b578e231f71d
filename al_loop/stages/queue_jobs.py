"""What the stages that wait on a queue share: its jobs listed with patience (a slurmctld
timeout is not the end of a campaign), how often they look, and how often a Firework may lose
its launcher in one run before they stop."""

from __future__ import annotations

import logging
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
