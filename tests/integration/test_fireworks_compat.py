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
