"""Labelling through FireWorks end to end: real server, real LaunchPad, real ``rlaunch``, real EMT.

Every test gets a fresh dataset database and LaunchPad database on the session's secantusdb
server, submits labelling workflows for what no Firework holds
(:func:`launchers.workflows.label_coverage`) and runs them with ``rlaunch rapidfire``
subprocesses (:mod:`launchers.rockets`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from fireworks import LaunchPad

from calculators.oracles import Oracle, make_oracle
from database import EmbeddedServer, LabelQuery, Store
from launchers import (
    fworker_env,
    label_workflows,
    make_fworker,
    make_launchpad,
    rerun_lost_local_runs,
    run_workers,
    start_workers,
    workflow_states,
    write_fworker_file,
    write_launchpad_file,
)
from launchers.rockets import wait_workers
from launchers.workflows import label_coverage

pytestmark = pytest.mark.integration

CAMPAIGN = "cunial"
ELEMENTS = ("Cu", "Ni", "Al")


def random_cells(n: int, seed: int = 0) -> list[Atoms]:
    """``n`` small rattled fcc-based Cu-Ni-Al cells (2-4 atoms) with random substitution.

    Lattice constants from 3.40 to 3.80 A give labels under compression and under tension.
    """
    rng = np.random.default_rng(seed)
    cells = []
    for _ in range(n):
        natoms = int(rng.integers(2, 5))
        a = float(rng.uniform(3.40, 3.80))
        if natoms == 4:
            atoms = bulk("Cu", "fcc", a=a, cubic=True)
        else:
            atoms = bulk("Cu", "fcc", a=a) * (natoms, 1, 1)
        atoms.symbols[:] = list(rng.choice(ELEMENTS, size=natoms))
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        cells.append(atoms)
    return cells


def fe_cell() -> Atoms:
    """A cell EMT has no parameters for."""
    atoms = bulk("Fe", "bcc", a=2.87, cubic=True)
    atoms.rattle(0.02, seed=7)
    return atoms


def emt_energy(atoms: Atoms, oracle: Oracle) -> tuple[float, np.ndarray]:
    reference = atoms.copy()
    reference.calc = EMT(**oracle.settings.to_dict())
    return reference.get_potential_energy(), reference.get_forces()


@dataclass
class Rig:
    """One campaign's labelling setup: dataset, LaunchPad, the YAML files rlaunch reads."""

    store: Store
    lp: LaunchPad
    launchpad_file: Path
    fworker_file: Path
    root: Path
    oracle: Oracle
    rounds: int = 0

    @property
    def store_spec(self) -> dict[str, str]:
        return {
            "database": self.store.database_name,
            "launchpad_database": self.store.launchpad_database,
        }

    def submit(self, ids: list[str], iteration: int = 0, batch_size: int = 1) -> tuple[int, bool]:
        """Submit what no labelling Firework of ``iteration`` holds yet, as the label stage
        does (launchers.workflows.label_coverage); returns (the iteration's first fw_id,
        whether any was added)."""
        covered = label_coverage(self.lp, CAMPAIGN, iteration, self.oracle.physics_hash_for(()))
        new = [sid for sid in ids if sid not in covered]
        workflows = label_workflows(
            new, CAMPAIGN, iteration, self.oracle, self.store_spec, batch_size=batch_size
        )
        if workflows:
            self.lp.bulk_add_wfs(workflows)
        mine = {"spec.al_loop.campaign": CAMPAIGN, "spec.al_loop.iteration": iteration}
        first = self.lp.fireworks.find_one(mine, {"fw_id": 1}, sort=[("fw_id", 1)])
        return first["fw_id"], bool(workflows)

    def launch_dir(self) -> Path:
        """A new folder for the next round of rockets."""
        self.rounds += 1
        return self.root / f"round{self.rounds}"

    def run(self, workers: int = 1, timeout_s: float = 45.0) -> Path:
        launch_dir = self.launch_dir()
        codes = run_workers(
            self.launchpad_file, self.fworker_file, launch_dir, workers, timeout_s=timeout_s
        )
        assert codes == [0] * workers, worker_logs(launch_dir)
        return launch_dir

    def fw_states(self) -> dict[int, str]:
        return {
            d["fw_id"]: d["state"] for d in self.lp.fireworks.find({}, {"fw_id": 1, "state": 1})
        }

    def labels(self) -> list[dict[str, Any]]:
        return list(self.store.find_labels(with_arrays=False))

    def launches(self, fw_id: int | None = None) -> list[dict[str, Any]]:
        query = {} if fw_id is None else {"fw_id": fw_id}
        return list(self.lp.launches.find(query).sort("launch_id", 1))


