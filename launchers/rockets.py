"""Launching rockets locally: N concurrent ``rlaunch rapidfire`` workers (FireWorks' own CLI)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from fireworks import LaunchPad

from database.embedded import pid_alive

log = logging.getLogger(__name__)

#: Each local launcher's pid, in its folder: how a later run tells its Fireworks were lost.
PID_FILE = "rlaunch.pid"
#: A Firework RESERVED without a launch for longer than this lost its launcher (seconds).
RESERVATION_GRACE_S = 60.0


class LocalRun(NamedTuple):
    """A Firework RUNNING (or RESERVED) in a local launcher, and whether the launcher lives."""

    fw_id: int
    launch_id: int | None
    launch_state: str
    alive: bool


def start_workers(
    launchpad_file: Path,
    fworker_file: Path,
    launch_dir: Path,
    workers: int,
    env: dict[str, str] | None = None,
) -> list[subprocess.Popen]:
    """Start ``workers`` rapidfire rocket launchers; each runs until no Firework is ready."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    worker_env = {k: v for k, v in os.environ.items() if k != "QUACC_WORKFLOW_ENGINE"}
    worker_env.update(env or {})
    processes = []
    folders = _free_worker_folders(launch_dir, workers)
    for worker_dir in folders:
        worker_dir.mkdir(exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "launchers.rlaunch",
            "-l",
            str(launchpad_file),
            "-w",
            str(fworker_file),
            "--loglvl",
            "WARNING",
            "rapidfire",
            "--nlaunches",
            "0",
        ]
        log_file = open(worker_dir / "rlaunch.log", "ab")  # noqa: SIM115 (lives with the process)
        processes.append(
            subprocess.Popen(
                cmd, cwd=worker_dir, stdout=log_file, stderr=subprocess.STDOUT, env=worker_env
            )
        )
        log_file.close()
        (worker_dir / PID_FILE).write_text(str(processes[-1].pid))
    log.info("started %d rocket launchers in %s", workers, launch_dir)
    return processes


def _free_worker_folders(launch_dir: Path, workers: int) -> list[Path]:
    """``workers`` launcher folders whose pid file names no live process: a launcher left
    working by a killed run keeps its folder and pid file (how its Fireworks are told apart
    from lost ones)."""
    folders: list[Path] = []
    index = 0
    while len(folders) < workers:
        folder = launch_dir / f"worker{index}"
        value = _read_marker(folder / PID_FILE)
        if value is None or not _pid_alive(value):
            folders.append(folder)
        index += 1
    return folders


def wait_workers(processes: list[subprocess.Popen], timeout_s: float | None = None) -> list[int]:
    """Wait for the launchers; returns their exit codes."""
    return [p.wait(timeout=timeout_s) for p in processes]


def run_workers(
    launchpad_file: Path,
    fworker_file: Path,
    launch_dir: Path,
    workers: int,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
) -> list[int]:
    """Start the launchers and wait for all of them; kill them all on interruption."""
    processes = start_workers(launchpad_file, fworker_file, launch_dir, workers, env)
    try:
        return wait_workers(processes, timeout_s)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:  # reap them: a zombie would look alive to lost_local_runs
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def local_runs(lp: LaunchPad, campaign: str, launch_dir: Path) -> list[LocalRun]:
    """``campaign``'s Fireworks RUNNING (or RESERVED) in local launchers of this host (under
    ``launch_dir``), each with whether its launcher still lives.

    A launcher that no longer exists (killed with al-loop or by hand) lost its Firework. The
    launch state says where it died: ``RUNNING`` inside the task; ``COMPLETED`` or ``FIZZLED``
    after FireWorks saved the launch but before it updated the Firework (FireWorks writes the
    two separately). Runs of other machines are never counted."""
    return runs_under(lp, campaign, launch_dir, PID_FILE, _pid_alive, this_host=True)


