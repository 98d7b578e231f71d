"""The dataset on a real MongoDB-protocol server (secantusdb): labels, races, queries, exports."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import numpy as np
import pytest
from ase import Atoms

from database import LabelQuery, Store, export_ase_db, export_extxyz
from database.documents import EV_A3_TO_GPA, stress_fields, structure_id

pytestmark = pytest.mark.integration

SETTINGS = "settings-hash-1"


def without_token(claimed_by: dict[str, Any]) -> dict[str, Any]:
    """A claim's worker identity without the token the store adds to every claim."""
    assert len(claimed_by["token"]) == 32
    return {k: v for k, v in claimed_by.items() if k != "token"}


def worker(n: int) -> dict[str, Any]:
    """A worker identity: the same ``n`` is the same Firework/job launched again."""
    return {"fw_id": n, "job_id": f"job-{n}", "hostname": "test", "pid": 1000 + n}


def crystal(symbols: str = "FeNi", a: float = 3.0, seed: int = 0) -> Atoms:
    """A small rattled periodic cell with the given atoms (one structure per seed)."""
    n = len(Atoms(symbols))
    atoms = Atoms(symbols, cell=np.eye(3) * a * max(1, round(n ** (1 / 3))), pbc=True)
    rng = np.random.default_rng(seed)
    atoms.set_scaled_positions(rng.random((n, 3)))
    return atoms