def worker_logs(launch_dir: Path) -> str:
    """The rlaunch logs of a round (shown when a worker fails)."""
    return "\n".join(
        f"--- {p}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(launch_dir.glob("worker*/rlaunch.log"))
    )


@pytest.fixture
def make_rig(
    store: Store, mongo_uri: str, mongo_server: EmbeddedServer, tmp_path: Path
) -> Iterator[Any]:
    """Build a :class:`Rig`; ``route="uri"`` gives workers the URI, ``"data_dir"`` the folder."""
    launchpads: list[LaunchPad] = []

    def build(route: str = "uri") -> Rig:
        lp = make_launchpad(mongo_uri, store.launchpad_database)
        lp.reset("", require_password=False)
        launchpads.append(lp)
        if route == "uri":
            env = {"al_loop_store_uri": mongo_uri}
        else:  # the embedded server's folder: workers find its URI in server.json
            env = fworker_env(data_dir=mongo_server.data_dir)
            assert env == {"al_loop_store_data_dir": str(mongo_server.data_dir)}
        root = tmp_path / "fw"
        launchpad_file = write_launchpad_file(
            root / "my_launchpad.yaml", mongo_uri, store.launchpad_database
        )
        fworker_file = write_fworker_file(
            root / "my_fworker.yaml", make_fworker("test-worker", None, env)
        )
        return Rig(store, lp, launchpad_file, fworker_file, root, make_oracle("emt"))

    yield build
    for lp in launchpads:
        lp.connection.close()


# -- the required test: 50 structures, two concurrent workers -------------------------------------


