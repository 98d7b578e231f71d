"""Label: the structures an iteration asked for, through FireWorks, labelled with the
campaign's oracle.

The stage submits a Firework for every structure that none holds yet (a submission cut short
between FireWorks' two inserts is completed), repairs what launchers that are gone left RUNNING
(a killed local launcher, a cancelled or timed-out queue job), runs local rockets while
Fireworks are READY, or with ``launcher.queue`` submits jobs to that queue (up to its
``max_jobs``), and waits while live launchers and jobs (of a run killed with ``kill -9``, or
another campaign's) still compute its structures. It is done only when no
Firework of the iteration needs a worker and every structure has a label with the current
physics that is not ``running``: ``ok``, or a failure with its reason. A structure whose
Fireworks ended without a label, or whose claim expired (its worker stopped beating: killed,
defused, lost on a cluster), is submitted again (twice at most per run).

It also labels every structure of the campaign that has no label with the current physics:
after an accepted physics change, the first label stage run again (its record holds the old
physics) labels the whole campaign anew.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from typing import Any

from al_loop.stages.base import Stage
from al_loop.stages.queue_jobs import (
    POLL_S,
    RESUBMISSIONS,
    QueueListing,
    feed_queue,
    lost_too_often,
)
from database.store import claim_expired

log = logging.getLogger(__name__)


class LabelStage(Stage):
    name = "label"

    def __init__(self, *args: Any, workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers

    def wanted(self, iteration: int) -> bool:
        """Iteration 0 labels its seeds; a later one only what it selected."""
        if iteration == 0:
            return True
        selected = self.session.log.result(iteration, "select")
        return bool(selected and selected["structure_ids"])

    def structure_ids(self, iteration: int) -> list[str]:
        """What the iteration asked for, then any structure of the campaign without a label
        with the current physics."""
        store, name = self.session.store, self.session.name
        asked = store.structure_ids(name, iteration)
        missing = store.unlabelled_structure_ids(name, self.session.label_hashes)
        return list(dict.fromkeys([*asked, *missing]))

    def compute(self, iteration: int) -> dict[str, Any]:
        session, launcher = self.session, self.session.config.launcher
        store, fireworks, hashes = session.store, session.fireworks, session.label_hashes
        ids = self.structure_ids(iteration)

        def submit(structure_ids: list[str], again: bool = False) -> int:
            return fireworks.submit_labels(
                structure_ids,
                iteration,
                session.oracle,
                session.elements,
                launcher.batch_size,
                launcher.claim_expiry_s,
                again=again,
            )

        added = submit(ids)
        repaired = fireworks.rerun_lost()
        self.emit(
            iteration,
            "step",
            structures=len(ids),
            fireworks=fireworks.states(iteration, self.name),
            submitted="now" if added else "before",
            repaired_lost_runs=len(repaired),
        )
        resubmitted: collections.Counter[str] = collections.Counter()
        stuck_ready = -1  # READY Fireworks that the last local launchers left (none took them)
        said_waiting = 0.0
        queued: dict[str, str] = {}
        listing = QueueListing(fireworks, launcher.queue) if launcher.queue is not None else None
        lost_runs: collections.Counter[int] = collections.Counter()
        while True:
            if session.lock is not None:  # taken over while we waited: stop here
                session.lock.check()
            ready = fireworks.ready(iteration, self.name)
            if listing is not None:
                queued = listing.jobs()
                stuck_ready, why, submitted = feed_queue(
                    fireworks, listing.queue, ready, queued, stuck_ready
                )
                if why is not None:
                    log.warning("%s", why)
                    break
                if submitted:
                    queued = listing.jobs()
                    self.emit(iteration, "step", queue=listing.queue, jobs_submitted=submitted)
            elif ready and ready != stuck_ready:
                workers = self.workers or launcher.workers
                self.emit(iteration, "step", local_launchers=workers, ready_fireworks=ready)
                codes = fireworks.run_local(workers)
                if any(codes):
                    log.warning(
                        "rocket launchers exited with codes %s; see %s", codes, fireworks.launch_dir
                    )
                left = fireworks.ready(iteration, self.name)
                stuck_ready = left if left == ready else -1
                continue
            repaired, live = fireworks.sweep_runs()
            lost_runs.update(repaired)
            why = lost_too_often(lost_runs)
            if why is not None:
                log.warning("%s", why)
                break
            if repaired:  # their Fireworks are READY again (or finished): launch them first
                stuck_ready = -1
                continue
            unfinished = self._unfinished(ids)
            if not unfinished:
                break
            in_flight = fireworks.pending_structures(iteration)
            now = session.store.server_now()
            again = [
                sid
                for sid, claim in unfinished.items()
                if sid not in in_flight
                and self._expired(claim, now)
                and resubmitted[sid] < RESUBMISSIONS
            ]
            if again:
                resubmitted.update(again)
                submit(again, again=True)
                self.emit(iteration, "step", submitted_again=len(again))
                stuck_ready = -1
                continue
            computing = [
                c for c in unfinished.values() if c is not None and not self._expired(c, now)
            ]
            if not live and not computing and not queued:
                break  # nothing here will change without a launcher: not done
            if time.monotonic() - said_waiting > 60:
                said_waiting = time.monotonic()
                self.emit(
                    iteration,
                    "step",
                    waiting_for_structures=len(computing),
                    running_fireworks=len(live),
                    queue_jobs=len(queued),
                )
            time.sleep(min(POLL_S, launcher.claim_expiry_s / 10))
        unfinished = self._unfinished(ids)
        return {
            "structures": len(ids),
            "fireworks": fireworks.states(iteration, self.name),
            "physics_hash": session.physics_hash,
            "labels_by_status": store.label_counts(ids, hashes),
            "unfinished": sorted(unfinished),
            "submitted_again": sum(resubmitted.values()),
        }

    def _unfinished(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """The structures without a label that is ``ok`` or a recorded failure, each with its
        running claim (None: no label at all)."""
        claims = self.session.store.label_claims(ids, self.session.label_hashes)
        return {
            sid: claims.get(sid)
            for sid in ids
            if sid not in claims or claims[sid]["status"] == "running"
        }

    def _expired(self, claim: dict[str, Any] | None, now: dt.datetime) -> bool:
        """Whether a running claim's worker stopped beating (no label at all counts too)."""
        expiry_s = self.session.config.launcher.claim_expiry_s
        return claim is None or claim_expired(claim, now, expiry_s)

    def current(self, result: dict[str, Any]) -> bool:
        return result.get("physics_hash") in self.session.label_hashes

    def complete(self, result: dict[str, Any]) -> bool:
        if self.session.fireworks.pending(result["fireworks"]):
            log.warning(
                "some labelling Fireworks are not finished (%s): run `al-loop launch` or "
                "`lpad detect_lostruns --rerun` and then `al-loop run` again",
                result["fireworks"],
            )
            return False
        if result.get("unfinished"):
            log.warning(
                "%d structures have no label yet (their Fireworks ended without one, or their "
                "claims are held elsewhere): run `al-loop run` again; first ids: %s",
                len(result["unfinished"]),
                [sid[:12] for sid in result["unfinished"][:5]],
            )
            return False
        return True

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        return {"labels": result["labels_by_status"], "fireworks": result["fireworks"]}

    def reuse(self, iteration: int, result: dict[str, Any]) -> dict[str, Any]:
        """What is true now (a rerun may have changed it), not the counts recorded then."""
        ids = self.session.store.structure_ids(self.session.name, iteration)
        return {
            **result,
            "fireworks": self.session.fireworks.states(iteration, self.name),
            "labels_by_status": self.session.store.label_counts(ids, self.session.label_hashes),
        }
