"""A campaign's Fireworks: the one door from the campaign to FireWorks.

:class:`CampaignFireworks` writes the files FireWorks' own tools read (``my_launchpad.yaml``,
``my_fworker.yaml``), submits labelling workflows, counts Fireworks by state, repairs what a
stopped local launcher left behind, reruns FIZZLED Fireworks and runs local rockets. The
campaign (:mod:`al_loop`) never imports FireWorks.
"""

from __future__ import annotations

import functools
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fireworks import FWorker, LaunchPad
from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

from calculators.models.member_training import MemberJob
from calculators.oracles import Oracle
from launchers.campaign_commands import CommandJob, command_workflow
from launchers.launchpad import (
    make_fworker,
    make_launchpad,
    write_fworker_file,
    write_launchpad_file,
    write_qadapter_file,
)
from launchers.queues import (
    WAITING_STATES,
    QueueSpec,
    make_qadapter,
    queue_jobs,
    queue_runs,
    submit_jobs,
)
from launchers.rockets import LocalRun, local_runs, repair_lost_runs, run_workers
from launchers.workflows import (
    label_coverage,
    label_workflows,
    states_by_stage,
    train_workflows,
    workflow_states,
)

log = logging.getLogger(__name__)

#: FireWorks states after which a Firework needs nothing more from a worker.
TERMINAL_STATES = ("COMPLETED", "FIZZLED", "DEFUSED", "PAUSED")