@pytest.mark.timeout(120)
def test_fifty_structures_two_concurrent_workers(make_rig: Any) -> None:
    rig = make_rig("uri")
    cells = random_cells(50, seed=2024)
    ids = rig.store.add_structures(cells, CAMPAIGN, 0, {"kind": "seed"})
    assert len(set(ids)) == 50
    by_id = dict(zip(ids, cells, strict=True))

    fw_id, added = rig.submit(ids, batch_size=1)
    assert added and isinstance(fw_id, int)
    assert rig.lp.fireworks.count_documents({}) == 50
    assert workflow_states(rig.lp, CAMPAIGN, 0) == {"READY": 50}

    launch_dir = rig.launch_dir()
    start = time.monotonic()
    processes = start_workers(rig.launchpad_file, rig.fworker_file, launch_dir, 2)
    try:
        codes = wait_workers(processes, timeout_s=90)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    elapsed = time.monotonic() - start
    assert codes == [0, 0], worker_logs(launch_dir)

    # FireWorks: every Firework COMPLETED exactly once
    assert workflow_states(rig.lp, CAMPAIGN, 0) == {"COMPLETED": 50}
    assert set(rig.fw_states().values()) == {"COMPLETED"}
    launches = rig.launches()
    assert len(launches) == 50
    assert Counter(la["fw_id"] for la in launches) == Counter(rig.fw_states().keys())
    assert {la["state"] for la in launches} == {"COMPLETED"}
    assert all(la["action"]["stored_data"]["labelled"] == 1 for la in launches)
    assert sum(la["action"]["stored_data"]["skipped"] for la in launches) == 0

    # both workers did work (each worker launches inside its own folder)
    per_worker = Counter(Path(la["launch_dir"]).relative_to(launch_dir).parts[0] for la in launches)
    assert set(per_worker) == {"worker0", "worker1"}, per_worker
    assert all(n >= 1 for n in per_worker.values()), per_worker
    assert {la["fworker"]["name"] for la in launches} == {"test-worker"}
    assert all(la["host"] for la in launches)

    # the dataset: 50 ok labels, one per structure and settings hash
    labels = rig.labels()
    assert len(labels) == 50
    assert {d["structure_id"] for d in labels} == set(ids)
    assert {d["status"] for d in labels} == {"ok"}
    keys = Counter((d["structure_id"], d["physics_hash"]) for d in labels)
    assert max(keys.values()) == 1
    assert {d["physics_hash"] for d in labels} == {rig.oracle.physics_hash_for(["Cu"])}
    assert all(d["attempts"] == 1 and d["history"] == [] for d in labels)
    settings = rig.oracle.settings.to_dict()
    assert all(d["code"] == "emt" and d["settings"] == settings for d in labels)
    # the labels' provenance names the two worker processes too
    assert len({d["claimed_by"]["pid"] for d in labels}) == 2
    assert {
        Path(d["claimed_by"]["launch_dir"]).relative_to(launch_dir).parts[0] for d in labels
    } == {"worker0", "worker1"}
    assert rig.store.stats(CAMPAIGN)["labels_by_status"] == {"ok": 50}

    # queries agree with a direct count over the documents
    def count(query: LabelQuery) -> int:
        return len(list(rig.store.find_labels(query, with_arrays=False)))

    assert count(LabelQuery(campaign=CAMPAIGN)) == 50
    assert count(LabelQuery(campaign=CAMPAIGN, iteration=0)) == 50
    assert count(LabelQuery(campaign=CAMPAIGN, iteration=1)) == 0
    assert count(LabelQuery(campaign="another")) == 0
    assert rig.store.count_labels(LabelQuery(campaign=CAMPAIGN, status="ok")) == 50
    for elements in (["Al"], ["Cu", "Ni"], ["Al", "Cu", "Ni"]):
        expected = sum(set(elements) <= set(d["elements"]) for d in labels)
        assert 0 < expected < 50 or elements == ["Al"]
        assert count(LabelQuery(campaign=CAMPAIGN, iteration=0, elements=elements)) == expected
    pressures = np.array([d["pressure_GPa"] for d in labels])
    assert pressures.min() < 0 < pressures.max()  # compressed and stretched cells
    low, high = np.percentile(pressures, [25, 75])
    expected = int(((pressures >= low) & (pressures <= high)).sum())
    assert 20 <= expected <= 30
    query = LabelQuery(campaign=CAMPAIGN, iteration=0, pressure_min_GPa=low, pressure_max_GPa=high)
    assert count(query) == expected
    assert count(LabelQuery(campaign=CAMPAIGN, pressure_min_GPa=0.0)) == int((pressures >= 0).sum())
    combined = LabelQuery(
        campaign=CAMPAIGN,
        iteration=0,
        elements=["Ni"],
        pressure_max_GPa=float(np.median(pressures)),
    )
    assert count(combined) == sum(
        "Ni" in d["elements"] and d["pressure_GPa"] <= np.median(pressures) for d in labels
    )

    # the stored labels are EMT's own results on these structures
    for doc in rig.store.find_labels(LabelQuery(campaign=CAMPAIGN), limit=6):
        atoms = by_id[doc["structure_id"]]
        energy, forces = emt_energy(atoms, rig.oracle)
        assert doc["energy_eV"] == pytest.approx(energy, rel=1e-12, abs=1e-12)
        assert doc["energy_per_atom_eV"] == pytest.approx(energy / len(atoms), rel=1e-12)
        np.testing.assert_allclose(doc["arrays"]["forces"], forces, rtol=1e-10, atol=1e-12)
        stored = rig.store.get_structure(doc["structure_id"])
        assert emt_energy(stored, rig.oracle)[0] == pytest.approx(energy, rel=1e-12)
        assert doc["natoms"] == len(atoms) and 2 <= len(atoms) <= 4
    assert elapsed < 90