def runs_under(
    lp: LaunchPad,
    campaign: str,
    root: Path,
    marker: str,
    alive: Callable[[str], bool],
    this_host: bool = False,
) -> list[LocalRun]:
    """``campaign``'s Fireworks RUNNING (or RESERVED) whose launch is in a folder under
    ``root``; each launcher's folder holds a ``marker`` file (a pid, a queue job id) that
    ``alive`` judges. A RESERVED Firework without a launch (a launcher killed between
    FireWorks' reservation and its launch) is lost when no launcher under ``root`` lives."""
    runs = []
    root = root.resolve()
    for fw in lp.fireworks.find(
        {"spec.al_loop.campaign": campaign, "state": {"$in": ["RUNNING", "RESERVED"]}},
        {"fw_id": 1, "state": 1, "updated_on": 1},
    ):
        launch = lp.launches.find_one({"fw_id": fw["fw_id"]}, sort=[("launch_id", -1)])
        if launch is None and fw["state"] == "RESERVED":
            # FireWorks reserves first and writes the launch a few round trips later: a
            # reservation younger than RESERVATION_GRACE_S is a launcher at work
            updated = fw.get("updated_on")
            if isinstance(updated, str):
                updated = datetime.fromisoformat(updated)
            young = (
                updated is None
                or (
                    datetime.now(UTC).replace(tzinfo=None) - updated.replace(tzinfo=None)
                ).total_seconds()
                < RESERVATION_GRACE_S
            )
            markers = [_read_marker(f) for f in root.rglob(marker)]
            living = young or any(m is not None and alive(m) for m in markers)
            runs.append(LocalRun(fw["fw_id"], None, "RESERVED", living))
            continue
        if launch is None or (this_host and socket.gethostname() != launch.get("host")):
            continue
        path = Path(launch.get("launch_dir", "")).resolve()
        if root not in path.parents:
            continue
        # the launcher's folder: the nearest folder above the launch with a marker file
        files = [d / marker for d in path.parents if root in (d, *d.parents)]
        found = next((f for f in files if f.exists()), None)
        value = _read_marker(found) if found else None
        if value is None:
            continue
        runs.append(LocalRun(fw["fw_id"], launch["launch_id"], launch["state"], alive(value)))
    return runs


def lost_local_runs(
    lp: LaunchPad, campaign: str, launch_dir: Path
) -> list[tuple[int, int | None, str]]:
    """The :func:`local_runs` whose launcher is gone, as (fw_id, launch_id, launch state)."""
    return [
        (r.fw_id, r.launch_id, r.launch_state)
        for r in local_runs(lp, campaign, launch_dir)
        if not r.alive
    ]


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _pid_alive(value: str) -> bool:
    return value.isdigit() and pid_alive(int(value))


def rerun_lost_local_runs(lp: LaunchPad, campaign: str, launch_dir: Path) -> list[int]:
    """Repair the lost local runs of :func:`lost_local_runs`; returns their Fireworks."""
    lost = lost_local_runs(lp, campaign, launch_dir)
    return repair_lost_runs(lp, campaign, lost)


def repair_lost_runs(
    lp: LaunchPad, campaign: str, lost: list[tuple[int, int | None, str]]
) -> list[int]:
    """Repair Fireworks whose launcher is gone, given as (fw_id, launch_id, launch state).

    A launch lost while RUNNING is marked FIZZLED and rerun (as ``lpad detect_lostruns --rerun``
    does; its labels are taken over by the same job). A launch that had finished only needs its
    Firework refreshed from it (as ``lpad detect_lostruns --refresh`` does): nothing is rerun."""
    for fw_id, launch_id, launch_state in lost:
        # a launcher killed inside FireWorks' workflow lock leaves it set; the workflow holds
        # this Firework alone (launchers.workflows), so no one else can be holding it
        lp.workflows.update_one({"nodes": fw_id}, {"$unset": {"locked": ""}})
        if launch_id is None:  # reserved, never launched
            lp.rerun_fw(fw_id)
        elif launch_state in ("RUNNING", "RESERVED"):
            lp.mark_fizzled(launch_id)
            lp.rerun_fw(fw_id)
        else:
            lp._refresh_wf(fw_id)  # what detect_lostruns(refresh=True) calls; no public form
    if lost:
        log.warning(
            "%d Fireworks of %s were left RUNNING by a launcher that is gone (a local one, "
            "or a queue job); "
            "repaired (rerun, or refreshed from a finished launch): %s",
            len(lost),
            campaign,
            [fw for fw, _, _ in lost],
        )
    return [fw for fw, _, _ in lost]
