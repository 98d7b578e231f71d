"""Labelling and training through a real single-node SLURM cluster
(tests/helpers/slurm_cluster.py): jobs from al-loop's template run rocket launchers; a job
cancelled with scancel and a job past its wall time leave RUNNING Fireworks that the next label
stage finds through the job-id file, reruns in new jobs, and labels without a DFT run done
twice; the committee trains in jobs of its own queue, a cancelled one trained again. The PBS
template is rendered and checked (there is no PBS here)."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.fault_campaign import slow_pw_campaign
from helpers.slurm_cluster import start_cluster

from al_loop.campaign import open_campaign
from al_loop.config import load_campaign
from al_loop.stages import LabelStage, SeedStage, TrainStage
from launchers.queues import JOB_ID_FILE, QueueSpec, job_name, make_qadapter

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slurm() -> None:
    start_cluster()


def _campaign(tmp_path: Path, mongo_uri: str, name: str, **changes: Any) -> Path:
    """A campaign of its own name per test: jobs are counted by name (a finished test's job
    may still be leaving the queue)."""
    database = f"slurm_{uuid.uuid4().hex[:8]}"
    config = {
        "name": name,
        "workdir": str(tmp_path / "run"),
        "system": {"elements": ["Cu", "Ni"]},
        "seeds": {"prototypes": ["fcc"], "n_structures": 4, "max_atoms": 4},
        "store": {"uri": mongo_uri, "database": database, "launchpad_database": f"{database}_fw"},
        "launcher": {"batch_size": 2, "queue": "dft"},
        "queues": {"dft": {"system": "slurm", "walltime": "00:05:00", "max_jobs": 1}},
        **changes,
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _committee_on(standin_model: Path, queue: str) -> dict[str, Any]:
    """A two-member committee fine-tuned for one epoch from the stand-in, trained in ``queue``."""
    return {
        "n_models": 2,
        "foundation_model": str(standin_model),
        "max_epochs": 1,
        "held_out_fraction": 0.0,
        "device": "cpu",
        "queue": queue,
    }


def _jobs(name: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True)
    return out.stdout.split()


def test_rockets_in_slurm_jobs_label_the_structures(
    slurm: None, tmp_path: Path, mongo_uri: str
) -> None:
    """Two Fireworks, one job at a time (max_jobs 1): the first job takes both."""
    events: list[Any] = []
    with open_campaign(load_campaign(_campaign(tmp_path, mongo_uri, "slurm-label"))) as session:
        SeedStage(session).run(0)
        outcome = LabelStage(session, events.append).run(0)
        assert outcome.done, outcome.result
        assert outcome.result["labels_by_status"] == {"ok": 4}
        assert outcome.result["fireworks"] == {"COMPLETED": 2}
        submitted = [e.figures["jobs_submitted"] for e in events if "jobs_submitted" in e.figures]
        assert submitted and max(submitted) == 1  # the cap
        jobs = sorted((tmp_path / "run" / "queues" / "dft" / "jobs").glob(f"*/{JOB_ID_FILE}"))
        assert jobs, "no job wrote its id"
        script = (jobs[0].parent / "FW_submit.script").read_text()
        assert "#SBATCH --time=00:05:00" in script and "launchers.rlaunch" in script
        launches = list(session.fireworks.launchpad.launches.find({}, {"launch_dir": 1}))
        assert all(str(jobs[0].parent) in d["launch_dir"] for d in launches)


def test_a_cancelled_job_and_a_job_past_its_wall_time_lose_nothing(
    slurm: None, tmp_path: Path, mongo_uri: str, fast_pseudos: Path
) -> None:
    flag = tmp_path / "slow"
    flag.touch()
    path = _campaign(
        tmp_path,
        mongo_uri,
        "slurm-faults",
        **slow_pw_campaign(fast_pseudos, flag),
        launcher={"batch_size": 1, "queue": "dft"},
        queues={"dft": {"system": "slurm", "walltime": "00:01:00", "max_jobs": 2}},
    )
    name = job_name("slurm-faults", "dft")
    with open_campaign(load_campaign(path)) as session:
        SeedStage(session).run(0)
        fireworks = session.fireworks
        fireworks.submit_labels(
            session.store.structure_ids("slurm-faults", 0), 0, session.oracle, session.elements, 1
        )
        assert len(fireworks.submit_to_queue("dft", 2)) == 2
        deadline = time.monotonic() + 120
        while fireworks.states(0).get("RUNNING", 0) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert fireworks.states(0) == {"RUNNING": 2}, "the jobs did not start their Fireworks"
        first = sorted(_jobs(name))[0]
        subprocess.run(["scancel", first], check=True)
        deadline = time.monotonic() + 240  # SLURM ends the other job at its 1-minute limit
        while _jobs(name) and time.monotonic() < deadline:
            time.sleep(2)
        assert _jobs(name) == [], "the job past its wall time is still in the queue"
        assert fireworks.states(0) == {"RUNNING": 2}  # both left behind
        flag.unlink()  # the reruns start pw.x at once
        outcome = LabelStage(session).run(0)
        assert outcome.done, outcome.result
        assert outcome.result["labels_by_status"] == {"ok": 2}
        labels = list(session.store.db.labels.find({}))
        assert all(d["attempts"] == 2 for d in labels)  # the killed attempt, then the one
        assert not any(h.get("stale") for d in labels for h in d["history"])  # no DFT twice
        lp = fireworks.launchpad
        assert {d["state"] for d in lp.launches.find({})} == {"FIZZLED", "COMPLETED"}
        assert lp.launches.count_documents({}) == 4


def test_the_pbs_template_renders(tmp_path: Path) -> None:
    spec = QueueSpec(
        name="dft",
        system="pbs",
        category="dft",
        walltime="02:00:00",
        nodes=2,
        cores=16,
        account="geo123",
        partition="normal",
        memory="64gb",
        modules=("quantum-espresso/7.2",),
        pre_rocket=("export OMP_NUM_THREADS=1",),
    )
    script = make_qadapter(
        spec, "cafeni", tmp_path / "my_launchpad.yaml", tmp_path / "my_fworker.yaml"
    ).get_script_str(str(tmp_path))
    for line in (
        "#PBS -N al-loop-cafeni-dft",
        "#PBS -A geo123",
        "#PBS -q normal",
        "#PBS -l walltime=02:00:00",
        "#PBS -l nodes=2:ppn=16",
        "#PBS -l mem=64gb",
        "#PBS -V",
        "module load quantum-espresso/7.2",
        "export OMP_NUM_THREADS=1",
        f'echo "$PBS_JOBID" > {JOB_ID_FILE}',
        f"cd {tmp_path}",
    ):
        assert line in script.splitlines(), (line, script)
    assert f"-m launchers.rlaunch -l {tmp_path / 'my_launchpad.yaml'}" in script
    assert "$${" not in script  # every unset value's line left out
    slurm = make_qadapter(
        QueueSpec(name="gpu", system="slurm", category="train", gpus_per_node=1),
        "cafeni",
        tmp_path / "lp.yaml",
        tmp_path / "fw.yaml",
    ).get_script_str(str(tmp_path))
    assert "#SBATCH --gpus-per-node=1" in slurm and "--account" not in slurm


def test_launch_queue_and_status_from_the_cli(slurm: None, tmp_path: Path, mongo_uri: str) -> None:
    import sys

    al_loop = str(Path(sys.executable).parent / "al-loop")
    path = _campaign(tmp_path, mongo_uri, "slurm-cli")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([al_loop, *args], capture_output=True, text=True, timeout=300)

    with open_campaign(load_campaign(path)) as session:
        SeedStage(session).run(0)
        ids = session.store.structure_ids("slurm-cli", 0)
        session.fireworks.submit_labels(ids, 0, session.oracle, session.elements, 2)
    wrong = cli("launch", str(path), "--queue", "gpu")
    assert wrong.returncode == 2 and "not a queue" in wrong.stderr
    launched = cli("launch", str(path), "--queue", "dft")
    assert launched.returncode == 0, launched.stderr
    assert "submitted 1 jobs to dft" in launched.stdout  # max_jobs 1
    status = cli("status", str(path))
    assert status.returncode == 0 and "queue dft:" in status.stdout, status.stderr
    deadline = time.monotonic() + 120
    while _jobs(job_name("slurm-cli", "dft")) and time.monotonic() < deadline:
        time.sleep(1)
    with open_campaign(load_campaign(path), create=False) as session:
        assert session.fireworks.states(0) == {"COMPLETED": 2}
        assert session.store.label_counts(ids, session.label_hashes) == {"ok": 4}


def test_a_queue_that_refuses_the_jobs_stops_the_stage(
    slurm: None, tmp_path: Path, mongo_uri: str
) -> None:
    """sbatch refuses the job (no such partition): the stage stops not done at once, its
    Fireworks still READY for a corrected queue, instead of submitting forever."""
    path = _campaign(
        tmp_path,
        mongo_uri,
        "slurm-refused",
        queues={"dft": {"system": "slurm", "partition": "no-such-partition"}},
    )
    with open_campaign(load_campaign(path)) as session:
        SeedStage(session).run(0)
        started = time.monotonic()
        outcome = LabelStage(session).run(0)
        assert not outcome.done and time.monotonic() - started < 60
        assert session.fireworks.states(0) == {"READY": 2}
        assert session.store.db.labels.count_documents({}) == 0


def test_the_committee_trains_in_jobs_of_its_queue_and_a_cancelled_one_again(
    slurm: None, tmp_path: Path, mongo_uri: str, standin_model: Path
) -> None:
    """committee.queue: each member a Firework of the training queue's category (labels stay
    local); the job training the first member is cancelled (scancel) mid-training: the stage
    repairs its Firework, a new job trains it, and each member is stored once, signed, with
    its metrics measured by the stage."""
    path = _campaign(
        tmp_path,
        mongo_uri,
        "slurm-train",
        launcher={"batch_size": 2},  # labels by local launchers
        committee=_committee_on(standin_model, "gpu"),
        queues={
            "dft": {"system": "slurm"},
            "gpu": {"system": "slurm", "category": "training", "walltime": "00:10:00"},
        },
    )
    events: list[Any] = []
    with open_campaign(load_campaign(path)) as session:
        SeedStage(session).run(0)
        assert LabelStage(session).run(0).done
        assert not (tmp_path / "run" / "queues" / "gpu").exists()  # no label went there
        fireworks = session.fireworks
        cancelled: list[str] = []

        def cancel_the_first_training() -> None:
            """scancel the job that runs the first training Firework seen RUNNING (its job id
            is in the job folder above the launch folder)."""
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                running = fireworks.launchpad.launches.find_one(
                    {"state": "RUNNING", "launch_dir": {"$regex": "/queues/gpu/"}}
                )
                if running is not None:
                    folder = Path(running["launch_dir"])
                    job_file = next(
                        p / JOB_ID_FILE for p in folder.parents if (p / JOB_ID_FILE).is_file()
                    )
                    time.sleep(3)  # inside mace's training
                    job = job_file.read_text().strip()
                    subprocess.run(["scancel", job], check=True)
                    cancelled.append(job)
                    return
                time.sleep(0.5)

        import threading

        canceller = threading.Thread(target=cancel_the_first_training)
        canceller.start()
        outcome = TrainStage(session, events.append).run(0)
        canceller.join()
        assert cancelled, "no training Firework was seen running in a job"
        assert outcome.done, outcome.result
        assert outcome.result["models"] == 2 and outcome.result["queue"] == "gpu"
        models = session.store.models("slurm-train", 0)
        assert [d["member"] for d in models] == [0, 1]
        assert all(d["metrics"]["valid"].get("force_rmse_eV_A") is not None for d in models)
        for doc in models:
            session.store.read_model_file(doc)  # signed by this machine's key
        trainings = list(fireworks.launchpad.fireworks.find({"spec.al_loop.stage": "train"}))
        assert {d["spec"]["_category"] for d in trainings} == {"training"}
        assert {d["state"] for d in trainings} == {"COMPLETED"} and len(trainings) == 2
        ids = [d["fw_id"] for d in trainings]
        launches = list(fireworks.launchpad.launches.find({"fw_id": {"$in": ids}}))
        assert sorted(d["state"] for d in launches) == ["COMPLETED", "COMPLETED", "FIZZLED"]
        jobs_dir = tmp_path / "run" / "queues" / "gpu" / "jobs"
        assert all(str(jobs_dir) in d["launch_dir"] for d in launches)
        submitted = [e.figures["jobs_submitted"] for e in events if "jobs_submitted" in e.figures]
        assert len(submitted) >= 2  # the first job, then one for the repaired Firework


def test_a_worker_without_the_campaign_key_refuses_the_training_job(
    slurm: None, tmp_path: Path, mongo_uri: str, standin_model: Path
) -> None:
    """The queue's jobs sign with another key than the campaign machine's: the worker refuses
    the training job before loading anything, the Firework FIZZLEs, and the stage stops
    unfinished naming the error; with the key set right, the next run reruns it and trains."""
    other_key = tmp_path / "other.key"
    queues = {
        "dft": {"system": "slurm"},
        "gpu": {
            "system": "slurm",
            "walltime": "00:10:00",
            "pre_rocket": [f"export AL_LOOP_MODEL_KEY_FILE={other_key}"],
        },
    }
    changes = {"launcher": {"batch_size": 2}, "committee": _committee_on(standin_model, "gpu")}
    path = _campaign(tmp_path, mongo_uri, "slurm-key", queues=queues, **changes)
    with open_campaign(load_campaign(path)) as session:
        SeedStage(session).run(0)
        assert LabelStage(session).run(0).done
        outcome = TrainStage(session).run(0)
        assert not outcome.done
        assert "UntrustedModel" in outcome.result["unfinished"], outcome.result
        assert "training job of slurm-key iteration 0" in outcome.result["unfinished"]
        assert session.store.models("slurm-key", 0) == []
        assert other_key.is_file()  # the worker made its own key: it had none
    fixed = yaml.safe_load(path.read_text())
    fixed["queues"]["gpu"]["pre_rocket"] = []
    path.write_text(yaml.safe_dump(fixed))
    with open_campaign(load_campaign(path)) as session:
        outcome = TrainStage(session).run(0)
        assert outcome.done, outcome.result
        assert outcome.result["models"] == 2
        states = session.fireworks.states(0, "train")
        assert states == {"COMPLETED": 2}  # the FIZZLED ones rerun, none added