# -- failures: FIZZLED with the error, a rerun retries --------------------------------------------


@pytest.mark.timeout(60)
def test_unsupported_element_fizzles_and_rerun_reclaims(make_rig: Any) -> None:
    rig = make_rig("data_dir")  # workers find the server through its data folder
    (sid,) = rig.store.add_structures([fe_cell()], CAMPAIGN, 0)
    fw_id, added = rig.submit([sid])
    assert added
    rig.run(workers=1)

    assert rig.fw_states() == {fw_id: "FIZZLED"}
    (launch,) = rig.launches(fw_id)
    assert launch["state"] == "FIZZLED"
    exception = launch["action"]["stored_data"]["_exception"]
    stacktrace = exception["_stacktrace"]
    assert "LabellingFailed" in stacktrace
    assert "1 of 1 structures failed" in stacktrace
    assert "No EMT-potential for Fe" in stacktrace  # the original error, not only quacc's wrapper
    assert "crashed" in stacktrace

    (label,) = rig.labels()
    assert label["structure_id"] == sid
    assert label["status"] == "crashed"
    assert "NotImplementedError: No EMT-potential for Fe" in label["error"]
    assert label["energy_eV"] is None
    assert label["attempts"] == 1 and label["history"] == []
    first_error, first_job = label["error"], label["claimed_by"]["job_id"]

    # a rerun of the FIZZLED Firework re-claims the label; EMT still cannot do Fe
    rig.lp.rerun_fw(fw_id)
    assert rig.fw_states() == {fw_id: "READY"}
    rig.run(workers=1)

    assert rig.fw_states() == {fw_id: "FIZZLED"}
    launches = rig.launches(fw_id)
    assert len(launches) == 2 and {la["state"] for la in launches} == {"FIZZLED"}
    assert (
        "No EMT-potential for Fe"
        in launches[-1]["action"]["stored_data"]["_exception"]["_stacktrace"]
    )
    (label,) = rig.labels()  # still one document
    assert label["status"] == "crashed"
    assert label["attempts"] == 2
    assert label["claimed_by"]["job_id"] == first_job  # the same batch, launched again
    assert "No EMT-potential for Fe" in label["error"]
    (earlier,) = label["history"]
    assert earlier["status"] == "crashed"
    assert earlier["error"] == first_error
    assert rig.store.stats(CAMPAIGN)["labels_by_status"] == {"crashed": 1}


@pytest.mark.timeout(60)
def test_rerun_of_a_mixed_batch_retries_only_the_failed_structure(make_rig: Any) -> None:
    rig = make_rig("uri")
    good, bad = random_cells(1, seed=5)[0], fe_cell()
    good_id, bad_id = rig.store.add_structures([good, bad], CAMPAIGN, 0)
    fw_id, _ = rig.submit([good_id, bad_id], batch_size=2)
    rig.run()

    assert rig.fw_states() == {fw_id: "FIZZLED"}
    (launch,) = rig.launches(fw_id)
    assert (
        "1 of 2 structures failed" in launch["action"]["stored_data"]["_exception"]["_stacktrace"]
    )
    labels = {d["structure_id"]: d for d in rig.labels()}
    assert labels[good_id]["status"] == "ok" and labels[bad_id]["status"] == "crashed"
    good_updated = labels[good_id]["updated_at"]

    rig.lp.rerun_fw(fw_id)
    rig.run()
    assert rig.fw_states() == {fw_id: "FIZZLED"}
    labels = {d["structure_id"]: d for d in rig.labels()}
    assert len(labels) == 2
    assert labels[good_id]["status"] == "ok"
    assert labels[good_id]["attempts"] == 1  # not computed again
    assert labels[good_id]["updated_at"] == good_updated
    assert labels[good_id]["energy_eV"] == pytest.approx(emt_energy(good, rig.oracle)[0], rel=1e-12)
    assert labels[bad_id]["status"] == "crashed" and labels[bad_id]["attempts"] == 2


