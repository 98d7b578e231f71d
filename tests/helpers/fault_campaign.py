"""The fault-injection suite's tools: `al-loop run` in the background (killed at a chosen line
of its output), and what the dataset holds afterwards (tests/faults/, docs/reliability.md)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pymongo
import yaml

from database.embedded import pid_alive

AL_LOOP = str(Path(sys.executable).parent / "al-loop")
DELAYED = Path(__file__).resolve().parent / "delayed_start.sh"


def slow_pw_campaign(pseudos: Path, flag: Path) -> dict[str, Any]:
    """Campaign sections of two 2-atom bcc Fe-Ni cells labelled by real pw.x, whose runs wait
    while ``flag`` exists (delayed_start.sh): time to kill a launcher or cancel a job while its
    Firework is RUNNING."""
    return {
        "system": {"elements": ["Fe", "Ni"]},
        "seeds": {"prototypes": ["bcc"], "n_structures": 2, "max_atoms": 2, "rattle_A": 0.0},
        "oracle": {
            "code": "espresso",
            "preset": "fast",
            "overrides": {"pseudo_dir": str(pseudos), "parallel_cmd": f"{DELAYED} {flag} 600"},
        },
    }


class Run:
    """``al-loop run`` in the background, its output read line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [AL_LOOP, "run", str(path)],
            cwd=path.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )

    def wait_for(self, pattern: str, timeout_s: float = 300) -> str:
        """Read output until a line matches ``pattern``; returns the line."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(self.lines)}")

    def kill(self) -> None:
        """kill -9: no handler runs, nothing is cleaned up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def finish(self, timeout_s: float = 900) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=timeout_s)
        return self.process.returncode, "".join(self.lines) + (out or "")


def run_to_end(path: Path, timeout_s: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AL_LOOP, "run", str(path)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "COLUMNS": "200"},
    )


def run_folder(path: Path) -> Path:
    return Path(yaml.safe_load(path.read_text())["workdir"])


def ledger(path: Path) -> dict[str, Any]:
    """What the dataset holds: labels against unique requested structures, and oracle runs
    done twice (an outcome set aside because another claim had computed it: ``stale``).
    Opens the campaign's embedded server itself (and stops it after)."""
    from database import EmbeddedServer

    with EmbeddedServer(run_folder(path) / "db") as server:
        client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=10_000)
        db = client.al_loop
        structures = {d["_id"] for d in db.structures.find({}, {"_id": 1})}
        labels = list(db.labels.find({}, {"structure_id": 1, "status": 1, "history": 1}))
        finished = (db.campaigns.find_one({}) or {}).get("finished")
        client.close()
    stale = sum(1 for d in labels for h in d.get("history", []) if h.get("stale"))
    return {
        "structures": len(structures),
        "labels": len(labels),
        "labelled_structures": len({d["structure_id"] for d in labels}),
        "ok": sum(d["status"] == "ok" for d in labels),
        "duplicated_runs": stale,
        "finished": finished,
    }


def nothing_left_running(path: Path) -> None:
    """No embedded server and no local launcher of the campaign is alive."""
    folder = run_folder(path)
    assert not (folder / "db" / "server.json").exists(), "the embedded server was left running"
    for pid_file in (folder / "launches").glob("*/rlaunch.pid"):
        assert not pid_alive(int(pid_file.read_text())), f"a launcher is alive: {pid_file}"
