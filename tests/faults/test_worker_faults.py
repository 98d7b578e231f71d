"""Faults of a worker and of the files a stage writes: kill -9 of a rocket launcher in the
middle of a real pw.x run, and a model file that cannot be written. Nothing is lost, no DFT run
is done twice (docs/reliability.md)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.fault_campaign import slow_pw_campaign

from al_loop.campaign import open_campaign
from al_loop.config import load_campaign
from al_loop.stages import LabelStage, SeedStage, TrainStage
from database import Store

pytestmark = pytest.mark.faults


def _campaign(tmp_path: Path, mongo_uri: str, **sections: Any) -> Path:
    database = f"faults_{uuid.uuid4().hex[:8]}"
    config = {
        "name": "worker-faults",
        "workdir": str(tmp_path / "run"),
        "system": {"elements": ["Cu", "Ni"]},
        "seeds": {"prototypes": ["fcc"], "n_structures": 6, "max_atoms": 4},
        "store": {"uri": mongo_uri, "database": database, "launchpad_database": f"{database}_fw"},
        "launcher": {"workers": 1, "batch_size": 1},
        **sections,
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_worker_killed_in_the_middle_of_a_dft_run(
    tmp_path: Path, mongo_uri: str, fast_pseudos: Path
) -> None:
    """The launcher dies while its pw.x command runs; the label stage, still running, finds
    the lost Firework (its launcher's pid is gone), reruns it, and the rerun takes the label
    over: two labels, the killed one attempted twice, no outcome set aside."""
    flag = tmp_path / "slow"
    flag.touch()
    path = _campaign(
        tmp_path,
        mongo_uri,
        **slow_pw_campaign(fast_pseudos, flag),
    )
    with open_campaign(load_campaign(path)) as session:
        SeedStage(session).run(0)
        outcome: dict[str, Any] = {}
        stage = threading.Thread(target=lambda: outcome.update(run=LabelStage(session).run(0)))
        stage.start()
        pid_file = tmp_path / "run" / "launches" / "worker0" / "rlaunch.pid"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if session.store.db.labels.count_documents({"status": "running"}) and pid_file.exists():
                break
            time.sleep(0.2)
        time.sleep(1)  # inside the DFT command (the delayed start of pw.x)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        flag.unlink()  # the rerun runs pw.x at once
        stage.join(timeout=600)
        assert not stage.is_alive()
        result = outcome["run"]
        assert result.done, result.result
        labels = list(session.store.db.labels.find({}))
        assert len(labels) == 2 and {d["status"] for d in labels} == {"ok"}
        assert sorted(d["attempts"] for d in labels) == [1, 2]
        assert not any(h.get("stale") for d in labels for h in d["history"])
        states = [d["state"] for d in session.fireworks.launchpad.launches.find({})]
        assert sorted(states) == ["COMPLETED", "COMPLETED", "FIZZLED"]


def test_a_model_file_that_cannot_be_written_loses_nothing(
    tmp_path: Path, mongo_uri: str, standin_model: Path
) -> None:
    """The local copy of a trained member cannot be written (a folder in its way): each member
    is in the database before its copy is written; the stage fails with the path, and runs
    again without training anything once the way is clear."""
    committee = {
        "n_models": 2,
        "foundation_model": str(standin_model),
        "max_epochs": 1,
        "held_out_fraction": 0.0,
    }
    config = load_campaign(_campaign(tmp_path, mongo_uri, committee=committee))
    blocked = tmp_path / "run" / "models" / "iter000" / "member1.model"
    blocked.mkdir(parents=True)
    with open_campaign(config) as session:
        SeedStage(session).run(0)
        assert LabelStage(session).run(0).done
        with pytest.raises(IsADirectoryError, match=r"member1\.model"):
            TrainStage(session).run(0)
        assert session.log.stage(0, "train") is None
        stored = {d["member"]: d["sha256"] for d in session.store.models(config.name, 0)}
        assert sorted(stored) == [0, 1]  # both in the database, the failed copy's too
        blocked.rmdir()
        events: list[Any] = []
        result = TrainStage(session, events.append).run(0).result
        assert result["models"] == 2
        assert not [e for e in events if "trained_in_s" in e.figures]  # nothing trained again
        again = {d["member"]: d["sha256"] for d in session.store.models(config.name, 0)}
        assert again == stored
        assert blocked.is_file()  # fetched from the database


def _orphan_a_launcher(path: Path, mongo_uri: str) -> int:
    """Run the seed and label stages of campaign ``path`` in a process of their own and kill it
    (-9) once its launcher is inside a labelling (a label running); returns the launcher's pid,
    which lives on."""
    import subprocess
    import sys

    script = (
        "from al_loop.campaign import open_campaign\n"
        "from al_loop.config import load_campaign\n"
        "from al_loop.stages import LabelStage, SeedStage\n"
        f"with open_campaign(load_campaign({str(path)!r})) as session:\n"
        "    SeedStage(session).run(0)\n"
        "    LabelStage(session).run(0)\n"
    )
    first = subprocess.Popen([sys.executable, "-c", script])
    config = load_campaign(path)
    pid_file = config.resolved_workdir() / "launches" / "worker0" / "rlaunch.pid"
    watch = Store.connect(mongo_uri, config.store.database)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if watch.db.labels.count_documents({"status": "running"}) and pid_file.exists():
            break
        time.sleep(0.2)
    watch.close()
    first.kill()  # the campaign process dies; its launcher computes on
    first.wait()
    return int(pid_file.read_text())


def test_launchers_orphaned_by_a_killed_run_are_waited_for(
    tmp_path: Path, mongo_uri: str, fast_pseudos: Path
) -> None:
    """kill -9 of the process that runs the label stage while its launcher is inside a pw.x
    command: the launcher lives on. The next label stage runs the other Firework in a launcher
    folder of its own (never over the orphan's pid file), waits for the orphan, and reruns
    nothing: every label attempted once."""
    flag = tmp_path / "slow"
    flag.touch()
    path = _campaign(
        tmp_path,
        mongo_uri,
        **slow_pw_campaign(fast_pseudos, flag),
        launcher={"workers": 1, "batch_size": 1},
    )
    config = load_campaign(path)
    orphan = _orphan_a_launcher(path, mongo_uri)
    os.kill(orphan, 0)  # alive
    with open_campaign(config) as session:
        threading.Timer(8.0, flag.unlink).start()  # the orphan's pw.x starts a while later
        outcome = LabelStage(session).run(0)
        assert outcome.done, outcome.result
        labels = list(session.store.db.labels.find({}))
        assert len(labels) == 2 and {d["status"] for d in labels} == {"ok"}
        assert [d["attempts"] for d in labels] == [1, 1]  # nothing computed twice
        launches = list(session.fireworks.launchpad.launches.find({}))
        assert [d["state"] for d in launches] == ["COMPLETED", "COMPLETED"]  # none repaired
        # the second Firework ran in a launcher of the new stage, in a folder of its own
        assert {Path(d["launch_dir"]).parent.name for d in launches} == {"worker0", "worker1"}


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_an_orphaned_launcher_that_hangs_then_dies_has_its_firework_run_again(
    tmp_path: Path, mongo_uri: str, fast_pseudos: Path
) -> None:
    """The orphan of a killed run hangs (its claim expires while its pid lives on) and dies
    while the next label stage waits for it: the stage runs the repaired Firework at once
    (it used to stop with that Firework READY) and the label is made on its second attempt."""
    flag = tmp_path / "slow"
    flag.touch()
    path = _campaign(
        tmp_path,
        mongo_uri,
        **slow_pw_campaign(fast_pseudos, flag),
        launcher={"workers": 1, "batch_size": 1, "claim_expiry_s": 3},
    )
    config = load_campaign(path)
    orphan = _orphan_a_launcher(path, mongo_uri)
    for child in _descendants(orphan):  # its waiting pw.x command goes; the launcher hangs
        os.kill(child, signal.SIGKILL)
    os.kill(orphan, signal.SIGSTOP)
    flag.unlink()
    killer = threading.Timer(12.0, os.kill, (orphan, signal.SIGKILL))  # claim expired by then
    try:
        with open_campaign(config) as session:
            killer.start()
            outcome = LabelStage(session).run(0)
            assert outcome.done, outcome.result
            labels = list(session.store.db.labels.find({}))
            assert len(labels) == 2 and {d["status"] for d in labels} == {"ok"}
            assert sorted(d["attempts"] for d in labels) == [1, 2]
            launches = list(session.fireworks.launchpad.launches.find({}))
            assert sorted(d["state"] for d in launches) == ["COMPLETED", "COMPLETED", "FIZZLED"]
    finally:
        killer.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)