def complete_ok(
    store: Store,
    label: dict[str, Any],
    atoms: Atoms,
    *,
    energy: float,
    pressure_GPa: float = 0.0,
    seed: int = 0,
    status: str = "ok",
    **extra: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Complete ``label`` with reproducible random results; returns (forces, stress eV/A^3)."""
    rng = np.random.default_rng(seed)
    forces = rng.normal(size=(len(atoms), 3))
    stress = rng.normal(scale=0.01, size=6)
    stress[:3] += -pressure_GPa / EV_A3_TO_GPA - stress[:3].mean()  # exact pressure
    fields = {
        "status": status,
        "energy_eV": energy,
        "energy_per_atom_eV": energy / len(atoms),
        "code": "fake",
        "code_version": "1.0",
        "wall_time_s": 2.5,
        "settings": {"ecutwfc": 40, "kspacing": 0.2},
        **stress_fields(stress),
        **extra,
    }
    store.complete_label(label, atoms, fields, forces=forces)
    return forces, stress


# -- structures -----------------------------------------------------------------------------------


def test_add_structure_is_idempotent(store: Store) -> None:
    atoms = crystal("CaFeNi2", seed=1)
    sid = store.add_structure(atoms, "cafeni", 0)
    assert store.add_structure(atoms.copy(), "cafeni", 0) == sid
    shifted = atoms.copy()
    shifted.positions += atoms.cell[0]
    assert store.add_structure(shifted, "cafeni", 0) == sid
    assert store.db.structures.count_documents({}) == 1
    assert store.db.structures.find_one({"_id": sid})["requests"] == [
        {"campaign": "cafeni", "iteration": 0}
    ]

    assert store.add_structure(atoms, "other", 2) == sid
    assert store.add_structure(atoms, "cafeni", 1) == sid
    assert store.db.structures.count_documents({}) == 1
    doc = store.db.structures.find_one({"_id": sid})
    assert doc["requests"] == [
        {"campaign": "cafeni", "iteration": 0},
        {"campaign": "other", "iteration": 2},
        {"campaign": "cafeni", "iteration": 1},
    ]
    assert doc["chemsys"] == "Ca-Fe-Ni"
    assert doc["arrays_file"] is None
    assert store.structure_ids("cafeni") == [sid]
    assert store.structure_ids("cafeni", 1) == [sid]
    assert store.structure_ids("other", 0) == []

    back = store.get_structure(sid)
    np.testing.assert_array_equal(back.positions, atoms.positions)
    np.testing.assert_array_equal(back.numbers, atoms.numbers)
    assert structure_id(back) == sid


def test_get_unknown_structure_raises(store: Store) -> None:
    with pytest.raises(KeyError):
        store.get_structure("nope")
    with pytest.raises(KeyError):
        store.claim_label("nope", SETTINGS, "cafeni", 0, worker(1))


# -- claims ---------------------------------------------------------------------------------------


def test_first_claim_wins(store: Store) -> None:
    sid = store.add_structure(crystal(seed=2), "cafeni", 0)
    first = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(1))
    assert first is not None
    assert first["status"] == "running"
    assert without_token(first["claimed_by"]) == worker(1)
    assert first["chemsys"] == "Fe-Ni"
    assert store.claim_label(sid, SETTINGS, "cafeni", 0, worker(2)) is None
    assert store.claim_label(sid, SETTINGS, "other", 4, worker(3)) is None
    assert store.db.labels.count_documents({}) == 1
    doc = store.db.labels.find_one({})
    assert without_token(doc["claimed_by"]) == worker(1)
    assert doc["attempts"] == 1
    # the second campaign's request is recorded even though it did not get the claim
    assert doc["requests"] == [
        {"campaign": "cafeni", "iteration": 0},
        {"campaign": "other", "iteration": 4},
    ]
    # another settings hash is another label
    assert store.claim_label(sid, "settings-hash-2", "cafeni", 0, worker(2)) is not None
    assert store.db.labels.count_documents({}) == 2


def test_same_job_takes_over_its_running_label(store: Store) -> None:
    sid = store.add_structure(crystal(seed=3), "cafeni", 0)
    first = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(7))
    rerun = {**worker(7), "pid": 4242}  # the same Firework launched again after a crash
    again = store.claim_label(sid, SETTINGS, "cafeni", 0, rerun)
    assert again is not None
    assert again["_id"] == first["_id"]
    assert again["status"] == "running"
    assert without_token(again["claimed_by"]) == rerun
    assert again["attempts"] == 2
    assert store.claim_label(sid, SETTINGS, "cafeni", 0, worker(8)) is None


def test_an_expired_claim_is_taken_over_and_a_beating_one_is_not(store: Store) -> None:
    """A label left running by a worker that will never come back (a defused Firework, a node
    lost) is taken over once its heartbeat is older than the expiry; the old claim's outcome
    is then kept in history only."""
    atoms = crystal(seed=12)
    sid = store.add_structure(atoms, "cafeni", 0)
    lost = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(1))
    time.sleep(0.3)
    assert store.beat_label(lost)  # still beating: held
    assert store.claim_label(sid, SETTINGS, "cafeni", 0, worker(2), expiry_s=0.2) is None
    time.sleep(0.3)
    taken = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(2), expiry_s=0.2)
    assert taken is not None and taken["attempts"] == 2
    assert not store.beat_label(lost)  # the old worker learns it lost the claim
    assert store.complete_label(lost, atoms, {"status": "ok", "energy_eV": -1.0}) is False
    assert complete_ok(store, taken, atoms, energy=-2.0)
    doc = store.db.labels.find_one({"structure_id": sid})
    assert doc["status"] == "ok" and doc["history"][-1]["stale"] is True
    # a claim from before heartbeats expires by its claim time
    other = store.add_structure(crystal(seed=13), "cafeni", 0)
    old = store.claim_label(other, SETTINGS, "cafeni", 0, worker(3))
    store.db.labels.update_one({"_id": old["_id"]}, {"$unset": {"heartbeat_at": ""}})
    time.sleep(0.3)
    assert store.claim_label(other, SETTINGS, "cafeni", 0, worker(4), expiry_s=0.2) is not None
    # a holder that said it beats less often (claimed_by.expiry_s) keeps its label longer
    third = store.add_structure(crystal(seed=14), "cafeni", 0)
    slow = store.claim_label(third, SETTINGS, "cafeni", 0, {**worker(5), "expiry_s": 60.0})
    time.sleep(0.3)
    assert store.claim_label(third, SETTINGS, "cafeni", 0, worker(6), expiry_s=0.2) is None
    assert slow is not None
    claims = store.label_claims([sid, other, "unlabelled"], [SETTINGS])
    assert sorted(claims) == sorted([sid, other])
    assert claims[sid]["status"] == "ok" and claims[other]["status"] == "running"


def test_workers_without_job_ids_do_not_share_a_running_label(store: Store) -> None:
    sid = store.add_structure(crystal(seed=4), "cafeni", 0)
    assert store.claim_label(sid, SETTINGS, "cafeni", 0, {"hostname": "a", "pid": 1}) is not None
    assert store.claim_label(sid, SETTINGS, "cafeni", 0, {"hostname": "b", "pid": 2}) is None


def test_done_label_is_not_claimed_again(store: Store) -> None:
    atoms = crystal(seed=5)
    sid = store.add_structure(atoms, "cafeni", 0)
    label = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(1))
    complete_ok(store, label, atoms, energy=-3.0)
    assert store.claim_label(sid, SETTINGS, "cafeni", 1, worker(1)) is None
    assert store.claim_label(sid, SETTINGS, "cafeni", 1, worker(2)) is None
    assert store.db.labels.find_one({})["status"] == "ok"


@pytest.mark.parametrize("failure", ["crashed", "unconverged", "killed", "input_error"])
def test_failed_label_is_reclaimed_and_keeps_its_history(store: Store, failure: str) -> None:
    atoms = crystal(seed=6)
    sid = store.add_structure(atoms, "cafeni", 0)
    label = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(1))
    store.complete_label(
        label, atoms, {"status": failure, "error": f"{failure}: boom", "wall_time_s": 12.0}
    )

    again = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(2))
    assert again is not None
    assert again["_id"] == label["_id"]
    assert again["status"] == "running"
    assert without_token(again["claimed_by"]) == worker(2)
    assert again["attempts"] == 2
    assert [h["status"] for h in again["history"]] == [failure]
    previous = again["history"][0]
    assert previous["error"] == f"{failure}: boom"
    assert previous["wall_time_s"] == 12.0
    assert without_token(previous["claimed_by"]) == worker(1)
    # while worker 2 runs it, nobody else gets it
    assert store.claim_label(sid, SETTINGS, "cafeni", 0, worker(3)) is None

    assert "error" not in again  # the failure's message lives in history only

    complete_ok(store, again, atoms, energy=-1.0)
    doc = store.db.labels.find_one({"_id": label["_id"]})
    assert doc["status"] == "ok"
    assert "error" not in doc
    assert [h["status"] for h in doc["history"]] == [failure]  # recorded once, not twice
    assert store.db.labels.count_documents({}) == 1


def _claim_all(
    uri: str, database: str, sids: list[str], n: int, barrier: Any, results: Any
) -> None:
    """Claim every structure in ``sids`` as worker ``n`` (own client); report what was won.

    Odd workers go forward, even ones backward, so that they meet and collide on the same
    labels instead of one running ahead of the other through the whole list.
    """
    store = Store.connect(uri, database, launchpad_database=f"{database}_fw")
    sids = sids if n % 2 else sids[::-1]
    try:
        barrier.wait(timeout=60)
        won = [
            sid
            for sid in sids
            if store.claim_label(sid, SETTINGS, "cafeni", 0, worker(n)) is not None
        ]
        results.put((n, won))
    finally:
        store.close()


def _race_threads(
    uri: str, database: str, sids: list[str], workers: tuple[int, int]
) -> dict[int, list[str]]:
    barrier = threading.Barrier(len(workers))
    results: queue.Queue = queue.Queue()
    threads = [
        threading.Thread(target=_claim_all, args=(uri, database, sids, n, barrier, results))
        for n in workers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results.qsize() == len(workers)
    return dict(results.get() for _ in workers)


def _race_processes(
    uri: str, database: str, sids: list[str], workers: tuple[int, int]
) -> dict[int, list[str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(workers))
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_claim_all, args=(uri, database, sids, n, barrier, results))
        for n in workers
    ]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return got


def _check_race(
    store: Store, sids: list[str], results: dict[int, list[str]], attempts: int
) -> None:
    won = [sid for claimed in results.values() for sid in claimed]
    assert sorted(won) == sorted(sids), "each label claimed exactly once"
    assert store.db.labels.count_documents({}) == len(sids)
    for n, claimed in results.items():
        for sid in claimed:
            doc = store.db.labels.find_one({"structure_id": sid})
            assert doc["status"] == "running"
            assert doc["claimed_by"]["fw_id"] == n
            assert doc["attempts"] == attempts
            assert len(doc["history"]) == attempts - 1


@pytest.mark.parametrize("race", [_race_threads, _race_processes], ids=["threads", "processes"])
def test_race_for_twenty_labels(store: Store, mongo_uri: str, race: Any) -> None:
    sids = [store.add_structure(crystal("CaFeNi", seed=100 + i), "cafeni", 0) for i in range(20)]
    _check_race(store, sids, race(mongo_uri, store.database_name, sids, (1, 2)), attempts=1)
    # all of them crash: two new workers race to take the failures over
    store.db.labels.update_many({}, {"$set": {"status": "crashed", "error": "node died"}})
    _check_race(store, sids, race(mongo_uri, store.database_name, sids, (3, 4)), attempts=2)
    assert store.db.labels.count_documents({"history.status": "crashed"}) == 20


# -- results, queries, stats, exports -------------------------------------------------------------


def test_complete_find_and_label_atoms_round_trip(store: Store) -> None:
    atoms = crystal("CaFe2Ni", seed=7)
    sid = store.add_structure(atoms, "cafeni", 3)
    label = store.claim_label(sid, SETTINGS, "cafeni", 3, worker(1))
    forces, stress = complete_ok(
        store, label, atoms, energy=-12.345678901234, pressure_GPa=123.4, seed=11
    )

    docs = list(store.find_labels(LabelQuery(campaign="cafeni")))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["status"] == "ok"
    assert doc["energy_eV"] == -12.345678901234
    assert doc["pressure_GPa"] == pytest.approx(123.4, abs=1e-9)
    assert doc["stress_GPa"] == pytest.approx((stress * EV_A3_TO_GPA).tolist())
    assert doc["arrays_file"] is None
    np.testing.assert_array_equal(doc["arrays"]["forces"], forces)
    np.testing.assert_array_equal(doc["arrays"]["positions"], atoms.positions)
    assert doc["software"]["ase"]
    assert doc["updated_at"].tzinfo is not None

    out = store.label_atoms(doc)
    assert out.get_potential_energy() == -12.345678901234
    np.testing.assert_array_equal(out.get_forces(), forces)
    np.testing.assert_allclose(out.get_stress(), stress, rtol=1e-12, atol=1e-15)
    assert -out.get_stress()[:3].mean() * EV_A3_TO_GPA == pytest.approx(123.4, abs=1e-9)
    assert out.info["campaign"] == "cafeni"
    assert out.info["iteration"] == 3
    assert out.info["structure_id"] == sid
    assert out.info["label_id"] == str(label["_id"])
    assert structure_id(out) == sid

    light = next(store.find_labels(with_arrays=False))
    assert "arrays" not in light
    assert store.count_labels() == 1


@pytest.fixture(scope="module")
def dataset_store(mongo_uri: str) -> Iterator[tuple[Store, dict[str, Any]]]:
    """Eight labels over two campaigns, three iterations, Ca-Fe-Ni subsets, 50-300 GPa.

    Built once for the read-only tests below: ``(store, {name: label _id})``.
    """
    name = f"test_{uuid.uuid4().hex[:10]}"
    store = Store.connect(mongo_uri, name, launchpad_database=f"{name}_fw")
    try:
        yield store, _build_dataset(store)
    finally:
        store.client.drop_database(name)
        store.close()


def _build_dataset(store: Store) -> dict[str, Any]:
    rows = [
        # name, symbols, campaign, iteration, status, pressure
        ("fe_a0_ok_50", "Fe2", "A", 0, "ok", 50.0),
        ("feni_a0_ok_120", "FeNi", "A", 0, "ok", 120.0),
        ("cafe_a1_ok_140", "CaFe", "A", 1, "ok", 140.0),
        ("ni_a1_ok_300", "Ni2", "A", 1, "ok", 300.0),
        ("cafeni_a1_unconv", "CaFeNi", "A", 1, "unconverged", None),
        ("feni_b0_ok_100", "Fe3Ni", "B", 0, "ok", 100.0),
        ("cani_b1_ok_150", "CaNi", "B", 1, "ok", 150.0),
        ("ca_b2_running", "Ca", "B", 2, "running", None),
    ]
    ids: dict[str, Any] = {}
    for seed, (name, symbols, campaign, iteration, status, pressure) in enumerate(rows):
        atoms = crystal(symbols, seed=200 + seed)
        sid = store.add_structure(atoms, campaign, iteration)
        label = store.claim_label(sid, SETTINGS, campaign, iteration, worker(seed))
        if status == "unconverged":
            store.complete_label(
                label, atoms, {"status": status, "error": "scf", "wall_time_s": 10.0}
            )
        elif status == "ok":
            complete_ok(store, label, atoms, energy=-float(seed), pressure_GPa=pressure, seed=seed)
        ids[name] = label["_id"]
    # the Fe-Ni label of A/0 is also requested by campaign B, iteration 2
    sid = store.db.labels.find_one({"_id": ids["feni_a0_ok_120"]})["structure_id"]
    store.add_structure(store.get_structure(sid), "B", 2)
    assert store.claim_label(sid, SETTINGS, "B", 2, worker(99)) is None
    return ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            LabelQuery(),
            {
                "fe_a0_ok_50",
                "feni_a0_ok_120",
                "cafe_a1_ok_140",
                "ni_a1_ok_300",
                "cafeni_a1_unconv",
                "feni_b0_ok_100",
                "cani_b1_ok_150",
                "ca_b2_running",
            },
        ),
        (
            LabelQuery(campaign="A"),
            {"fe_a0_ok_50", "feni_a0_ok_120", "cafe_a1_ok_140", "ni_a1_ok_300", "cafeni_a1_unconv"},
        ),
        (
            LabelQuery(campaign="B"),
            {"feni_b0_ok_100", "cani_b1_ok_150", "ca_b2_running", "feni_a0_ok_120"},
        ),
        (
            LabelQuery(campaign="A", iteration=1),
            {"cafe_a1_ok_140", "ni_a1_ok_300", "cafeni_a1_unconv"},
        ),
        (LabelQuery(campaign="B", iteration=2), {"ca_b2_running", "feni_a0_ok_120"}),
        (
            LabelQuery(campaign="A", iteration=1, status="ok", pressure_min_GPa=200),
            {"ni_a1_ok_300"},
        ),
        # {A,0} and {B,2} on one label must not match campaign A + iteration 2
        (LabelQuery(campaign="A", iteration=2), set()),
        (LabelQuery(iteration=0), {"fe_a0_ok_50", "feni_a0_ok_120", "feni_b0_ok_100"}),
        (
            LabelQuery(elements=["Fe"]),
            {
                "fe_a0_ok_50",
                "feni_a0_ok_120",
                "cafe_a1_ok_140",
                "cafeni_a1_unconv",
                "feni_b0_ok_100",
            },
        ),
        (LabelQuery(elements=["Ni", "Ca"]), {"cafeni_a1_unconv", "cani_b1_ok_150"}),
        (LabelQuery(chemsys="Ni-Fe"), {"feni_a0_ok_120", "feni_b0_ok_100"}),
        (LabelQuery(chemsys="Ca"), {"ca_b2_running"}),
        (
            LabelQuery(pressure_min_GPa=100, pressure_max_GPa=150),
            {"feni_a0_ok_120", "cafe_a1_ok_140", "feni_b0_ok_100", "cani_b1_ok_150"},
        ),
        (LabelQuery(pressure_min_GPa=200), {"ni_a1_ok_300"}),
        (LabelQuery(pressure_max_GPa=100), {"fe_a0_ok_50", "feni_b0_ok_100"}),
        (
            LabelQuery(status="ok"),
            {
                "fe_a0_ok_50",
                "feni_a0_ok_120",
                "cafe_a1_ok_140",
                "ni_a1_ok_300",
                "feni_b0_ok_100",
                "cani_b1_ok_150",
            },
        ),
        (LabelQuery(status=["unconverged", "running"]), {"cafeni_a1_unconv", "ca_b2_running"}),
        (LabelQuery(physics_hash="other"), set()),
        (
            LabelQuery(
                campaign="A",
                status="ok",
                pressure_min_GPa=100,
                pressure_max_GPa=150,
                elements=["Fe"],
            ),
            {"feni_a0_ok_120", "cafe_a1_ok_140"},
        ),
        (
            LabelQuery(
                campaign="B",
                status="ok",
                pressure_min_GPa=100,
                pressure_max_GPa=150,
                elements=["Fe"],
            ),
            {"feni_b0_ok_100", "feni_a0_ok_120"},
        ),
    ],
)
def test_queries_return_exactly_the_expected_labels(
    dataset_store: tuple[Store, dict[str, Any]], query: LabelQuery, expected: set[str]
) -> None:
    store, dataset = dataset_store
    names = {v: k for k, v in dataset.items()}
    found = [names[d["_id"]] for d in store.find_labels(query, with_arrays=False)]
    assert set(found) == expected
    assert len(found) == len(expected)
    assert store.count_labels(query) == len(expected)
    # oldest first
    assert found == sorted(found, key=lambda name: dataset[name])


def test_find_labels_limit(dataset_store: tuple[Store, dict[str, Any]]) -> None:
    store, dataset = dataset_store
    first = list(store.find_labels(LabelQuery(status="ok"), limit=2))
    assert [d["_id"] for d in first] == [dataset["fe_a0_ok_50"], dataset["feni_a0_ok_120"]]
    assert all("forces" in d["arrays"] for d in first)


def test_stats(dataset_store: tuple[Store, dict[str, Any]]) -> None:
    store, _ = dataset_store
    everything = store.stats()
    assert everything["structures"] == 8
    assert everything["labels"] == 8
    assert everything["labels_by_status"] == {"ok": 6, "unconverged": 1, "running": 1}
    assert everything["labels_by_chemsys"] == {
        "Fe": 1,
        "Fe-Ni": 2,
        "Ca-Fe": 1,
        "Ni": 1,
        "Ca-Fe-Ni": 1,
        "Ca-Ni": 1,
        "Ca": 1,
    }
    assert everything["labels_by_iteration"] == {}
    assert everything["pressure_range_GPa"] == pytest.approx([50.0, 300.0])
    assert everything["wall_time_s"] == pytest.approx(6 * 2.5 + 10.0)
    assert everything["models"] == 0

    a = store.stats("A")
    assert a["structures"] == 5
    assert a["labels"] == 5
    assert a["labels_by_status"] == {"ok": 4, "unconverged": 1}
    assert a["labels_by_iteration"] == {"0": 2, "1": 3}
    assert a["pressure_range_GPa"] == pytest.approx([50.0, 300.0])

    b = store.stats("B")
    assert b["labels"] == 4  # its own three and the Fe-Ni label it also asked for
    assert b["labels_by_iteration"] == {"0": 1, "1": 1, "2": 2}
    assert b["labels_by_status"] == {"ok": 3, "running": 1}
    assert b["pressure_range_GPa"] == pytest.approx([100.0, 150.0])

    assert store.stats("nobody")["pressure_range_GPa"] is None


def _expected_ok(store: Store) -> dict[str, dict[str, Any]]:
    return {str(d["_id"]): d for d in store.find_labels(LabelQuery(status="ok"))}


def test_export_extxyz_round_trip(
    dataset_store: tuple[Store, dict[str, Any]], tmp_path: Path
) -> None:
    store, _ = dataset_store
    from ase.io import read

    path = tmp_path / "labels.extxyz"
    assert export_extxyz(store, LabelQuery(status="ok"), path) == 6
    frames = read(str(path), ":")
    expected = _expected_ok(store)
    assert len(frames) == 6
    assert [f.info["label_id"] for f in frames] == list(expected)  # oldest first
    for frame in frames:
        doc = expected[frame.info["label_id"]]
        assert frame.get_potential_energy() == pytest.approx(doc["energy_eV"], abs=1e-10)
        np.testing.assert_allclose(frame.get_forces(), doc["arrays"]["forces"], atol=1e-7)
        np.testing.assert_allclose(frame.get_stress() * EV_A3_TO_GPA, doc["stress_GPa"], atol=1e-6)
        np.testing.assert_allclose(frame.positions, doc["arrays"]["positions"], atol=1e-7)
        assert frame.info["pressure_GPa"] == pytest.approx(doc["pressure_GPa"])
        assert frame.info["campaign"] == doc["requests"][0]["campaign"]
        assert frame.info["status"] == "ok"


def test_export_ase_db_round_trip(
    dataset_store: tuple[Store, dict[str, Any]], tmp_path: Path
) -> None:
    store, _ = dataset_store
    import ase.db

    path = tmp_path / "labels.db"
    assert export_ase_db(store, LabelQuery(status="ok"), path) == 6
    expected = _expected_ok(store)
    db = ase.db.connect(str(path))
    assert db.count() == 6
    assert db.count(campaign="A") == 4
    for row in db.select():
        doc = expected[row.label_id]
        assert row.energy == doc["energy_eV"]
        np.testing.assert_array_equal(row.forces, doc["arrays"]["forces"])
        np.testing.assert_allclose(row.stress * EV_A3_TO_GPA, doc["stress_GPa"], rtol=1e-12)
        assert row.pressure_GPa == doc["pressure_GPa"]
        assert row.iteration == doc["requests"][0]["iteration"]
        assert row.data["settings"] == {"ecutwfc": 40, "kspacing": 0.2}
        assert row.code == "fake"
        # a version string that reads as a number cannot be a key-value pair in ASE: kept in data
        assert "code_version" not in row.key_value_pairs
        assert row.data["info"]["code_version"] == "1.0"
        atoms = row.toatoms()
        np.testing.assert_array_equal(atoms.positions, doc["arrays"]["positions"])
    # exporting again adds nothing twice: B's ok labels are all among the 6 already there
    assert export_ase_db(store, LabelQuery(campaign="B", status="ok"), path) == 0
    assert export_ase_db(store, LabelQuery(), path) == 2  # the unconverged and running ones
    assert ase.db.connect(str(path)).count() == 8


# -- large labels (GridFS) ------------------------------------------------------------------------


def test_large_label_goes_to_gridfs(store: Store) -> None:
    n = 400_000
    rng = np.random.default_rng(42)
    side = 200.0
    atoms = Atoms(
        numbers=rng.choice([20, 26, 28], size=n),
        positions=rng.random((n, 3)) * side,
        cell=np.eye(3) * side,
        pbc=True,
    )
    forces = rng.normal(size=(n, 3))
    assert atoms.positions.nbytes + forces.nbytes + atoms.numbers.nbytes > 16 * 1024 * 1024

    sid = store.add_structure(atoms, "big", 0)
    structure = store.db.structures.find_one({"_id": sid})
    assert structure["arrays"] is None and structure["arrays_file"] is not None
    back = store.get_structure(sid)
    np.testing.assert_array_equal(back.positions, atoms.positions)
    np.testing.assert_array_equal(back.numbers, atoms.numbers)

    label = store.claim_label(sid, SETTINGS, "big", 0, worker(1))
    store.complete_label(
        label,
        atoms,
        {"status": "ok", "energy_eV": -1.5e6, **stress_fields(np.zeros(6))},
        forces=forces,
    )
    raw = store.db.labels.find_one({"_id": label["_id"]})
    assert raw["arrays"] is None
    first_file = raw["arrays_file"]
    assert first_file is not None
    assert len(bson.encode(raw)) < 64 * 1024
    assert store.db.fs.files.count_documents({}) == 2  # the structure and the label

    doc = next(store.find_labels(LabelQuery(campaign="big")))
    for key, value in (
        ("positions", atoms.positions),
        ("forces", forces),
        ("numbers", atoms.numbers),
        ("cell", atoms.cell[:]),
    ):
        assert doc["arrays"][key].dtype == np.asarray(value).dtype
        np.testing.assert_array_equal(doc["arrays"][key], value)
    out = store.label_atoms(doc)
    np.testing.assert_array_equal(out.get_forces(), forces)

    # a second completion by the same (now finished) claim is stale: kept in history only,
    # the label and its GridFS file stay, and the stale arrays leave no orphan behind
    assert not store.complete_label(
        label, atoms, {"status": "crashed", "error": "late"}, forces=forces * 2
    )
    raw = store.db.labels.find_one({"_id": label["_id"]})
    assert raw["status"] == "ok" and raw["arrays_file"] == first_file
    assert store.db.fs.files.count_documents({}) == 2
    assert [(h["status"], h["stale"]) for h in raw["history"]] == [("crashed", True)]
    again = next(store.find_labels(LabelQuery(campaign="big")))
    np.testing.assert_array_equal(again["arrays"]["forces"], forces)


def test_a_stale_claim_never_overwrites_the_label(store: Store) -> None:
    """A rerun takes a label over while the first launch still runs: the first one's late
    result must not replace the rerun's."""
    atoms = crystal(seed=11)
    sid = store.add_structure(atoms, "cafeni", 0)
    first = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(1))
    rerun = store.claim_label(sid, SETTINGS, "cafeni", 0, worker(1))  # same job: takeover
    assert rerun is not None and rerun["attempts"] == 2
    complete_ok(store, rerun, atoms, energy=-5.0, pressure_GPa=10.0, seed=1)
    assert not store.complete_label(first, atoms, {"status": "killed", "error": "late"})
    doc = store.db.labels.find_one({"_id": first["_id"]})
    assert (doc["status"], doc["energy_eV"]) == ("ok", -5.0)
    assert doc["history"][-1]["stale"] is True and doc["history"][-1]["status"] == "killed"


