"""The campaign lock on the real server: one holder, a clear refusal naming it, and takeover
from a dead holder (a gone process of this host, or a silent one elsewhere)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading

import pytest

from database import CampaignLock, CampaignLocked, Store
from database import campaign_lock as lock_module
from database.documents import utcnow


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_holder_is_refused_with_who_holds_it(store: Store) -> None:
    with CampaignLock(store, "c", "run"):
        with pytest.raises(CampaignLocked) as info:
            CampaignLock(store, "c", "run").acquire()
        message = str(info.value)
        assert "campaign 'c' is already in use" in message and "pid " in message
        CampaignLock(store, "c", "distil").release()  # another kind is another lock
        with CampaignLock(store, "c", "distil"), CampaignLock(store, "other", "run"):
            pass
    with CampaignLock(store, "c", "run"):  # released at the end of the block
        pass
    assert store.db.locks.count_documents({}) == 0


def test_a_dead_process_of_this_host_loses_its_lock_at_once(store: Store) -> None:
    dead = CampaignLock(store, "c", "run")
    dead.owner = {**dead.owner, "pid": _dead_pid()}
    dead.acquire()
    dead._stop.set()  # as if killed: no heartbeat, no release
    with CampaignLock(store, "c", "run") as taker:
        assert taker.taken_over is not None and taker.taken_over["pid"] == dead.owner["pid"]
        assert store.db.locks.find_one({"_id": "c/run"})["owner"]["token"] == taker.token


@pytest.mark.parametrize(("age_s", "taken"), [(5.0, False), (600.0, True)])
def test_another_hosts_lock_is_taken_over_only_when_silent(
    store: Store, age_s: float, taken: bool
) -> None:
    beat = utcnow() - dt.timedelta(seconds=age_s)
    owner = {"host": "node-elsewhere", "pid": 1, "command": "al-loop run c.yaml", "token": "t"}
    store.db.locks.insert_one({"_id": "c/run", "owner": owner, "since": beat, "heartbeat_at": beat})
    lock = CampaignLock(store, "c", "run")
    if taken:
        with lock:
            assert lock.taken_over == owner
    else:
        with pytest.raises(CampaignLocked, match="node-elsewhere"):
            lock.acquire()


def test_of_two_takers_of_a_stale_lock_one_wins(store: Store) -> None:
    owner = {"host": "node-elsewhere", "pid": 1, "command": "x", "token": "t"}
    old = utcnow() - dt.timedelta(hours=1)
    store.db.locks.insert_one({"_id": "c/run", "owner": owner, "since": old, "heartbeat_at": old})
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def take() -> None:
        lock = CampaignLock(store, "c", "run")
        barrier.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except CampaignLocked:
            outcomes.append("refused")

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]


def test_the_heartbeat_keeps_the_lock_and_notices_a_takeover(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    lock = CampaignLock(store, "c", "run")
    lock.acquire()
    first = store.db.locks.find_one({"_id": "c/run"})["heartbeat_at"]
    threading.Event().wait(0.3)
    assert store.db.locks.find_one({"_id": "c/run"})["heartbeat_at"] > first
    lock.check()  # still ours
    store.db.locks.update_one({"_id": "c/run"}, {"$set": {"owner.token": "someone else"}})
    assert lock.lost.wait(5)
    with pytest.raises(CampaignLocked, match="taken over"):
        lock.check()
    lock.release()
    assert store.db.locks.count_documents({}) == 1  # the other holder's lock is left alone
