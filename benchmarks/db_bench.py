"""Benchmark of the label collection: bulk inserts and the filtered query users make.

    python benchmarks/db_bench.py [--n-labels 100000] [--uri mongodb://...] [--queries 50]

Without ``--uri`` an embedded secantusdb server is started in a temporary folder with on-disk
storage (WiredTiger) and removed at the end. With ``--uri`` the benchmark writes to two new
databases on that server and drops them at the end.

What it measures:

1. Inserts: N realistic label documents (as :class:`database.Store` writes them: 8-atom Ca-Fe-Ni
   cells with inline arrays) with ``insert_many`` in batches, into a database indexed by
   ``Store.ensure_indexes()``. The same documents go, batch by batch, into a second database that
   has only the unique (structure_id, physics_hash) index: the baseline.
2. The query: campaign + status ``ok`` + 100-150 GPa + containing Fe (a :class:`LabelQuery`),
   through ``Store.count_labels`` and ``Store.find_labels(with_arrays=False)``, ``--queries``
   times on each database: median and p90 in ms, the hits, and indexed/unindexed ratios.
3. ``insert_one`` against ``insert_many`` on a 2,000-document sample (indexed, fresh databases).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench_record import record

from database import EmbeddedServer, LabelQuery, Store
from database.documents import software_versions

CAMPAIGNS = ("cafeni-prod", "cafeni-prod", "cafeni-prod", "feni-test", "ca-demo")
SYSTEMS = (("Ca",), ("Fe",), ("Ni",), ("Ca", "Fe"), ("Ca", "Ni"), ("Fe", "Ni"), ("Ca", "Fe", "Ni"))
NUMBERS = {"Ca": 20, "Fe": 26, "Ni": 28}
FAILURES = ("unconverged", "killed", "input_error", "crashed")
QUERY = LabelQuery(
    campaign="cafeni-prod",
    status="ok",
    pressure_min_GPa=100.0,
    pressure_max_GPa=150.0,
    elements=["Fe"],
)
SAMPLE = 2_000


# -- documents ------------------------------------------------------------------------------------


class LabelFactory:
    """Label documents with the fields, types and sizes :class:`Store` writes (reproducible)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.software = software_versions()
        self.settings = [
            {
                "code": "espresso",
                "input_data": {
                    "control": {"calculation": "scf", "tstress": True, "tprnfor": True},
                    "system": {
                        "ecutwfc": ecut,
                        "ecutrho": 8 * ecut,
                        "occupations": "smearing",
                        "smearing": "mv",
                        "degauss": 0.02,
                    },
                    "electrons": {"conv_thr": 1e-8, "mixing_beta": 0.3},
                },
                "pseudopotentials": {
                    "Ca": "Ca.pbe-spn-rrkjus.UPF",
                    "Fe": "Fe.pbe-nd-rrkjus.UPF",
                    "Ni": "Ni.pbe-nd-rrkjus.UPF",
                },
                "kspacing": 0.15,
            }
            for ecut in (45, 60)
        ]
        self.physics_hashes = [
            hashlib.sha256(repr(s).encode()).hexdigest()[:16] for s in self.settings
        ]
        self.t0 = datetime(2026, 11, 1, tzinfo=UTC)

    def make(self, i: int) -> dict[str, Any]:
        rng = self.rng
        system = SYSTEMS[rng.integers(len(SYSTEMS))]
        symbols = [system[k] for k in rng.integers(len(system), size=8)]
        symbols[: len(system)] = system  # every element of the system is present
        elements = sorted(set(symbols))
        numbers = [NUMBERS[s] for s in symbols]
        a = rng.uniform(4.0, 6.0)
        cell = (np.eye(3) * a + rng.normal(scale=0.05, size=(3, 3))).round(6)
        positions = rng.random((8, 3)) @ cell
        which = 0 if rng.random() < 0.9 else 1
        ok = rng.random() < 0.9
        status = "ok" if ok else FAILURES[rng.integers(len(FAILURES))]
        pressure = float(rng.uniform(0.0, 500.0))
        stress = rng.normal(scale=2.0, size=6)
        stress[:3] += -pressure - stress[:3].mean()
        energy = float(rng.normal(-8.0, 1.0) * 8)
        created = self.t0 + timedelta(seconds=i)
        worker = {
            "fw_id": int(i),
            "job_id": f"label-{i // 50}",
            "hostname": "node042",
            "pid": int(rng.integers(1000, 60000)),
        }
        doc: dict[str, Any] = {
            "structure_id": hashlib.sha256(f"{i}-{rng.random()}".encode()).hexdigest(),
            "physics_hash": self.physics_hashes[which],
            "status": status,
            "requests": [
                {
                    "campaign": CAMPAIGNS[rng.integers(len(CAMPAIGNS))],
                    "iteration": int(rng.integers(0, 20)),
                }
            ],
            "formula": "".join(
                f"{el}{symbols.count(el) if symbols.count(el) > 1 else ''}" for el in elements
            ),
            "elements": elements,
            "chemsys": "-".join(elements),
            "natoms": 8,
            "composition": {el: symbols.count(el) / 8 for el in elements},
            "volume_per_atom_A3": float(abs(np.linalg.det(cell)) / 8),
            "claimed_by": worker,
            "claimed_at": created,
            "created_at": created,
            "attempts": 1 if ok else int(rng.integers(1, 4)),
            "history": [],
            "code": "espresso",
            "code_version": "6.7",
            "settings": self.settings[which],
            "wall_time_s": float(rng.uniform(15, 45)),
            "host": {"hostname": "node042", "cores": 2},
            "software": self.software,
            "updated_at": created + timedelta(seconds=30),
            "arrays": {
                "numbers": numbers,
                "positions": positions.tolist(),
                "cell": cell.tolist(),
                "pbc": [True, True, True],
            },
            "arrays_file": None,
        }
        if ok:
            doc.update(
                {
                    "energy_eV": energy,
                    "energy_per_atom_eV": energy / 8,
                    "stress_GPa": stress.tolist(),
                    "pressure_GPa": pressure,
                }
            )
            doc["arrays"]["forces"] = rng.normal(size=(8, 3)).tolist()
        else:
            doc["error"] = f"{status}: see espresso.out"  # no results, no pressure
        return doc

    def batch(self, start: int, n: int) -> list[dict[str, Any]]:
        return [self.make(i) for i in range(start, start + n)]