# -- idempotency ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_submitting_twice_and_relaunching_labels_nothing_twice(make_rig: Any) -> None:
    rig = make_rig("uri")
    ids = rig.store.add_structures(random_cells(4, seed=11), CAMPAIGN, 0)

    first = rig.submit(ids, batch_size=2)
    second = rig.submit(ids, batch_size=2)
    assert first[1] is True and second == (first[0], False)
    assert rig.lp.workflows.count_documents({}) == 2  # one per Firework
    assert rig.lp.fireworks.count_documents({}) == 2

    rig.run(workers=2)
    assert workflow_states(rig.lp, CAMPAIGN, 0) == {"COMPLETED": 2}
    labels = rig.labels()
    assert len(labels) == 4 and {d["status"] for d in labels} == {"ok"}
    before = {d["_id"]: (d["updated_at"], d["attempts"]) for d in labels}
    # nothing left to run: another round of rockets launches nothing
    rig.run(workers=1)
    assert len(rig.launches()) == 2

    # the next iteration selects the same structures: its rockets find every label done
    fw_next, added = rig.submit(ids, iteration=1, batch_size=2)
    assert added and fw_next != first[0]
    assert rig.submit(ids, iteration=1, batch_size=2) == (fw_next, False)
    assert rig.lp.workflows.count_documents({}) == 4
    rig.run(workers=1)

    assert workflow_states(rig.lp, CAMPAIGN, 1) == {"COMPLETED": 2}
    next_launches = [la for la in rig.launches() if la["fw_id"] not in (1, 2)]
    assert len(next_launches) == 2
    data = [la["action"]["stored_data"] for la in next_launches]
    assert sum(d["skipped"] for d in data) == 4
    assert sum(d["labelled"] for d in data) == 0 and sum(d["failed"] for d in data) == 0
    labels = rig.labels()
    assert len(labels) == 4  # no new label documents
    assert {d["_id"]: (d["updated_at"], d["attempts"]) for d in labels} == before
    # ... but each label now records that iteration 1 asked for it too
    assert rig.store.count_labels(LabelQuery(campaign=CAMPAIGN, iteration=1)) == 4
    assert all({r["iteration"] for r in d["requests"]} == {0, 1} for d in labels)


@pytest.mark.timeout(60)
def test_rerun_of_a_completed_firework_does_not_relabel(make_rig: Any) -> None:
    rig = make_rig("uri")
    ids = rig.store.add_structures(random_cells(2, seed=3), CAMPAIGN, 0)
    rig.submit(ids, batch_size=1)
    rig.run()
    states = rig.fw_states()
    assert set(states.values()) == {"COMPLETED"}
    before = {d["structure_id"]: d for d in rig.labels()}
    fw_id = min(states)
    (first_launch,) = rig.launches(fw_id)
    assert first_launch["action"]["stored_data"]["labelled"] == 1

    rerun = rig.lp.rerun_fw(fw_id)
    assert fw_id in rerun
    assert rig.fw_states()[fw_id] == "READY"
    rig.run()

    assert set(rig.fw_states().values()) == {"COMPLETED"}
    launches = rig.launches(fw_id)
    assert len(launches) == 2
    stored = launches[-1]["action"]["stored_data"]
    assert (stored["labelled"], stored["skipped"], stored["failed"]) == (0, 1, 0)
    after = {d["structure_id"]: d for d in rig.labels()}
    assert after.keys() == before.keys()
    for sid, doc in after.items():
        assert doc["attempts"] == 1 and doc["history"] == []
        assert doc["updated_at"] == before[sid]["updated_at"]
        assert doc["energy_eV"] == before[sid]["energy_eV"]