def test_failed_large_label_rerun_keeps_one_history_entry_and_no_orphan(store: Store) -> None:
    n = 100_000  # 3.2 MB of arrays: over the inline limit, in GridFS
    rng = np.random.default_rng(7)
    atoms = Atoms(
        numbers=np.full(n, 26),
        positions=rng.random((n, 3)) * 100.0,
        cell=np.eye(3) * 100.0,
        pbc=True,
    )
    sid = store.add_structure(atoms, "big", 0)
    label = store.claim_label(sid, SETTINGS, "big", 0, worker(1))
    store.complete_label(label, atoms, {"status": "killed", "error": "walltime"})
    failed_file = store.db.labels.find_one({"_id": label["_id"]})["arrays_file"]
    assert failed_file is not None

    again = store.claim_label(sid, SETTINGS, "big", 0, worker(2))
    store.complete_label(
        again, atoms, {"status": "ok", "energy_eV": -8.0e5}, forces=np.ones((n, 3))
    )
    doc = store.db.labels.find_one({"_id": label["_id"]})
    assert [h["status"] for h in doc["history"]] == ["killed"]
    assert doc["history"][0]["error"] == "walltime"
    assert store.db.fs.files.count_documents({"_id": failed_file}) == 0
    assert store.db.fs.files.count_documents({}) == 2
    np.testing.assert_array_equal(store.unpack_arrays(doc)["forces"], np.ones((n, 3)))