# -- stores ---------------------------------------------------------------------------------------


class UniqueOnlyStore(Store):
    """A Store whose labels have only the unique (structure_id, physics_hash) index."""

    def ensure_indexes(self) -> None:
        self.db.labels.create_index([("structure_id", 1), ("physics_hash", 1)], unique=True)


@contextlib.contextmanager
def server_uri(uri: str | None) -> Iterator[tuple[str, str]]:
    if uri:
        yield uri, "given"
        return
    with tempfile.TemporaryDirectory(prefix="al-db-bench-") as tmp:
        server = EmbeddedServer(Path(tmp))
        try:
            yield server.start(), f"embedded secantusdb, on-disk storage in {tmp}"
        finally:
            server.stop()


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall times of ``repeat`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n-labels", type=int, default=100_000)
    parser.add_argument("--uri", default=None, help="MongoDB URI (default: embedded server)")
    parser.add_argument(
        "--queries", type=int, default=50, help="timed runs of the query on the indexed collection"
    )
    parser.add_argument(
        "--baseline-queries",
        type=int,
        default=5,
        help="timed runs on the unindexed collection (a collection scan: "
        "slow and steady, a few runs give its median)",
    )
    parser.add_argument("--batch", type=int, default=1000, help="documents per insert_many")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tag = uuid.uuid4().hex[:8]
    names = {k: f"al_bench_{k}_{tag}" for k in ("indexed", "plain", "one", "many")}
    with server_uri(args.uri) as (uri, where):
        print(f"server: {where} ({uri})")
        print(f"labels: {args.n_labels:,} in batches of {args.batch:,}; query: {QUERY.to_filter()}")
        indexed = Store.connect(uri, names["indexed"])  # its constructor: ensure_indexes()
        plain = UniqueOnlyStore.connect(uri, names["plain"])
        try:
            return run(args, indexed, plain, uri, names)
        finally:
            for name in names.values():
                indexed.client.drop_database(name)
            indexed.close()
            plain.close()


def run(
    args: argparse.Namespace, indexed: Store, plain: Store, uri: str, names: dict[str, str]
) -> int:
    factory = LabelFactory(args.seed)
    n_index = len(indexed.db.labels.index_information())
    n_plain = len(plain.db.labels.index_information())
    print(
        f"indexes on labels: {n_index} (Store.ensure_indexes) vs {n_plain} (baseline); "
        f"document size ~{len(bson_bytes(factory.make(0)))} bytes"
    )

    # 1. inserts, the same batches into both databases, alternating
    t_indexed = t_plain = t_make = 0.0
    done = 0
    t_start = time.perf_counter()
    while done < args.n_labels:
        n = min(args.batch, args.n_labels - done)
        t = time.perf_counter()
        docs = factory.batch(done, n)
        t_make += time.perf_counter() - t
        t = time.perf_counter()
        indexed.db.labels.insert_many(docs, ordered=False)
        t_indexed += time.perf_counter() - t
        t = time.perf_counter()
        plain.db.labels.insert_many(docs, ordered=False)  # same _id values as above
        t_plain += time.perf_counter() - t
        done += n
        if done % (20 * args.batch) == 0 or done == args.n_labels:
            print(
                f"  {done:>9,} labels: {done / t_indexed:8,.0f}/s indexed, "
                f"{done / t_plain:8,.0f}/s baseline, {time.perf_counter() - t_start:6.1f} s",
                flush=True,
            )
    assert indexed.db.labels.estimated_document_count() == args.n_labels
    assert plain.db.labels.estimated_document_count() == args.n_labels

    # 2. the query users make
    expected = sum(
        1
        for d in plain.db.labels.find(
            {}, {"requests": 1, "status": 1, "pressure_GPa": 1, "elements": 1}
        )
        if d["status"] == "ok"
        and "Fe" in d["elements"]
        and 100 <= d["pressure_GPa"] <= 150
        and any(r["campaign"] == "cafeni-prod" for r in d["requests"])
    )
    series = [
        ("find_labels, Store indexes", lambda: find(indexed), args.queries),
        ("find_labels, unique index only", lambda: find(plain), args.baseline_queries),
        ("find, one $match, Store indexes", lambda: find_one_filter(indexed), args.queries),
    ]
    results: dict[str, list[float]] = {}
    for label, fn, repeat in series:
        t = time.perf_counter()
        hits = fn()  # warm-up, and the result check
        if hits != expected:
            print(f"WRONG RESULT: {label} found {hits}, expected {expected}")
            return 1
        print(
            f"  {label:<32} warm-up {time.perf_counter() - t:7.2f} s; {repeat} runs ...", flush=True
        )
        results[label] = timed(fn, repeat)
        print(
            f"  {label:<32} median {1e3 * statistics.median(results[label]):9.1f} ms, "
            f"p90 {1e3 * p90(results[label]):9.1f} ms, {hits:,} hits",
            flush=True,
        )

    # 3. insert_one against insert_many, 2,000 documents, fresh indexed databases
    sample = LabelFactory(args.seed + 1).batch(0, SAMPLE)
    one = Store.connect(uri, names["one"])
    many = Store.connect(uri, names["many"])
    try:
        t = time.perf_counter()
        for doc in sample:
            one.db.labels.insert_one(dict(doc))
        t_one = time.perf_counter() - t
        t = time.perf_counter()
        for k in range(0, SAMPLE, args.batch):
            many.db.labels.insert_many([dict(d) for d in sample[k : k + args.batch]])
        t_many = time.perf_counter() - t
    finally:
        one.close()
        many.close()

    # figures
    rate_indexed = args.n_labels / t_indexed
    rate_plain = args.n_labels / t_plain
    med = {k: statistics.median(v) * 1e3 for k, v in results.items()}
    p9 = {k: p90(v) * 1e3 for k, v in results.items()}
    main_q, base_q, split_q = (label for label, _fn, _n in series)
    stages = QUERY.to_pipeline()
    index_part, rest = stages[0]["$match"], (stages[1]["$match"] if len(stages) > 1 else {})
    rows = [
        ("labels inserted (insert_many)", f"{args.n_labels:,}", f"batches of {args.batch:,}"),
        ("insert rate, Store indexes", f"{rate_indexed:,.0f} /s", f"{t_indexed:.1f} s"),
        ("insert rate, unique index only", f"{rate_plain:,.0f} /s", f"{t_plain:.1f} s"),
        ("  ratio indexed/unindexed (rate)", f"{rate_indexed / rate_plain:.2f}", ""),
        ("query hits", f"{expected:,}", f"of {args.n_labels:,}"),
    ]
    for label in (main_q, base_q, split_q):
        rows.append(
            (
                f"{label}: median",
                f"{med[label]:,.1f} ms",
                f"p90 {p9[label]:,.1f} ms, {len(results[label])} runs",
            )
        )
    rows += [
        (
            "  ratio indexed/unindexed (median)",
            f"{med[main_q] / med[base_q]:.3f}",
            f"{med[base_q] / med[main_q]:.1f}x faster with the Store's indexes",
        ),
        (
            "  ratio Store pipeline/one $match",
            f"{med[main_q] / med[split_q]:.3f}",
            f"{med[split_q] / med[main_q]:.1f}x faster with the two-stage pipeline",
        ),
        (f"insert_one, {SAMPLE:,} docs", f"{SAMPLE / t_one:,.0f} /s", f"{t_one:.2f} s"),
        (f"insert_many, {SAMPLE:,} docs", f"{SAMPLE / t_many:,.0f} /s", f"{t_many:.2f} s"),
        ("  ratio insert_many/insert_one", f"{t_one / t_many:.1f}", "(rate)"),
        (
            "wall time of the benchmark",
            f"{time.perf_counter() - t_start:,.0f} s",
            f"incl. {t_make:.0f} s making documents",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(f"{'figure':<{width}}  {'value':>{vwidth}}  note")
    print("-" * (width + vwidth + 40))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    print(f"plan (explain) of the Store's filter: {explain(indexed, QUERY.to_filter())}")
    print(
        f"plan (explain) of the pipeline's first stage: {explain(indexed, index_part)}, "
        f"then {sorted(rest)} on what it finds"
    )
    record(
        "db_bench",
        {
            "labels": args.n_labels,
            "batch": args.batch,
            "query_hits": expected,
            "insert_per_s_store_indexes": round(rate_indexed),
            "insert_per_s_unique_index_only": round(rate_plain),
            "insert_ratio_indexed_to_baseline": round(rate_indexed / rate_plain, 2),
            "query_median_ms": {k: round(v, 1) for k, v in med.items()},
            "query_p90_ms": {k: round(v, 1) for k, v in p9.items()},
            "query_runs": {k: len(v) for k, v in results.items()},
            "query_speed_up_vs_unindexed": round(med[base_q] / med[main_q], 2),
            "query_speed_up_vs_one_match": round(med[split_q] / med[main_q], 2),
            "insert_one_per_s": round(SAMPLE / t_one),
            "insert_many_per_s": round(SAMPLE / t_many),
            "plan_store_filter": explain(indexed, QUERY.to_filter()),
            "plan_pipeline_first_stage": explain(indexed, index_part),
            "wall_s": round(time.perf_counter() - t_start),
        },
    )
    return 0


def find(store: Store) -> int:
    """What a user does: the matching labels without their arrays."""
    return sum(1 for _ in store.find_labels(QUERY, with_arrays=False))


def find_one_filter(store: Store) -> int:
    """The same query as one filter document (what ``find(filter)`` does): the comparison."""
    cursor = store.db.labels.find(QUERY.to_filter(), {"arrays": 0}).sort("_id", 1)
    return sum(1 for _ in cursor)


def bson_bytes(doc: dict[str, Any]) -> bytes:
    import bson

    return bson.encode(doc)


def explain(store: Store, flt: dict[str, Any]) -> str:
    """The server's winning plan for ``flt`` on the labels (stage[index] <- input stage)."""
    try:
        info = store.db.command(
            "explain", {"find": "labels", "filter": flt}, verbosity="queryPlanner"
        )
    except pymongo.errors.PyMongoError as exc:
        return f"explain unsupported ({type(exc).__name__})"
    plan = info.get("queryPlanner", {}).get("winningPlan", {})
    stages = []
    while plan:
        stages.append(
            plan.get("stage", "?") + (f"[{plan['indexName']}]" if "indexName" in plan else "")
        )
        plan = plan.get("inputStage") or {}
    return " <- ".join(stages) or "unknown"


if __name__ == "__main__":
    sys.exit(main())
