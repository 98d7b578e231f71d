"""Launching rockets locally: N concurrent ``rlaunch rapidfire`` workers (FireWorks' own CLI)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def rlaunch_executable() -> str:
    beside = Path(sys.executable).parent / "rlaunch"
    if beside.exists():
        return str(beside)
    found = shutil.which("rlaunch")
    if not found:
        raise RuntimeError("rlaunch not found: install fireworks")
    return found


def start_workers(launchpad_file: Path, fworker_file: Path, launch_dir: Path, workers: int,
                  env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Start ``workers`` rapidfire rocket launchers; each runs until no Firework is ready."""
    launch_dir.mkdir(parents=True, exist_ok=True)
    worker_env = {k: v for k, v in os.environ.items() if k != "QUACC_WORKFLOW_ENGINE"}
    worker_env.update(env or {})
    processes = []
    for index in range(workers):
        worker_dir = launch_dir / f"worker{index}"
        worker_dir.mkdir(exist_ok=True)
        cmd = [rlaunch_executable(), "-l", str(launchpad_file), "-w", str(fworker_file),
               "--loglvl", "WARNING", "rapidfire", "--nlaunches", "0"]
        log_file = open(worker_dir / "rlaunch.log", "ab")  # noqa: SIM115 (lives with the process)
        processes.append(subprocess.Popen(
            cmd, cwd=worker_dir, stdout=log_file, stderr=subprocess.STDOUT,
            env=worker_env))
        log_file.close()
    log.info("started %d rocket launchers in %s", workers, launch_dir)
    return processes


def wait_workers(processes: list[subprocess.Popen], timeout_s: float | None = None) -> list[int]:
    """Wait for the launchers; returns their exit codes."""
    return [p.wait(timeout=timeout_s) for p in processes]


def run_workers(launchpad_file: Path, fworker_file: Path, launch_dir: Path, workers: int,
                timeout_s: float | None = None, env: dict[str, str] | None = None) -> list[int]:
    """Start the launchers and wait for all of them; kill them all on interruption."""
    processes = start_workers(launchpad_file, fworker_file, launch_dir, workers, env)
    try:
        return wait_workers(processes, timeout_s)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
