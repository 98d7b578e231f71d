"""FireWorks' id counters under concurrency on the real embedded server."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _take_ids(uri: str, database: str, n: int, queue: Any) -> None:
    from launchers import make_launchpad  # patches FireWorks' counters in this process

    lp = make_launchpad(uri, database)
    queue.put([lp.get_new_launch_id() for _ in range(n)] + [lp.get_new_fw_id() for _ in range(n)])


def test_concurrent_workers_never_share_an_id(mongo_uri: str) -> None:
    from launchers import make_launchpad

    database = f"compat_{uuid.uuid4().hex[:8]}"
    lp = make_launchpad(mongo_uri, database)  # initialised: ids start at 1
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_take_ids, args=(mongo_uri, database, 150, queue)) for _ in range(3)
    ]
    for process in workers:
        process.start()
    taken = [queue.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=60)
    launch_ids = [i for ids in taken for i in ids[:150]]
    fw_ids = [i for ids in taken for i in ids[150:]]
    assert sorted(launch_ids) == list(range(1, 451))
    assert sorted(fw_ids) == list(range(1, 451))
    lp.connection.drop_database(database)


def _add_workflows(uri: str, database: str, rounds: int, queue: Any) -> None:
    from fireworks import Firework, ScriptTask, Workflow

    from launchers import make_launchpad

    lp = make_launchpad(uri, database)
    for _ in range(rounds):
        lp.bulk_add_wfs([Workflow([Firework(ScriptTask.from_str("true"))]) for _ in range(3)])
    queue.put(True)


def test_concurrent_bulk_adds_never_share_an_id(mongo_uri: str) -> None:
    """FireWorks' bulk_add_wfs reads the counter's pre-image; three processes adding 3 x 40
    workflows each end with 360 Fireworks on 360 distinct ids."""
    from launchers import make_launchpad

    database = f"compat_{uuid.uuid4().hex[:8]}"
    lp = make_launchpad(mongo_uri, database)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_add_workflows, args=(mongo_uri, database, 40, queue)) for _ in range(3)
    ]
    for process in workers:
        process.start()
    assert all(queue.get(timeout=180) for _ in workers)
    for process in workers:
        process.join(timeout=60)
    ids = [d["fw_id"] for d in lp.fireworks.find({}, {"fw_id": 1})]
    assert len(ids) == 360 and sorted(ids) == list(range(1, 361))
    nodes = [n for d in lp.workflows.find({}, {"nodes": 1}) for n in d["nodes"]]
    assert sorted(nodes) == sorted(ids)
    lp.connection.drop_database(database)