@pytest.mark.timeout(150)
def test_overlapping_workflows_label_each_structure_once(make_rig: Any) -> None:
    """Two workflows over the same structures (iterations 0 and 1, opposite orders) run by two
    concurrent workers: the claims, not FireWorks, keep each structure from being computed twice."""
    rig = make_rig("uri")
    ids = rig.store.add_structures(random_cells(30, seed=99), CAMPAIGN, 0, {"kind": "seed"})
    rig.store.add_structures([rig.store.get_structure(i) for i in ids], CAMPAIGN, 1)
    assert rig.submit(ids, iteration=0, batch_size=5)[1]
    assert rig.submit(list(reversed(ids)), iteration=1, batch_size=5)[1]
    rig.run(workers=2, timeout_s=120)

    launches = rig.launches()
    assert {la["state"] for la in launches} == {"COMPLETED"} and len(launches) == 12
    done = [la["action"]["stored_data"] for la in launches]
    assert sum(d["labelled"] for d in done) == 30
    assert sum(d["labelled"] + d["skipped"] for d in done) == 60
    labels = rig.labels()
    assert len(labels) == 30 and {d["status"] for d in labels} == {"ok"}
    assert all(d["attempts"] == 1 for d in labels)
    assert all({r["iteration"] for r in d["requests"]} == {0, 1} for d in labels)


@pytest.mark.timeout(150)
def test_killed_local_launcher_is_found_and_its_firework_rerun(make_rig: Any) -> None:
    """kill -9 a launcher in the middle of a 40-structure Firework: the run is found lost (its
    pid is gone), rerun, and finishes the batch; the labels done before the kill stay done."""
    rig = make_rig("uri")
    ids = rig.store.add_structures(random_cells(40, seed=5), CAMPAIGN, 0)
    rig.submit(ids, batch_size=40)
    launch_dir = rig.launch_dir()
    (process,) = start_workers(rig.launchpad_file, rig.fworker_file, launch_dir, 1)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if rig.store.count_labels(LabelQuery(status="ok")) >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, worker_logs(launch_dir)
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    done_before = rig.store.count_labels(LabelQuery(status="ok"))
    assert 3 <= done_before < 40
    assert set(rig.fw_states().values()) == {"RUNNING"}
    # a kill inside FireWorks' workflow lock leaves it set (seen in CI): make sure it is, here;
    # left alone it stalls the next launcher for FireWorks' 5-minute lock expiry
    rig.lp.workflows.update_many({}, {"$set": {"locked": True}})

    assert rerun_lost_local_runs(rig.lp, CAMPAIGN, rig.root) == list(rig.fw_states())
    assert rig.lp.workflows.count_documents({"locked": {"$exists": True}}) == 0
    assert set(rig.fw_states().values()) == {"READY"}
    assert rerun_lost_local_runs(rig.lp, CAMPAIGN, rig.root) == []
    rig.run(workers=1, timeout_s=120)

    assert set(rig.fw_states().values()) == {"COMPLETED"}
    labels = rig.labels()
    assert len(labels) == 40 and {d["status"] for d in labels} == {"ok"}
    assert sum(d["attempts"] for d in labels) <= 41  # only the one in flight was redone
    stored = rig.launches()[-1]["action"]["stored_data"]
    assert stored["skipped"] >= done_before and stored["labelled"] + stored["skipped"] == 40


def test_firework_left_running_after_its_launch_finished_is_refreshed(make_rig: Any) -> None:
    """FireWorks saves a finished launch, then updates its Firework: a launcher killed between
    the two (seen in CI) leaves the Firework RUNNING with a COMPLETED launch. The repair refreshes
    it from the launch; nothing is computed again."""
    rig = make_rig("uri")
    ids = rig.store.add_structures(random_cells(3, seed=8), CAMPAIGN, 0)
    rig.submit(ids, batch_size=3)
    rig.run(workers=1, timeout_s=120)
    (fw_id,) = rig.fw_states()
    assert rig.fw_states() == {fw_id: "COMPLETED"}
    # the state such a kill leaves: Firework and workflow RUNNING, its lock held
    rig.lp.fireworks.update_one({"fw_id": fw_id}, {"$set": {"state": "RUNNING"}})
    rig.lp.workflows.update_one(
        {"nodes": fw_id},
        {"$set": {f"fw_states.{fw_id}": "RUNNING", "state": "RUNNING", "locked": True}},
    )

    assert rerun_lost_local_runs(rig.lp, CAMPAIGN, rig.root) == [fw_id]
    assert rig.fw_states() == {fw_id: "COMPLETED"}
    workflow = rig.lp.workflows.find_one({"nodes": fw_id})
    assert workflow["state"] == "COMPLETED" and "locked" not in workflow
    assert len(rig.launches()) == 1  # refreshed, not rerun
    assert all(d["attempts"] == 1 for d in rig.labels())
    assert rerun_lost_local_runs(rig.lp, CAMPAIGN, rig.root) == []


