"""The embedded secantusdb server: start, reuse by a second user, persistence, open_store."""

from __future__ import annotations

import json
from pathlib import Path

import pymongo
import pytest

from database import EmbeddedServer, open_store
from database.embedded import STATE_FILE, ping

pytestmark = pytest.mark.integration


def _client(uri: str) -> pymongo.MongoClient:
    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)


def test_start_reuse_and_stop(tmp_path: Path) -> None:
    first = EmbeddedServer(tmp_path)
    try:
        uri = first.start()
        assert first.uri == uri
        assert ping(uri)
        state = json.loads((tmp_path / STATE_FILE).read_text())
        assert uri == f"mongodb://127.0.0.1:{state['port']}"
        assert state["pid"] == first.process.pid
        assert (tmp_path / "wiredtiger").exists()

        second = EmbeddedServer(tmp_path)
        assert second.running_uri() == uri
        assert second.start() == uri
        assert second.process is None
        second.stop()  # not its server: nothing happens
        assert ping(uri)
        assert (tmp_path / STATE_FILE).exists()
        with EmbeddedServer(tmp_path) as third:  # nor as a context manager
            assert third.uri == uri
        assert ping(uri)
    finally:
        first.stop()
    assert not (tmp_path / STATE_FILE).exists()
    assert not ping(uri, timeout_s=0.5)
    assert first.process is None
    first.stop()  # stopping twice is harmless


def test_data_persist_across_restart(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path) as server:
        client = _client(server.uri)
        client.al.things.insert_many([{"_id": i, "square": i * i} for i in range(5)])
        client.close()
    assert not (tmp_path / STATE_FILE).exists()

    with EmbeddedServer(tmp_path) as server:
        client = _client(server.uri)
        assert client.al.things.find_one({"_id": 3}) == {"_id": 3, "square": 9}
        assert client.al.things.count_documents({}) == 5
        client.close()


def test_stale_state_file_is_ignored(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 2**22 + 12345, "port": 1}))
    server = EmbeddedServer(tmp_path)
    assert server.running_uri() is None
    try:
        uri = server.start()
        assert server.process is not None
        assert ping(uri)
        assert json.loads((tmp_path / STATE_FILE).read_text())["pid"] == server.process.pid
    finally:
        server.stop()


def test_a_server_of_another_host_is_neither_joined_nor_started_over(tmp_path: Path) -> None:
    """server.json names another node (a shared filesystem): starting a second server on the
    same files would corrupt them, and the first cannot be reached: a clear error instead."""
    (tmp_path / STATE_FILE).write_text(json.dumps({"pid": 1, "port": 27999, "host": "node042"}))
    for use in (EmbeddedServer(tmp_path).start, EmbeddedServer(tmp_path).join):
        with pytest.raises(RuntimeError, match="started on host node042"):
            use()
    assert not (tmp_path / "wiredtiger").exists()


def test_memory_storage_writes_no_database_files(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path, storage=":memory:") as server:
        client = _client(server.uri)
        client.al.things.insert_one({"x": 1})
        assert client.al.things.count_documents({}) == 1
        client.close()
        assert (tmp_path / STATE_FILE).exists()
    assert not (tmp_path / "wiredtiger").exists()


def test_open_store_without_uri_starts_and_stops_a_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with open_store("al_demo", data_dir) as store:
        uri = store.uri
        assert uri is not None
        assert ping(uri)
        assert json.loads((data_dir / STATE_FILE).read_text())["port"] == int(uri.rsplit(":", 1)[1])
        store.db.campaigns.insert_one({"_id": "demo", "state": "explore"})
    assert not ping(uri, timeout_s=0.5)
    assert not (data_dir / STATE_FILE).exists()
    assert (data_dir / "wiredtiger").exists()  # the data stay on disk


def test_open_store_reuses_a_running_embedded_server(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path) as server:
        with open_store("al_demo", tmp_path) as store:
            assert store.uri == server.uri
        assert ping(server.uri)  # open_store did not start it, so it did not stop it
        assert (tmp_path / STATE_FILE).exists()


def test_open_store_with_a_uri_starts_nothing(
    tmp_path: Path, mongo_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AL_LOOP_TEST_URI", mongo_uri)
    with open_store("al_test_open_store", tmp_path / "unused", uri_env="AL_LOOP_TEST_URI") as store:
        assert store.uri == mongo_uri
        store.db.things.insert_one({"x": 1})
        store.client.drop_database("al_test_open_store")
    assert not (tmp_path / "unused").exists()
    assert ping(mongo_uri)


def test_open_store_stops_its_server_when_connecting_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import database.connection

    started: list[str] = []

    def broken_connect(uri: str, *args: object, **kwargs: object) -> None:
        started.append(uri)
        raise RuntimeError("index creation failed")

    monkeypatch.setattr(database.connection.Store, "connect", broken_connect)
    with pytest.raises(RuntimeError, match="index creation failed"), open_store("x", tmp_path):
        pass
    assert len(started) == 1
    assert not ping(started[0], timeout_s=0.5)
    assert not (tmp_path / STATE_FILE).exists()


def test_the_last_live_user_stops_the_server_whoever_started_it(tmp_path: Path) -> None:
    """A process killed with kill -9 leaves the server it started; the next user that ends
    stops it, as its last live user."""
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from database import EmbeddedServer\n"
        f"s = EmbeddedServer({str(tmp_path)!r}); print(s.start(), flush=True); time.sleep(600)\n"
    )
    starter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        uri = starter.stdout.readline().strip()
        assert ping(uri)
        starter.kill()  # kill -9: no stop, its user file is left
        starter.wait()
        assert ping(uri)  # its own session: the server outlives it
        with EmbeddedServer(tmp_path) as later:
            assert later.uri == uri and later.process is None
        deadline = time.monotonic() + 30
        while ping(uri, timeout_s=0.3) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not ping(uri, timeout_s=0.5)
        assert not (tmp_path / STATE_FILE).exists()
        assert list((tmp_path / "users").iterdir()) == []
    finally:
        if starter.poll() is None:
            starter.kill()


def test_a_server_that_dies_comes_back_on_its_port(tmp_path: Path) -> None:
    import os
    import signal
    import time

    with EmbeddedServer(tmp_path, watch=True) as server:
        client = _client(server.uri)
        client.al.things.insert_one({"_id": 1})
        pid = json.loads((tmp_path / STATE_FILE).read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while server.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.restarts == 1
        state = json.loads((tmp_path / STATE_FILE).read_text())
        assert state["pid"] != pid and server.uri == f"mongodb://127.0.0.1:{state['port']}"
        # the client made before the crash reconnects to the same address, data kept
        assert client.al.things.find_one({"_id": 1}) == {"_id": 1}
        client.close()


def test_a_joined_user_keeps_the_server_until_it_exits(tmp_path: Path) -> None:
    """A rocket launcher joins the server (no start): a command that ends meanwhile does not
    stop the server under it; once the launcher has exited, the next user stops it."""
    import subprocess
    import sys

    code = (
        "import time\n"
        "from database import EmbeddedServer\n"
        f"print(EmbeddedServer({str(tmp_path)!r}).join(), flush=True); time.sleep(3)\n"
    )
    with EmbeddedServer(tmp_path) as first:
        uri = first.uri
        worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert worker.stdout.readline().strip() == uri
    assert ping(uri)  # the worker still uses it
    worker.wait(timeout=60)
    assert list((tmp_path / "users").iterdir()) == []  # its file went with it
    with EmbeddedServer(tmp_path) as later:
        assert later.uri == uri
    assert not ping(uri, timeout_s=0.5)