def test_separate_stores_do_not_see_each_other(mongo_uri: str, store: Store) -> None:
    other_name = f"test_{uuid.uuid4().hex[:10]}"
    other = Store.connect(mongo_uri, other_name)
    try:
        store.add_structure(crystal(seed=9), "cafeni", 0)
        assert other.db.structures.count_documents({}) == 0
    finally:
        other.client.drop_database(other_name)
        other.close()


def test_a_superseded_training_job_never_replaces_a_newer_member(store: Store) -> None:
    """A training Firework of older labels or settings that ends after the newer committee's
    member was stored must not replace it (calculators/models/member_training.py)."""
    from calculators.models.member_training import MemberJob, superseded_by

    key = {"campaign": "c", "iteration": 2, "member": 1}
    store.add_model({**key, "data_key": "new", "submitted_at": 200.0}, b"newer member")

    def job(data_key: str, submitted_at: float) -> MemberJob:
        return MemberJob(
            **key,
            train_label_ids=[],
            valid_label_ids=[],
            settings={},
            seed=0,
            data_key=data_key,
            submitted_at=submitted_at,
        )

    assert superseded_by(store, job("old", 100.0))["data_key"] == "new"
    assert superseded_by(store, job("newest", 300.0)) is None  # a newer job replaces it
    assert superseded_by(store, job("new", 100.0)) is None  # the same committee
