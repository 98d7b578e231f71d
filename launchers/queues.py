"""Rocket launchers in HPC queue jobs (SLURM, PBS).

A job script is FireWorks' ``CommonAdapter`` on al-loop's templates (``configs/queues/``): it
runs ``python -m launchers.rlaunch ... rapidfire`` (FireWorks' rlaunch with al-loop's fixes)
until no Firework of its FWorker's category is ready, and writes its job id beside its
launches. Jobs are submitted with FireWorks' ``launch_rocket_to_queue`` up to a cap on the
campaign's jobs in the queue. A Firework left RUNNING by a job that is no longer in the queue
(cancelled, past its wall time, its node lost) is found through that job-id file, as a local
launcher's is through its pid file (launchers.rockets).
"""

from __future__ import annotations

import getpass
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fireworks import FWorker, LaunchPad
from fireworks.queue.queue_launcher import launch_rocket_to_queue
from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

from launchers.rockets import LocalRun, runs_under

log = logging.getLogger(__name__)

#: The file each job writes in its folder: its queue job id.
JOB_ID_FILE = "al-loop-queue-job"
#: Queue states of a job that may still run a Firework (SLURM's and PBS's).
LIVE_STATES = frozenset(
    {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
    | {"Q", "R", "H", "W", "S", "T", "E", "B"}
)
#: States of a job that has not started yet (it will take a READY Firework when it does; a
#: held one, PBS ``H``, may never start, and does not count).
WAITING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "Q", "W"})


@dataclass(frozen=True)
class QueueSpec:
    """One queue of a campaign (the campaign file's ``queues.<name>``)."""

    name: str
    system: Literal["slurm", "pbs"]
    category: str
    walltime: str = "01:00:00"
    nodes: int = 1
    cores: int = 1
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    gpus_per_node: int | None = None
    memory: str | None = None
    constraint: str | None = None
    modules: tuple[str, ...] = ()
    pre_rocket: tuple[str, ...] = ()
    max_jobs: int = 4
    extra: dict[str, str] = field(default_factory=dict)


def templates_dir() -> Path:
    """The job-script templates: the repository's ``configs/queues``."""
    return Path(__file__).resolve().parents[1] / "configs" / "queues"


def job_name(campaign: str, queue: str) -> str:
    """The name of a campaign's jobs in a queue (how al-loop finds its own jobs)."""
    return f"al-loop-{campaign}-{queue}"[:64]


def make_qadapter(
    spec: QueueSpec, campaign: str, launchpad_file: Path, fworker_file: Path
) -> CommonAdapter:
    """The queue adapter whose script runs one rapidfire rocket launcher of ``fworker_file``."""
    rocket = (
        f"{sys.executable} -m launchers.rlaunch -l {launchpad_file} -w {fworker_file} "
        "--loglvl WARNING rapidfire --nlaunches 0"
    )
    pre = [f"module load {module}" for module in spec.modules] + list(spec.pre_rocket)
    params = {
        "job_name": job_name(campaign, spec.name),
        "account": spec.account,
        "queue": spec.partition,
        "qos": spec.qos,
        "walltime": spec.walltime,
        "nodes": spec.nodes,
        "ntasks_per_node": spec.cores,
        "gpus_per_node": spec.gpus_per_node,
        "mem": spec.memory,
        "constraint": spec.constraint,
        "pre_rocket": "\n".join(pre) or None,
        "rocket_launch": rocket,
        **spec.extra,
    }
    return CommonAdapter(
        q_type="SLURM" if spec.system == "slurm" else "PBS",
        q_name=spec.name,
        template_file=str(templates_dir() / f"{spec.system}.txt"),
        **{k: v for k, v in params.items() if v is not None},
    )


def queue_jobs(spec: QueueSpec, campaign: str) -> dict[str, str]:
    """The campaign's jobs in this queue that may still run, job id → state."""
    name = job_name(campaign, spec.name)
    if spec.system == "slurm":
        command = ["squeue", "-h", "-u", getpass.getuser(), "-n", name, "-o", "%i %T"]
    else:
        command = ["qstat", "-u", getpass.getuser()]
    if not shutil.which(command[0]):
        raise RuntimeError(f"{command[0]} not found: is this a {spec.system.upper()} login node?")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    jobs = {}
    for line in done.stdout.splitlines():
        words = line.split()
        if spec.system == "slurm" and len(words) == 2:
            jobs[words[0]] = words[1]
        elif spec.system == "pbs" and len(words) >= 10 and name.startswith(words[3]):
            # Torque/PBS: Job ID, Username, Queue, Jobname (cut), SessID, NDS, TSK, Mem,
            # Time, S(tate), Time
            jobs[words[0].split(".")[0]] = words[9]
    return {job: state for job, state in jobs.items() if state in LIVE_STATES}


def submit_jobs(
    launchpad: LaunchPad,
    fworker: FWorker,
    qadapter: CommonAdapter,
    launch_dir: Path,
    wanted: int,
    in_queue: int,
    max_jobs: int,
) -> list[str]:
    """Submit up to ``wanted`` jobs, keeping the campaign's jobs in the queue at ``max_jobs``
    at most; returns the new job ids. Each job gets its own folder under ``launch_dir``."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    submitted: list[str] = []
    for _ in range(max(0, min(wanted, max_jobs - in_queue))):
        job = launch_rocket_to_queue(
            launchpad, fworker, qadapter, str(launch_dir), create_launcher_dir=True
        )
        if not job:
            break
        submitted.append(str(job))
    if submitted:
        log.info("submitted %d jobs to %s: %s", len(submitted), qadapter.q_name, submitted)
    return submitted


def queue_runs(
    lp: LaunchPad, campaign: str, queue_dir: Path, live_jobs: set[str] | None
) -> list[LocalRun]:
    """``campaign``'s Fireworks RUNNING in jobs submitted under ``queue_dir``, each with whether
    its job is still in the queue (``live_jobs`` None: unknown, every one counts as alive)."""
    if live_jobs is None:
        return runs_under(lp, campaign, queue_dir, JOB_ID_FILE, lambda job: True)
    live = {short_id(job) for job in live_jobs}
    return runs_under(lp, campaign, queue_dir, JOB_ID_FILE, lambda job: short_id(job) in live)


def short_id(job: str) -> str:
    """A job id without its server part (PBS: ``1234.server`` → ``1234``)."""
    return job.strip().split(".")[0]
