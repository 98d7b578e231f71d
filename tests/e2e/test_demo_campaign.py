"""The demo campaign end to end through the CLI: embedded server, real rockets, queries, exports."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import ase.db
import pytest
import yaml
from ase.io import read

from database import LabelQuery

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
AL_LOOP = str(Path(sys.executable).parent / "al-loop")


def al_loop(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([AL_LOOP, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def tiny_loop(config: dict, foundation: Path, iterations: int) -> dict:
    """The demo campaign shrunk to minutes: small committee, short MD, a few labels a round.
    The trust window is wide so every iteration has candidates to select."""
    config["name"] = "demo"
    config["system"].update(pressures_GPa=[0, 50], temperatures_K=[600])
    config["committee"].update(n_models=2, foundation_model=str(foundation), max_epochs=2)
    config["exploration"].update(steps=20, frame_interval=5)
    config["selection"].update(
        trust_lo_eV_A=1e-4,
        trust_hi_eV_A=10.0,
        max_per_iteration=3,
        max_iterations=iterations,
        converged_iterations=min(2, iterations),
    )
    return config


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, standin_model: Path) -> tuple[Path, Path]:
    """The demo campaign file, shrunk (8 seeds, 2 iterations), run once with its embedded
    server, real rockets and real MACE training from the stand-in foundation model."""
    tmp = tmp_path_factory.mktemp("demo")
    config = tiny_loop(
        yaml.safe_load((REPO / "configs" / "demo-emt.yaml").read_text()),
        standin_model,
        iterations=2,
    )
    config["seeds"]["n_structures"] = 8
    config["committee"]["held_out_fraction"] = 0.3  # a few held-out labels in 14
    config["workdir"] = str(tmp / "run")
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    result = al_loop("run", str(path), cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped after 2 iterations" in result.stdout, result.stdout
    return path, tmp


def query(path: Path, tmp: Path, *args: str) -> list[dict]:
    result = al_loop("db", "query", str(path), "--json", "--limit", "0", *args, cwd=tmp)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_run_labels_every_seed_and_each_selection(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    seeds = query(path, tmp, "--iteration", "0")
    assert len(seeds) == 8 and {d["status"] for d in seeds} == {"ok"}
    assert len({d["structure_id"] for d in seeds}) == 8
    assert all(d["code"] == "emt" and d["software"]["ase"] for d in seeds)
    for iteration in (1, 2):
        picked = query(path, tmp, "--iteration", str(iteration))
        assert len(picked) == 3 and {d["status"] for d in picked} == {"ok"}
    assert len(query(path, tmp)) == 14
    # the embedded server was stopped at exit, its data kept on disk
    assert not (tmp / "run" / "db" / "server.json").exists()
    assert (tmp / "run" / "db" / "wiredtiger").is_dir()


def test_every_stage_model_and_plot_is_recorded(demo: tuple[Path, Path]) -> None:
    from al_loop.campaign import open_campaign
    from al_loop.config import load_campaign

    path, tmp = demo
    config = load_campaign(path)
    with open_campaign(config, create=False) as session:
        db = session.store.db
        stages = {(r["iteration"], r["stage"]) for r in db.metrics.find({"status": "done"})}
        assert stages == {
            (0, "seed"),
            (0, "label"),
            (0, "train"),
            (0, "evaluate"),
            *((k, s) for k in (1, 2) for s in ("explore", "select", "label", "train", "evaluate")),
            (2, "finished"),
        }
        models = list(db.models.find())
        assert sorted((m["iteration"], m["member"]) for m in models) == [
            (k, m) for k in range(3) for m in range(2)
        ]
        for m in models:  # provenance: foundation, data, settings, metrics, versions
            assert m["foundation"]["sha256"] and m["label_ids"] and m["hyperparameters"]
            assert len(m["sha256"]) == 64
            assert m["metrics"]["valid"]["n"] >= 1 and m["software"]["mace-torch"]
        iteration2 = [m for m in models if m["iteration"] == 2]
        assert all(len(m["label_ids"]) > len(models[0]["label_ids"]) for m in iteration2)
        selected = db.structures.find({"requests": {"$elemMatch": {"iteration": 1}}})
        sources = [s["requests"][-1] for s in selected]
        assert len(sources) == 3 and {s["kind"] for s in sources} == {"md"}
        assert all(0 < s["force_spread"] < 10.0 for s in sources)
        evaluated = db.metrics.find_one({"iteration": 2, "stage": "evaluate"})["result"]
        assert evaluated["calibration"]["n"] == 3
        # the learning curve: every committee measured on the same fixed held-out set
        fixed = evaluated["held_out"]["fixed"]
        assert fixed["n"] == len(evaluated["fixed_structure_ids"]) >= 1
        curve = evaluated["learning_curve"]
        assert [p["iteration"] for p in curve] == [0, 1, 2]
        assert {p["n"] for p in curve} == {fixed["n"]}
        assert curve[-1]["energy_rmse_meV_atom"] == fixed["energy_rmse_meV_atom"]
        for point in curve:
            for key in ("energy_rmse_meV_atom", "force_rmse_eV_A", "pressure_rmse_GPa"):
                assert point[key] is not None and point[key] >= 0, (key, point)
        assert sum(b["n"] for b in fixed["by_pressure"].values()) == fixed["n"]
        # held-out labels of iteration 2 are a new slice, not part of the fixed set
        later = [name for name in evaluated["held_out"] if name != "fixed"]
        assert set(later) <= {"iteration 2"}
    plots = tmp / "run" / "plots"
    for name in (
        "learning_curve.png",
        "parity_000.png",
        "spread_001.png",
        "spread_002.png",
        "calibration_001.png",
        "calibration_002.png",
    ):
        assert (plots / name).read_bytes()[:4] == b"\x89PNG", name


def test_committee_is_reloaded_from_the_database(demo: tuple[Path, Path]) -> None:
    """Local model files are a cache: deleted, they come back from GridFS unchanged."""
    import shutil

    from ase.build import bulk

    from al_loop.campaign import open_campaign
    from al_loop.committee import load_committee
    from al_loop.config import load_campaign

    path, tmp = demo
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[1] = "Al"
    with open_campaign(load_campaign(path), create=False) as session:
        atoms.calc = load_committee(session, 2)
        before = atoms.get_potential_energy()
        shutil.rmtree(tmp / "run" / "models")
        atoms.calc = load_committee(session, 2)
        assert atoms.get_potential_energy() == before
        files = sorted((tmp / "run" / "models").rglob("*.model"))
        assert len(files) == 2
        files[0].write_bytes(b"changed by hand")  # a damaged cache is replaced too
        atoms.calc = load_committee(session, 2)
        assert atoms.get_potential_energy() == before


def test_rerun_is_idempotent(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    result = al_loop("run", str(path), cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert "train start" not in result.stdout and "explore start" not in result.stdout
    stats = json.loads(al_loop("db", "stats", str(path), "--json", cwd=tmp).stdout)
    assert stats["labels"] == 14 and stats["structures"] == 14
    assert stats["labels_by_status"] == {"ok": 14}
    assert stats["models"] == 6


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
    assert len(frames) == len(docs) == 14
    energies = sorted(d["energy_eV"] for d in docs)
    assert sorted(f.get_potential_energy() for f in frames) == pytest.approx(energies)
    assert all(f.get_forces().shape == (len(f), 3) for f in frames)
    with ase.db.connect(str(db)) as handle:
        rows = list(handle.select())
    assert len(rows) == 14
    assert sorted(r.energy for r in rows) == pytest.approx(energies)


def test_status_shows_stages(demo: tuple[Path, Path]) -> None:
    path, tmp = demo
    result = al_loop("status", str(path), cwd=tmp)
    assert result.returncode == 0, result.stderr
    assert "finished: max_iterations at iteration 2" in result.stdout
    lines = result.stdout.splitlines()
    labelled = [line for line in lines if "iteration" in line and " label " in line]
    assert len(labelled) == 3  # one line per recorded stage, whatever the terminal's width
    assert "label Fireworks: {'COMPLETED': 4}" in result.stdout  # the Fireworks by stage
    assert "labels {ok: 8}" in labelled[0] and "labels {ok: 3}" in labelled[1]
    assert any("iteration 1 select" in line and "selected 3" in line for line in lines)
    assert "'COMPLETED': 4" in result.stdout  # 8 seeds at 4 per Firework, then 3 and 3


def test_query_never_cuts_numbers(demo: tuple[Path, Path]) -> None:
    """An 80-column pipe: the table folds text but prints every number whole."""
    path, tmp = demo
    docs = query(path, tmp)
    table = subprocess.run(
        [AL_LOOP, "db", "query", str(path), "--limit", "0"],
        cwd=tmp,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=120,
    ).stdout
    assert "…" not in table
    for doc in docs:
        for key, spec in (("energy_per_atom_eV", ".4f"), ("pressure_GPa", ".1f")):
            assert format(doc[key], spec) in table, (key, doc[key])
    wide = al_loop("db", "query", str(path), "--limit", "0", "--wide", cwd=tmp).stdout
    assert all(doc["_id"] in wide for doc in docs)  # one line per label: ids whole


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
        assert result.stdout.strip().splitlines()[-1] == "4"  # 8 seeds by 4, then 3 and 3
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    assert serve.returncode == 0
    assert not state.exists()  # stopped cleanly by SIGTERM


def test_interrupted_run_resumes_without_losing_or_repeating_labels(
    tmp_path: Path, standin_model: Path
) -> None:
    """SIGTERM `al-loop run` in the middle of labelling, then run it again to the end."""
    import pymongo

    config = tiny_loop(
        yaml.safe_load((REPO / "configs" / "demo-emt.yaml").read_text()), standin_model, 1
    )
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
    assert "submitted before" in resumed.stdout
    assert "stopped after 1 iterations" in resumed.stdout  # and went on to the end
    docs = query(path, tmp_path, "--iteration", "0")
    assert len(docs) == 12 and {d["status"] for d in docs} == {"ok"}
    assert len({d["structure_id"] for d in docs}) == 12
    # at most the one label being computed at the kill was computed again
    assert sum(d["attempts"] for d in docs) <= 13
    assert len(query(path, tmp_path, "--iteration", "1")) == 3
    status = al_loop("status", str(path), cwd=tmp_path).stdout
    assert "'COMPLETED': 15" in status and "RUNNING" not in status


def test_read_only_commands_refuse_a_campaign_without_data(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "configs" / "demo-emt.yaml").read_text())
    config["name"] = "demo"
    config["committee"]["foundation_model"] = None
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


TINY_STUDENT = {
    "sample_steps": 20,
    "sample_frame_interval": 5,
    "sample_trajectories_per_condition": 1,
    "sample_min_atoms": 16,
    "sample_crystal_volumes": 2,
    "n_channels": 4,
    "hidden": [16],
    "epochs": 60,
    "learning_rate": 0.01,
    "final_learning_rate": 0.0005,
}
#: The pair-style student the phase and dynamics tests relax and run with: the distil test's
#: last fit, with the crystals ``phase.prototypes: [fcc, B2]`` add to its sample.
RELAXING_STUDENT = {**TINY_STUDENT, "epochs": 4}


def test_distil_stores_a_student_that_runs_md_in_lammps(demo: tuple[Path, Path]) -> None:
    """The tiny campaign (not converged) distilled: refused without --allow-unconverged; then
    the teacher's sample and the student in the database with their provenance, the student
    checked against LAMMPS, and a few hundred NVE steps in LAMMPS with its include file."""
    from al_loop.campaign import open_campaign
    from al_loop.config import load_campaign
    from al_loop.distillation import frames_read, usable
    from calculators.models.student.lammps_run import lammps_env, lammps_executable

    path, tmp = demo
    config = yaml.safe_load(path.read_text())
    config["student"] = TINY_STUDENT
    config["phase"] = {"prototypes": ["fcc", "B2"]}  # the crystals the sample adds
    distil_file = tmp / "demo-distil.yaml"
    distil_file.write_text(yaml.safe_dump(config))
    refused = al_loop("distil", str(distil_file), cwd=tmp)
    assert refused.returncode != 0 and "has not converged" in refused.stdout + refused.stderr
    done = al_loop("distil", str(distil_file), "--allow-unconverged", cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LAMMPS and PyTorch agree to" in done.stdout
    assert re.search(r"student\s+│\s+teacher\s+│\s+all", done.stdout), done.stdout

    with open_campaign(load_campaign(distil_file), create=False) as session:
        db = session.store.db
        (sample,) = db.distillations.find({"kind": "sample"})
        (student,) = db.distillations.find({"kind": "student"})
        teacher = sorted(str(m["_id"]) for m in db.models.find({"iteration": 2}))
        assert sorted(sample["teacher_models"]) == sorted(student["teacher_models"]) == teacher
        assert student["sample_key"] == sample["key"] and sample["frames"] >= 8
        data = session.store.read_file(student["file_id"])
        assert hashlib.sha256(data).hexdigest() == student["sha256"]
        assert student["lammps_agreement"]["max_relative_difference"] < 1e-6
        assert student["software"]["lammps"] and student["settings"]["hidden"] == [16]
        report = student["report"]
        assert report["student_vs_teacher"]["n"] == student["frames"]["test"] >= 1
        assert report["student_vs_teacher"]["force_rmse_eV_A"] > 0
        assert set(report["verdicts"]) >= {"energy_mae_meV_atom", "force_rmse_eV_A"}
        recorded = db.metrics.find_one({"iteration": 2, "stage": "distil"})
        assert recorded["status"] == "done"
        frames = frames_read(session.store.read_file(sample["file_id"]))
    assert sample["crystals"] == ["Cu:fcc", "Ni:fcc", "Al:fcc", "CuNi:B2", "AlCu:B2", "AlNi:B2"]
    crystals = [f for f in frames if f.info["trajectory"].startswith("crystal ")]
    assert len(crystals) == 6 * 2 * 2 and {f.info["T_K"] for f in crystals} == {0.0}
    start = next(f for f in frames if not usable(f, 0.3))  # a cell the student learned
    start = start.repeat([max(1, round(8 / n)) for n in start.cell.lengths()])
    start.write(tmp / "start.data", format="lammps-data", specorder=["Cu", "Ni", "Al"])
    folder = tmp / "run" / "student"
    assert (folder / "parity-student-vs-teacher.png").read_bytes()[:4] == b"\x89PNG"
    again = al_loop("distil", str(distil_file), "--allow-unconverged", cwd=tmp)
    assert again.returncode == 0 and student["sha256"][:12] in again.stdout  # recorded: reused
    assert "distil start" not in again.stdout

    # NVE in LAMMPS from the include file al-loop wrote, from a sample cell repeated to ~8 Å:
    # the total energy is conserved
    md = tmp / "md"
    md.mkdir()
    (md / "in.lmp").write_text(
        "\n".join(
            [
                "units metal",
                "atom_style atomic",
                f"read_data {tmp / 'start.data'}",
                "mass 1 63.546",
                "mass 2 58.693",
                "mass 3 26.982",
                "velocity all create 300 42 dist gaussian",
                f"include {folder / 'lammps' / 'student.lmp'}",
                "timestep 0.0005",
                "fix 1 all nve",
                "variable e equal etotal",
                "fix energy all print 10 '${e}' file etotal.txt screen no",
                "run 400",
            ]
        )
    )
    ran = subprocess.run(
        [str(lammps_executable()), "-in", "in.lmp", "-log", "none"],
        cwd=md,
        env=lammps_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = (md / "etotal.txt").read_text().splitlines()
    energies = [float(line) for line in lines if not line.startswith("#")]
    assert len(energies) >= 40
    drift = (max(energies) - min(energies)) / len(start)
    assert drift < 1e-3, f"total energy moved by {1000 * drift:.3f} meV/atom in 200 fs"

    # route 1: the same sample distilled into an ML-IAP nn on SNAP, stored with its descriptor
    config["student"] = {**TINY_STUDENT, "route": "mliap", "epochs": 20}
    distil_file.write_text(yaml.safe_dump(config))
    mliap = al_loop("distil", str(distil_file), "--allow-unconverged", cwd=tmp)
    assert mliap.returncode == 0, mliap.stdout + mliap.stderr
    assert "sample reused" in mliap.stdout and "LAMMPS and PyTorch agree to" in mliap.stdout
    with open_campaign(load_campaign(distil_file), create=False) as session:
        latest = session.store.distillations("demo", "student")[0]
        assert latest["route"] == "mliap" and latest["settings"]["twojmax"] == 6
        assert latest["lammps_agreement"]["max_relative_difference"] < 1e-6
        (descriptor,) = latest["companion_files"].values()
        assert "twojmax 6" in descriptor and "elems Cu Ni Al" in descriptor
        model = session.store.read_file(latest["file_id"]).decode()
    assert "NET 30 2 tanh 16 linear 1" in model
    include = (folder / "lammps" / "student.lmp").read_text()
    assert "pair_style mliap model nn" in include and "pair_coeff * * Cu Ni Al" in include

    # another fit (4 epochs, after the MD above: its include file replaces the student's); the
    # phase and dynamics tests below take this student (RELAXING_STUDENT): recorded, not refitted
    config["student"] = RELAXING_STUDENT
    distil_file.write_text(yaml.safe_dump(config))
    refit = al_loop("distil", str(distil_file), "--allow-unconverged", cwd=tmp)
    assert refit.returncode == 0, refit.stdout + refit.stderr
    assert "sample reused" in refit.stdout and "trajectory" not in refit.stdout


def distil_student(config: dict, path: Path, tmp: Path) -> None:
    """Write ``config`` with :data:`RELAXING_STUDENT` to ``path`` and distil it: recorded by
    the distil test when it ran before (the stage is skipped), fitted here when it did not."""
    config["student"] = RELAXING_STUDENT
    config["phase"] = {"prototypes": ["fcc", "B2"]}
    path.write_text(yaml.safe_dump(config))
    distilled = al_loop("distil", str(path), "--allow-unconverged", cwd=tmp)
    assert distilled.returncode == 0, distilled.stdout + distilled.stderr


def test_phase_relaxes_candidates_stores_each_curve_and_resumes(demo: tuple[Path, Path]) -> None:
    """The tiny campaign's student (pair route) relaxes elemental and binary candidates at 0,
    25 and 50 GPa: tables, plots, every curve in the database with the student's hash; a rerun
    is recorded; a new prototype relaxes only its own candidates; the teacher can relax too."""
    from al_loop.campaign import open_campaign
    from al_loop.config import load_campaign

    path, tmp = demo
    config = yaml.safe_load(path.read_text())
    phase_file = tmp / "demo-phase.yaml"
    distil_student(config, phase_file, tmp)
    # a 4-epoch student: the teacher disagrees with it everywhere (median 236 meV/atom,
    # measured), so its check is opened wide here to test the stage's mechanics
    wide = {"max_teacher_gap_meV_atom": 1e5, "max_teacher_spread_eV_A": 100.0}
    config["phase"] = {"pressures_GPa": [0, 25, 50], "prototypes": ["fcc", "hcp", "B2"], **wide}
    phase_file.write_text(yaml.safe_dump(config))
    done = al_loop("phase", str(phase_file), cwd=tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stable phases" in done.stdout and "relaxed by the student" in done.stdout
    folder = tmp / "run" / "phase"
    for name in ("hull.csv", "enthalpies.csv", "transitions.csv", "phase.json"):
        assert (folder / name).stat().st_size > 0
    for name in ("enthalpy-differences-1.png", "stability-map.png", "hull-0GPa.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((folder / "phase.json").read_text())
    # 3 elements x (fcc, hcp) + 3 pairs x B2 + one labelled structure per composition
    assert summary["candidates"] >= 9 and summary["pressures_GPa"] == [0, 25, 50]
    with open_campaign(load_campaign(phase_file), create=False) as session:
        student = session.store.distillations("demo", "student")[0]
        curves = session.store.phase_curves("demo", summary["key"])
        assert len(curves) == summary["candidates"]
        assert {c["model"]["sha256"] for c in curves} == {student["sha256"]}
        assert all(len(c["rows"]) == 3 == len(c["structures"]) for c in curves)
        assert {"Cu:fcc", "CuNi:B2"} <= {c["name"] for c in curves}
    checked = summary["model_vs_teacher_enthalpy_meV_atom"]
    assert checked["n"] == 3 * summary["candidates"] - len(summary["unconverged"])
    assert summary["teacher_unsure"] == [] and checked["median_abs"] > 0
    assert set(summary["stable"]) == {"0", "25", "50"}
    for names in summary["stable"].values():  # each element's best phase is on every hull
        assert {"Cu", "Ni", "Al"} <= {n.split(":")[0] for n in names}

    again = al_loop("phase", str(phase_file), cwd=tmp)
    assert again.returncode == 0 and "phase start" not in again.stdout
    config["phase"]["prototypes"] = ["fcc", "hcp", "B2", "bcc"]
    phase_file.write_text(yaml.safe_dump(config))
    more = al_loop("phase", str(phase_file), cwd=tmp)
    assert more.returncode == 0, more.stdout + more.stderr
    assert json.loads((folder / "phase.json").read_text())["relaxed_now"] == 3  # bcc x 3

    config["phase"] = {"pressures_GPa": [0, 50], "prototypes": ["fcc"], "from_campaign": 0, **wide}
    config["phase"]["model"] = "teacher"
    phase_file.write_text(yaml.safe_dump(config))
    teacher = al_loop("phase", str(phase_file), cwd=tmp)
    assert teacher.returncode == 0, teacher.stdout + teacher.stderr
    assert "relaxed by the teacher" in teacher.stdout

    # the oracle (EMT here) relaxes too: each run a label of "demo/phase", none repeated
    config["phase"]["model"] = "oracle"
    phase_file.write_text(yaml.safe_dump(config))
    oracle = al_loop("phase", str(phase_file), cwd=tmp)
    assert oracle.returncode == 0, oracle.stdout + oracle.stderr
    assert "relaxed by the emt oracle" in oracle.stdout
    runs = json.loads((folder / "phase.json").read_text())["oracle_runs"]
    assert runs["run"] >= 6 and runs["recalled"] == 0 and runs["campaign"] == "demo/phase"
    with open_campaign(load_campaign(phase_file), create=False) as session:
        labels = session.store.count_labels(LabelQuery(campaign="demo/phase", status="ok"))
        assert labels == runs["run"]
        # the curves lost (as by a crash before they were stored): the rerun is all recalled
        session.store.db.phases.delete_many({"campaign": "demo", "model.model": "oracle"})
        session.store.db.metrics.delete_many({"campaign": "demo", "stage": "phase"})
    rerun = al_loop("phase", str(phase_file), cwd=tmp)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert json.loads((folder / "phase.json").read_text())["oracle_runs"] == {
        **runs,
        "run": 0,
        "recalled": runs["run"],
    }

    # --model and --check from the command line: both maps side by side, the oracle's recalled,
    # and the campaign file recorded in the log stays the user's (no "changed" entry)
    def history() -> int:
        with open_campaign(load_campaign(phase_file), create=False) as session:
            return len(session.log.document().get("config_history", []))

    before = history()
    config["phase"]["model"] = "student"
    config["phase"]["prototypes"] = ["fcc", "hcp"]  # two phases a composition: a ΔH to compare
    phase_file.write_text(yaml.safe_dump(config))
    both = al_loop("phase", str(phase_file), "--model", "teacher", "--check", "oracle", cwd=tmp)
    assert both.returncode == 0, both.stdout + both.stderr
    text = " ".join(both.stdout.split())
    assert "relaxed by the teacher" in text and "relaxed by the emt oracle" in text
    assert "transitions: teacher against oracle" in text or "no transition in either" in text
    assert "ΔH(P) of teacher against oracle" in text
    checked = json.loads((folder / "check-oracle.json").read_text())
    assert set(checked) == {"transitions", "delta_h", "target_GPa"}
    assert all(v["n"] >= 1 and "distrusted" in v for v in checked["delta_h"].values())
    again = al_loop("phase", str(phase_file), "--model", "teacher", cwd=tmp)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "campaign file changed" not in again.stdout + again.stderr
    assert history() == before + 1  # the edit to phase.model above, not the two --model runs

    # the default check: the teacher leaves out the cells where it disagrees, and says so
    config["phase"] = {"pressures_GPa": [0, 25, 50], "prototypes": ["fcc", "hcp", "B2"]}
    phase_file.write_text(yaml.safe_dump(config))
    checked_run = al_loop("phase", str(phase_file), cwd=tmp)
    assert checked_run.returncode == 0, checked_run.stdout + checked_run.stderr
    unsure = json.loads((folder / "phase.json").read_text())["teacher_unsure"]
    assert unsure and all(abs(u["enthalpy_gap_meV_atom"]) > 50 for u in unsure)
    assert "left out where the teacher disagrees" in checked_run.stdout


def test_liquid_and_melting_runs_with_the_student_are_stored_and_resumed(
    demo: tuple[Path, Path],
) -> None:
    """The mechanics of `al-loop liquid` and `al-loop melting` on the tiny campaign's student
    (its physics means nothing: tests/integration/test_dynamics.py checks the analysis on EAM
    copper): results in the database with the student's hash, plots, reruns recalled, a
    composition outside the campaign refused."""
    from al_loop.campaign import open_campaign
    from al_loop.config import load_campaign

    path, tmp = demo
    config = yaml.safe_load(path.read_text())
    distil_file = tmp / "demo-dynamics.yaml"
    distil_student(config, distil_file, tmp)
    quick = ["--solid-steps", "100", "--melt-steps", "100"]
    short = ["--atoms", "32", "--steps", "200", "--melt-steps", "100"]
    args = ["--composition", "CuNi", "--temperatures", "600,900", *short]
    liquid = al_loop("liquid", str(distil_file), *args, "--equilibration-steps", "100", cwd=tmp)
    assert liquid.returncode == 0, liquid.stdout + liquid.stderr
    assert liquid.stdout.count("m²/s") >= 4  # a progress line per run, and the table
    with open_campaign(load_campaign(distil_file), create=False) as session:
        runs = session.store.dynamics("demo", "liquid")
        latest = session.store.distillations("demo", "student")[0]
    assert len(runs) == 2 and {r["student"]["sha256"] for r in runs} == {latest["sha256"]}
    assert {r["result"]["settings"]["temperature_K"] for r in runs} == {600.0, 900.0}
    for r in runs:
        assert set(r["result"]["diffusion"]) == {"Cu", "Ni"} and r["result"]["n_atoms"] == 32
    assert (tmp / "run" / "dynamics" / "liquid-CuNi-rdf.png").read_bytes()[:4] == b"\x89PNG"
    again = al_loop("liquid", str(distil_file), *args, "--equilibration-steps", "100", cwd=tmp)
    assert again.returncode == 0 and "GPa: D" not in again.stdout  # recalled, not rerun
    wrong = al_loop(
        "liquid", str(distil_file), "--composition", "FeNi", "--temperatures", "900", cwd=tmp
    )
    assert wrong.returncode == 2 and "Fe not among the campaign's elements" in wrong.stderr
    _liquid_on_a_queue(distil_file, tmp, config, short)
    # the melting line's mechanics (a 4-epoch student's T_m means nothing): stored, resumed
    melt = ["--element", "Cu", "--pressures", "0", "--guess", "800", "--repeat", "2,2,4"]
    melted = al_loop("melting", str(distil_file), *melt, "--steps", "200", *quick, cwd=tmp)
    assert melted.returncode == 0, melted.stdout + melted.stderr
    with open_campaign(load_campaign(distil_file), create=False) as session:
        (line,) = session.store.dynamics("demo", "melting")
    assert line["result"]["n_atoms"] == 64 and line["result"]["attempts"][0]["guess_K"] == 800
    assert (tmp / "run" / "dynamics" / "melting-Cu.png").read_bytes()[:4] == b"\x89PNG"
    again = al_loop("melting", str(distil_file), *melt, "--steps", "200", *quick, cwd=tmp)
    assert again.returncode == 0 and "0 GPa: 800 K" not in again.stdout  # recalled


def _liquid_on_a_queue(distil_file: Path, tmp: Path, config: dict, short: list[str]) -> None:
    """`al-loop liquid --queue md`: one Firework of the queue's category, run by a job of the
    real SLURM cluster, stored like a run here; the dataset being the embedded server, the
    command waits for the job (the server stops with its last user); given again, it finds
    the Firework completed and adds nothing."""
    from helpers.slurm_cluster import start_cluster

    from al_loop.campaign import open_campaign
    from al_loop.config import load_campaign

    start_cluster()
    config = {**config, "queues": {"md": {"system": "slurm", "walltime": "00:10:00"}}}
    distil_file.write_text(yaml.safe_dump(config))
    args = ["--composition", "CuNi", "--temperatures", "1200", *short, "--queue", "md"]
    queued = al_loop("liquid", str(distil_file), *args, cwd=tmp)
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert "on queue md: Firework" in queued.stdout and "added, 1 jobs" in queued.stdout
    assert "waiting here for the job" in queued.stdout and "done: `al-loop liquid" in queued.stdout
    with open_campaign(load_campaign(distil_file), create=False) as session:
        (fw,) = session.fireworks.launchpad.fireworks.find({"spec.al_loop.stage": "liquid"})
        assert fw["state"] == "COMPLETED" and fw["spec"]["_category"] == "md"
        runs = session.store.dynamics("demo", "liquid")
    assert sorted(r["result"]["settings"]["temperature_K"] for r in runs) == [600.0, 900.0, 1200.0]
    twice = al_loop("liquid", str(distil_file), *args, cwd=tmp)
    assert re.search(r"Firework \d+ completed before, 0 jobs", twice.stdout), twice.stdout
    status = al_loop("status", str(distil_file), cwd=tmp)
    assert "liquid Fireworks: {'COMPLETED': 1}" in status.stdout, status.stdout
