"""Faults of the campaign process and its database server: kill -9 of `al-loop run` in every
stage, two runs at once, the embedded server killed during labelling. Each ends with the
campaign completed, every requested structure labelled once, no oracle run done twice, and
nothing left running (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.fault_campaign import Run, ledger, nothing_left_running, run_folder, run_to_end

pytestmark = pytest.mark.faults

#: Where `al-loop run` is killed, in order: (iteration, stage, what the line says).
KILL_POINTS = [
    (0, "seed", "start"),
    (0, "label", "step: local_launchers"),  # rockets are running: they are orphaned
    (0, "train", "start"),
    (0, "evaluate", "start"),
    (1, "explore", "start"),
    (1, "select", "start"),
    (1, "label", "start"),
]


def test_kill_9_in_every_stage_then_resume(campaign_file: Callable[..., Path]) -> None:
    path = campaign_file()
    for iteration, stage, said in KILL_POINTS:
        run = Run(path)
        run.wait_for(rf"iteration {iteration} {stage} {said}")
        run.kill()
    done = run_to_end(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stopped after 1 iterations" in done.stdout or "converged" in done.stdout
    nothing_left_running(path)
    held = ledger(path)
    assert held["finished"] is not None
    assert held["labels"] == held["labelled_structures"] == held["structures"] == held["ok"]
    assert held["structures"] >= 8 + 1  # the seeds and what iteration 1 selected
    assert held["duplicated_runs"] == 0


def test_a_second_run_is_refused_while_the_first_lives(
    campaign_file: Callable[..., Path],
) -> None:
    path = campaign_file()
    first = Run(path)
    first.wait_for(r"iteration 0 label start")
    second = run_to_end(path, timeout_s=300)
    assert second.returncode == 3, second.stdout + second.stderr
    assert "is already in use" in second.stderr and f"pid {first.process.pid}" in second.stderr
    code, out = first.finish()
    assert code == 0, out
    nothing_left_running(path)
    held = ledger(path)
    assert held["labels"] == held["structures"] == held["ok"] and held["duplicated_runs"] == 0


def test_the_server_killed_during_labelling_comes_back(
    campaign_file: Callable[..., Path],
) -> None:
    """kill -9 of the embedded server while rockets write labels: the run restarts it on its
    port, the rockets' clients reconnect, and every acknowledged write is on disk."""
    path = campaign_file(seeds={"n_structures": 16})
    run = Run(path)
    run.wait_for(r"iteration 0 label step: local_launchers")
    state = run_folder(path) / "db" / "server.json"
    os.kill(json.loads(state.read_text())["pid"], signal.SIGKILL)
    time.sleep(0.5)
    code, out = run.finish()
    assert code == 0, out
    nothing_left_running(path)
    held = ledger(path)
    assert held["labels"] == held["structures"] == held["ok"] and held["duplicated_runs"] == 0
