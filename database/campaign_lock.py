"""One process at a time runs a campaign's loop (or distils it, or maps its phases).

The lock is a document in ``locks``, ``_id`` ``"<campaign>/<kind>"``, holding its owner (host,
pid, command, a random token) and a heartbeat the owner refreshes every
:data:`HEARTBEAT_S` seconds from a thread. A second process finds it and refuses, saying who
holds it, unless the holder is dead: a process of this host that no longer exists, or a
heartbeat older than ``stale_after_s`` (a crashed process on another host, a node lost). Then
it takes the lock over with a compare-and-swap on the old token, so of two processes that find
the same stale lock, one wins. Times are the database server's (``$currentDate``, ``hello``):
hosts whose clocks differ still agree on a heartbeat's age.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from pymongo.errors import DuplicateKeyError, InvalidOperation, PyMongoError

from database.embedded import pid_alive
from database.store import Store

log = logging.getLogger(__name__)

#: Seconds between two heartbeats of the lock's owner.
HEARTBEAT_S = 10.0
#: A lock whose heartbeat is older than this is a dead owner's (seconds).
STALE_AFTER_S = 60.0


class CampaignLocked(RuntimeError):
    """Another live process holds the campaign's lock."""


class CampaignLock:
    """The lock ``kind`` (``run``, ``distil``, ...) of ``campaign`` in ``store``."""

    def __init__(
        self, store: Store, campaign: str, kind: str, stale_after_s: float = STALE_AFTER_S
    ) -> None:
        self.store = store
        self.key = f"{campaign}/{kind}"
        self.stale_after_s = stale_after_s
        self.token = uuid.uuid4().hex
        self.owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": " ".join(sys.argv)[:500],
            "token": self.token,
        }
        self.taken_over: dict[str, Any] | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def collection(self) -> Any:
        return self.store.db.locks

    def acquire(self) -> None:
        """Take the lock, or take over a dead owner's; raise :class:`CampaignLocked` if a live
        process holds it."""
        now = self.store.server_now()  # every holder's times on the server's clock
        document = {"_id": self.key, "owner": self.owner, "since": now, "heartbeat_at": now}
        try:
            self.collection.insert_one(document)
        except DuplicateKeyError:
            held = self.collection.find_one({"_id": self.key})
            if held is None or not self._dead(held):
                if held is None:  # released between the insert and the read: try once more
                    return self.acquire()
                raise CampaignLocked(self._refusal(held)) from None
            taken = self.collection.find_one_and_replace(
                {"_id": self.key, "owner.token": held["owner"]["token"]}, document
            )
            if taken is None:  # another process took it over first
                held = self.collection.find_one({"_id": self.key}) or held
                raise CampaignLocked(self._refusal(held)) from None
            self.taken_over = held["owner"]
            log.warning(
                "lock %s: took over from pid %s on %s (dead; last heartbeat %s)",
                self.key,
                held["owner"]["pid"],
                held["owner"]["host"],
                held["heartbeat_at"],
            )
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock {self.key}", daemon=True)
        self._beat.start()
        return None

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still this process's."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=HEARTBEAT_S)
        with contextlib.suppress(PyMongoError):
            self.collection.delete_one({"_id": self.key, "owner.token": self.token})

    def check(self) -> None:
        """Raise :class:`CampaignLocked` if another process has taken this lock over (this one
        stopped beating for longer than ``stale_after_s``: suspended, cut off)."""
        if self.lost.is_set():
            raise CampaignLocked(
                f"lock {self.key} was taken over by another process while this one was cut off; "
                "stopping so that the two do not run the same campaign"
            )

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                beat = self.collection.update_one(
                    {"_id": self.key, "owner.token": self.token},
                    {"$currentDate": {"heartbeat_at": True}},
                )
            except InvalidOperation:  # its client was closed: nobody holds this lock now
                return
            except PyMongoError as exc:  # the server is away: try again at the next beat
                log.warning("lock %s: heartbeat failed (%s)", self.key, exc)
                continue
            if beat.matched_count == 0:
                log.error("lock %s: taken over by another process", self.key)
                self.lost.set()
                return

    def _dead(self, held: dict[str, Any]) -> bool:
        owner = held["owner"]
        if owner["host"] == self.owner["host"] and not pid_alive(int(owner["pid"])):
            return True
        age = (self.store.server_now() - held["heartbeat_at"]).total_seconds()
        return age > self.stale_after_s

    def _refusal(self, held: dict[str, Any]) -> str:
        owner = held["owner"]
        age = (self.store.server_now() - held["heartbeat_at"]).total_seconds()
        return (
            f"campaign {self.key.rsplit('/', 1)[0]!r} is already in use: pid {owner['pid']} on "
            f"{owner['host']} has been running `{owner['command']}` since "
            f"{held['since']:%Y-%m-%d %H:%M:%S} UTC (heartbeat {age:.0f} s ago). Wait "
            f"for it to end, or stop it; a lock whose process is gone (or silent for "
            f"{self.stale_after_s:.0f} s) is taken over by the next run"
        )

    def __enter__(self) -> CampaignLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def campaign_lock(store: Store, campaign: str, kind: str) -> Iterator[CampaignLock]:
    """Hold the lock ``kind`` of ``campaign`` for the block."""
    lock = CampaignLock(store, campaign, kind)
    with lock:
        yield lock