@dataclass
class CampaignFireworks:
    """The Fireworks of campaign ``campaign`` on the LaunchPad database ``launchpad_database``
    of the server at ``uri``; local launchers work under ``workdir/launches``."""

    campaign: str
    uri: str
    launchpad_database: str
    workdir: Path
    store_spec: dict[str, str]
    fworker_name: str = "al-loop-local"
    category: str | None = None
    fworker_env: dict[str, Any] = field(default_factory=dict)
    #: Variables of local launcher processes (the URI when it comes from a variable).
    process_env: dict[str, str] = field(default_factory=dict)
    #: Where the URI comes from, written in ``my_launchpad.yaml`` instead of its password.
    uri_file: Path | None = None
    uri_env: str | None = None
    #: The campaign's HPC queues by name.
    queues: dict[str, QueueSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.launchpad_file = write_launchpad_file(
            self.workdir / "my_launchpad.yaml",
            self.uri,
            self.launchpad_database,
            uri_file=self.uri_file,
            uri_env=self.uri_env,
        )
        fworker = make_fworker(
            self.fworker_name,
            self.category,
            self.fworker_env,
            campaign=self.campaign,
            stage="label",  # training Fireworks are for their queue's jobs (committee.queue)
        )
        self.fworker_file = write_fworker_file(self.workdir / "my_fworker.yaml", fworker)

    @property
    def launch_dir(self) -> Path:
        return self.workdir / "launches"

    @functools.cached_property
    def launchpad(self) -> LaunchPad:
        return make_launchpad(self.uri, self.launchpad_database)

    def submit_labels(
        self,
        structure_ids: list[str],
        iteration: int,
        oracle: Oracle,
        elements: list[str],
        batch_size: int,
        claim_expiry_s: float | None = None,
        again: bool = False,
    ) -> int:
        """Add labelling Fireworks of ``iteration`` for those of ``structure_ids`` that none
        holds yet (all of them ``again``: their Fireworks ended without a label); returns how
        many structures were submitted."""
        if not again:
            physics_hash = oracle.physics_hash_for(elements)
            covered = label_coverage(self.launchpad, self.campaign, iteration, physics_hash)
            structure_ids = [sid for sid in structure_ids if sid not in covered]
        if not structure_ids:
            return 0
        workflows = label_workflows(
            structure_ids,
            self.campaign,
            iteration,
            oracle,
            self.store_spec,
            batch_size,
            self.category,
            elements,
            claim_expiry_s,
        )
        self.launchpad.bulk_add_wfs(workflows)
        log.info(
            "added %d labelling Fireworks (%d structures) for %s iteration %d",
            len(workflows),
            len(structure_ids),
            self.campaign,
            iteration,
        )
        return len(structure_ids)

    def states(
        self,
        iteration: int | None = None,
        stage: str | None = None,
        fw_ids: list[int] | None = None,
    ) -> dict[str, int]:
        """The campaign's Fireworks (of one iteration, one stage, those ``fw_ids``) counted by
        FireWorks state."""
        return workflow_states(self.launchpad, self.campaign, iteration, stage, fw_ids)

    def states_by_stage(self) -> dict[str, dict[str, int]]:
        """The campaign's Fireworks counted by stage and state."""
        return states_by_stage(self.launchpad, self.campaign)

    @staticmethod
    def pending(states: dict[str, int]) -> int:
        """How many of ``states`` still need a worker."""
        return sum(n for state, n in states.items() if state not in TERMINAL_STATES)

    def pending_structures(self, iteration: int) -> set[str]:
        """The structures held by Fireworks of ``iteration`` that still need a worker."""
        held: set[str] = set()
        for fw in self.launchpad.fireworks.find(
            {
                "spec.al_loop.campaign": self.campaign,
                "spec.al_loop.iteration": iteration,
                "state": {"$nin": list(TERMINAL_STATES)},
            },
            {"spec._tasks.structure_ids": 1},
        ):
            for task in fw["spec"].get("_tasks", []):
                held.update(task.get("structure_ids", []))
        return held

    def ready(self, iteration: int | None = None, stage: str | None = None) -> int:
        """How many of the campaign's Fireworks (of one iteration, one stage) a launcher can
        take now."""
        return self.states(iteration, stage).get("READY", 0)

    def ready_for(self, category: str | None) -> int:
        """How many of the campaign's Fireworks of ``category`` are READY (the jobs of a
        queue take its category only)."""
        match = {"spec.al_loop.campaign": self.campaign, "state": "READY"}
        return self.launchpad.fireworks.count_documents({**match, "spec._category": category})

    def submit_training(
        self, jobs: list[MemberJob], category: str | None, n_models: int
    ) -> list[int]:
        """Add a training Firework (category ``category``) for each of ``jobs`` (members not
        stored yet, of one iteration and data key) that no Firework holds; one that FIZZLED,
        or COMPLETED without its member stored, is rerun. Unfinished Fireworks of the
        iteration's members with another data key (older labels or settings), or beyond
        ``n_models``, are defused (one already training stores nothing over a newer member:
        member_training.train_member). Returns the ids of the Fireworks that train ``jobs``."""
        if not jobs:
            return []
        iteration, data_key = jobs[0].iteration, jobs[0].data_key
        match = {
            "spec.al_loop.campaign": self.campaign,
            "spec.al_loop.iteration": iteration,
            "spec.al_loop.stage": "train",
        }
        wanted = {job.member for job in jobs}
        held: dict[int, int] = {}  # member -> fw_id
        for fw in self.launchpad.fireworks.find(match, {"fw_id": 1, "state": 1, "spec.al_loop": 1}):
            member, state = fw["spec"]["al_loop"]["member"], fw["state"]
            if fw["spec"]["al_loop"]["data_key"] != data_key or member >= n_models:
                if state not in TERMINAL_STATES:
                    self.launchpad.defuse_fw(fw["fw_id"])
                    log.info("defused training Firework %d (superseded)", fw["fw_id"])
                continue
            if member not in wanted or member in held:
                continue
            if state in ("FIZZLED", "COMPLETED"):
                self.launchpad.rerun_fw(fw["fw_id"])
                log.info("training Firework %d (%s) runs again", fw["fw_id"], state)
            elif state in ("DEFUSED", "PAUSED"):
                continue  # someone stopped it: a new one is added
            held[member] = fw["fw_id"]
        new = [job for job in jobs if job.member not in held]
        if new:
            workflows = train_workflows(new, self.store_spec, category)
            self.launchpad.bulk_add_wfs(workflows)
            held |= {job.member: wf.fws[0].fw_id for job, wf in zip(new, workflows, strict=True)}
            log.info(
                "added %d training Fireworks for %s iteration %d",
                len(new),
                self.campaign,
                iteration,
            )
        return sorted(held.values())

    def submit_command(self, job: CommandJob, category: str | None) -> tuple[int, str]:
        """A Firework running ``job`` (``al-loop distil ...`` on a queue): the one of the same
        command on the same campaign file if there is one (a FIZZLED one is rerun), else a new
        one. Returns its fw_id and what was done (``added``, ``rerun``, ``waiting``,
        ``completed before``)."""
        match = {"spec.al_loop.campaign": self.campaign, "spec.al_loop.command_key": job.key}
        for fw in self.launchpad.fireworks.find(match, {"fw_id": 1, "state": 1}):
            if fw["state"] == "FIZZLED":
                self.launchpad.rerun_fw(fw["fw_id"])
                return fw["fw_id"], "rerun"
            if fw["state"] == "COMPLETED":
                return fw["fw_id"], "completed before"
            if fw["state"] not in TERMINAL_STATES:
                return fw["fw_id"], "waiting"
        workflow = command_workflow(job, category)
        self.launchpad.bulk_add_wfs([workflow])
        return workflow.fws[0].fw_id, "added"

    def failures(self, fw_ids: list[int]) -> dict[int, str]:
        """Those of ``fw_ids`` that FIZZLED: fw_id -> the last line of the error their last
        launch raised, and where it ran."""
        match = {"fw_id": {"$in": fw_ids}, "state": "FIZZLED"}
        found = {}
        for fw in self.launchpad.fireworks.find(match, {"fw_id": 1, "launches": 1}):
            launch = self.launchpad.launches.find_one(
                {"launch_id": {"$in": fw.get("launches", [])}},
                {"action": 1, "launch_dir": 1},
                sort=[("launch_id", -1)],
            )
            launch = launch or {}
            stored = (launch.get("action") or {}).get("stored_data") or {}
            trace = stored.get("_exception", {}).get("_stacktrace", "")
            lines = [line for line in trace.strip().splitlines() if line.strip()]
            error = lines[-1] if lines else "no error recorded"
            found[fw["fw_id"]] = f"{error} (in {launch.get('launch_dir')})"
        return found

    def sweep_runs(self) -> tuple[list[int], list[int]]:
        """Look once at the Fireworks that launchers are running: local ones of this host (a
        run killed with ``kill -9`` leaves its launchers working) and the campaign's queue
        jobs. Repair those whose launcher is gone (a stopped local launcher, a cancelled or
        timed-out job; lost only if no root sees it alive); returns (repaired, still running):
        wait for the second, never run them again."""
        runs = local_runs(self.launchpad, self.campaign, self.launch_dir) + self._queue_runs()
        alive = {r.fw_id for r in runs if r.alive}
        lost = {r.fw_id: (r.fw_id, r.launch_id, r.launch_state) for r in runs if not r.alive}
        chosen = [run for fw_id, run in lost.items() if fw_id not in alive]
        return repair_lost_runs(self.launchpad, self.campaign, chosen), sorted(alive)

    def rerun_lost(self) -> list[int]:
        """Repair the Fireworks whose launcher is gone (:meth:`sweep_runs`); their ids."""
        return self.sweep_runs()[0]

    def rerun_fizzled(self) -> list[int]:
        """Rerun the campaign's FIZZLED Fireworks (a rerun labels only what is not ``ok``)."""
        fizzled = [
            d["fw_id"]
            for d in self.launchpad.fireworks.find(
                {"spec.al_loop.campaign": self.campaign, "state": "FIZZLED"}, {"fw_id": 1}
            )
        ]
        for fw_id in fizzled:
            self.launchpad.rerun_fw(fw_id)
        return fizzled

    # -- queues ------------------------------------------------------------------------------
    def queue_dir(self, name: str) -> Path:
        return self.workdir / "queues" / name

    def queue_files(self, name: str) -> tuple[FWorker, CommonAdapter]:
        """The FWorker and queue adapter of queue ``name``; their files are written to its
        folder too (``my_fworker.yaml``, ``my_qadapter.yaml``: FireWorks' ``qlaunch`` reads
        them)."""
        spec = self.queues[name]
        fworker = make_fworker(
            f"{self.fworker_name}-{name}", spec.category, self.fworker_env, campaign=self.campaign
        )
        folder = self.queue_dir(name)
        fworker_file = write_fworker_file(folder / "my_fworker.yaml", fworker)
        qadapter = make_qadapter(spec, self.campaign, self.launchpad_file, fworker_file)
        write_qadapter_file(folder / "my_qadapter.yaml", qadapter)
        return fworker, qadapter

    def queue_jobs(self, name: str) -> dict[str, str]:
        """The campaign's jobs in queue ``name`` that may still run: job id → state."""
        return queue_jobs(self.queues[name], self.campaign)

    def submit_to_queue(
        self, name: str, ready: int, jobs: dict[str, str] | None = None
    ) -> list[str]:
        """Submit jobs to queue ``name`` for ``ready`` READY Fireworks: one for each that no
        waiting job of the campaign will take, its max_jobs at most in the queue; returns the
        new job ids. ``jobs``: the campaign's jobs in the queue, if just listed."""
        fworker, qadapter = self.queue_files(name)
        jobs = self.queue_jobs(name) if jobs is None else jobs
        waiting = sum(state in WAITING_STATES for state in jobs.values())
        return submit_jobs(
            self.launchpad,
            fworker,
            qadapter,
            self.queue_dir(name) / "jobs",
            ready - waiting,
            len(jobs),
            self.queues[name].max_jobs,
        )

    def _queue_runs(self) -> list[LocalRun]:
        runs = []
        for name in self.queues:
            if not self.queue_dir(name).is_dir():
                continue  # never used: nothing of it can be running
            try:
                jobs: set[str] | None = set(self.queue_jobs(name))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                # the queue cannot be asked (a slurmctld timeout, not a login node): its runs
                # count as alive, nothing of it is repaired
                log.warning(
                    "queue %s: cannot list its jobs (%s); its runs count as alive", name, exc
                )
                jobs = None
            runs += queue_runs(self.launchpad, self.campaign, self.queue_dir(name), jobs)
        return runs

    def run_local(self, workers: int) -> list[int]:
        """Run ``workers`` local rocket launchers until no Firework is ready; their exit codes."""
        return run_workers(
            self.launchpad_file,
            self.fworker_file,
            self.launch_dir,
            workers,
            env=self.process_env,
        )