def test_firework_reserved_by_a_killed_launcher_is_made_ready(make_rig: Any) -> None:
    """rapidfire reserves a Firework before it creates the launch: a launcher killed in
    between (seen in CI) leaves it RESERVED with no launch. A reservation younger than a minute
    is a launcher at work (FireWorks writes the launch a few round trips later); an older one,
    with no local launcher alive, is put back to READY and run."""
    from datetime import datetime, timedelta

    rig = make_rig("uri")
    ids = rig.store.add_structures(random_cells(2, seed=9), CAMPAIGN, 0)
    rig.submit(ids, batch_size=2)
    (fw_id,) = rig.fw_states()
    rig.lp.fireworks.update_one({"fw_id": fw_id}, {"$set": {"state": "RESERVED"}})
    rig.lp.workflows.update_one({"nodes": fw_id}, {"$set": {f"fw_states.{fw_id}": "RESERVED"}})
    assert rerun_lost_local_runs(rig.lp, CAMPAIGN, rig.root) == []  # just reserved
    old = datetime.utcnow() - timedelta(minutes=2)
    rig.lp.fireworks.update_one({"fw_id": fw_id}, {"$set": {"updated_on": old}})

    assert rerun_lost_local_runs(rig.lp, CAMPAIGN, rig.root) == [fw_id]
    assert rig.fw_states() == {fw_id: "READY"}
    rig.run(workers=1, timeout_s=120)
    assert rig.fw_states() == {fw_id: "COMPLETED"}
    assert {d["status"] for d in rig.labels()} == {"ok"} and len(rig.labels()) == 2


# -- universal potentials through the same rockets -------------------------------------------------


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("code", "preset"), [("chgnet", "r2scan"), ("sevennet", "r2scan")])
def test_a_universal_potential_labels_through_rockets(
    make_rig: Any, code: str, preset: str
) -> None:
    """CHGNet in the worker's process, SevenNet through its worker in .venv-sevenn: labels
    stored with the model's identity (head and weights hash) and the values the oracle gives."""
    rig = make_rig("uri")
    rig.oracle = make_oracle(code, preset)
    cells = random_cells(3, seed=7)
    for atoms in cells:
        atoms.symbols[:] = ["Ca" if s == "Al" else "Fe" if s == "Cu" else s for s in atoms.symbols]
    ids = rig.store.add_structures(cells, CAMPAIGN, 0, {"kind": "seed"})
    rig.submit(ids, batch_size=3)
    rig.run(workers=1, timeout_s=180)
    assert workflow_states(rig.lp, CAMPAIGN, 0) == {"COMPLETED": 1}
    labels = {d["structure_id"]: d for d in rig.labels()}
    assert {d["status"] for d in labels.values()} == {"ok"} and len(labels) == 3
    physics = rig.oracle.physics_for(["Ca"])
    assert {d["physics_hash"] for d in labels.values()} == {rig.oracle.physics_hash_for(["Ca"])}
    assert len(physics["weights_sha256"]) == 64 and physics["model"] in {"r2scan", "7net-mf-0"}
    for sid, atoms in zip(ids, cells, strict=True):
        direct = rig.oracle.label(atoms, rig.root / "direct" / sid[:8])
        assert labels[sid]["energy_eV"] == pytest.approx(direct.energy_eV, abs=1e-5)
        assert labels[sid]["code"] == code
