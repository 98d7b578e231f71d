"""The demo campaign end to end through the CLI: embedded server, real rockets, queries, exports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import ase.db
import pytest
import yaml
from ase.io import read

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
AL_LOOP = str(Path(sys.executable).parent / "al-loop")


def al_loop(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([AL_LOOP, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The demo campaign file, shrunk to 8 seeds, run once with its embedded server."""
    tmp = tmp_path_factory.mktemp("demo")
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config["seeds"]["n_structures"] = 8
    config["workdir"] = str(tmp / "run")
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = al_loop("run", str(path), cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return path, tmp


def test_run_labels_every_seed(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    result = al_loop("db", "query", str(path), "--json", "--limit", "0", cwd=tmp)
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 8
    assert {d["status"] for d in docs} == {"ok"}
    assert len({d["structure_id"] for d in docs}) == 8
    assert all(d["code"] == "emt" and d["software"]["ase"] for d in docs)
    # the embedded server was stopped at exit, its data kept on disk
    assert not (tmp / "run" / "db" / "server.json").exists()
    assert (tmp / "run" / "db" / "wiredtiger").is_dir()


def test_rerun_is_idempotent(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    result = al_loop("run", str(path), cwd=tmp)
    assert result.returncode == 0, result.stderr
    stats = json.loads(al_loop("db", "stats", str(path), "--json", cwd=tmp).stdout)
    assert stats["labels"] == 8 and stats["structures"] == 8
    assert stats["labels_by_status"] == {"ok": 8}


def test_query_filters_and_exports(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    everything = al_loop("db", "query", str(path), "--json", "--limit", "0", cwd=tmp)
    docs = [json.loads(line) for line in everything.stdout.splitlines()]
    with_cu = [d for d in docs if "Cu" in d["elements"]]
    compressed = [d for d in docs if d["pressure_GPa"] >= 10.0]
    got = al_loop("db", "query", str(path), "--json", "--elements", "Cu", "--limit", "0", cwd=tmp)
    assert len(got.stdout.splitlines()) == len(with_cu)
    got = al_loop("db", "query", str(path), "--json", "--pmin", "10", "--limit", "0", cwd=tmp)
    assert len(got.stdout.splitlines()) == len(compressed)
    got = al_loop("db", "query", str(path), "--json", "--status", "crashed", cwd=tmp)
    assert got.stdout.strip() == ""

    xyz, db = tmp / "labels.extxyz", tmp / "labels.db"
    assert al_loop("db", "export", str(path), "-o", str(xyz), cwd=tmp).returncode == 0
    assert al_loop("db", "export", str(path), "-o", str(db), cwd=tmp).returncode == 0
    frames = read(str(xyz), index=":")
    assert len(frames) == 8
    energies = sorted(d["energy_eV"] for d in docs)
    assert sorted(f.get_potential_energy() for f in frames) == pytest.approx(energies)
    assert all(f.get_forces().shape == (len(f), 3) for f in frames)
    with ase.db.connect(str(db)) as handle:
        rows = list(handle.select())
    assert len(rows) == 8
    assert sorted(r.energy for r in rows) == pytest.approx(energies)


def test_status_shows_stages(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    result = al_loop("status", str(path), cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert "seed" in result.stdout and "label" in result.stdout
    assert "COMPLETED" in result.stdout


def test_bad_campaign_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsystem:\n  elements: [Cu, Xx]\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["run"], ["validate"], ["db", "query"], ["launch"]):
        result = al_loop(*command, str(bad), cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "bad.yaml" in result.stderr and "system.elements" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_fireworks_cli_works_on_a_served_campaign(demo: tuple[Path, Path]) -> None:
    """`al-loop db serve` keeps the embedded server up; FireWorks' own `lpad` then reads it."""
    path, tmp = demo
    state = tmp / "run" / "db" / "server.json"
    serve = subprocess.Popen(
        [AL_LOOP, "db", "serve", str(path)],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not state.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), serve.stderr.read() if serve.poll() is not None else "no server"
        time.sleep(1.0)  # my_launchpad.yaml is written after the server answers
        lpad = str(Path(sys.executable).parent / "lpad")
        result = subprocess.run(
            [
                lpad,
                "-l",
                str(tmp / "run" / "my_launchpad.yaml"),
                "get_fws",
                "-s",
                "COMPLETED",
                "-d",
                "count",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "2"  # 8 seeds, 4 per Firework
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    assert serve.returncode == 0
    assert not state.exists()  # stopped cleanly by SIGTERM


def test_interrupted_run_resumes_without_losing_or_repeating_labels(tmp_path: Path) -> None:
    """SIGTERM `al-loop run` in the middle of labelling, then run it again."""
    import pymongo

    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config["seeds"]["n_structures"] = 12
    config["launcher"] = {"workers": 1, "batch_size": 1}
    config["workdir"] = str(tmp_path / "run")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    state = tmp_path / "run" / "db" / "server.json"

    run = subprocess.Popen(
        [AL_LOOP, "run", str(path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        labelled = 0
        while labelled < 2 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.3)
            if state.exists():
                port = json.loads(state.read_text())["port"]
                with pymongo.MongoClient(
                    f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=2000
                ) as client:
                    labelled = client.al_loop.labels.count_documents({"status": "ok"})
        assert run.poll() is None and labelled >= 2, "the run ended before it could be stopped"
        run.terminate()
        run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, run.stderr.read()
    assert not state.exists()  # the embedded server was stopped, its data kept

    resumed = al_loop("run", str(path), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "already submitted" in resumed.stdout
    docs = [
        json.loads(line)
        for line in al_loop(
            "db", "query", str(path), "--json", "--limit", "0", cwd=tmp_path
        ).stdout.splitlines()
    ]
    assert len(docs) == 12 and {d["status"] for d in docs} == {"ok"}
    assert len({d["structure_id"] for d in docs}) == 12
    # at most the one label being computed at the kill was computed again
    assert sum(d["attempts"] for d in docs) <= 13
    status = al_loop("status", str(path), cwd=tmp_path).stdout
    assert "'COMPLETED': 12" in status and "RUNNING" not in status


def test_read_only_commands_refuse_a_campaign_without_data(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    config["workdir"] = str(tmp_path / "nowhere")
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    for command in (["db", "query"], ["db", "stats"], ["status"], ["launch"]):
        result = al_loop(*command, str(path), cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "no dataset of campaign 'demo'" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_query_options_are_checked(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    for args, message in (
        (["--status", "failed"], "--status"),
        (["--elements", "fe"], "not an element symbol"),
        (["--pmin", "200", "--pmax", "100"], "is empty"),
    ):
        result = al_loop("db", "query", str(path), *args, cwd=tmp)
        assert result.returncode == 2 and message in result.stderr, result.stderr
