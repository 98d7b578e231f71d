"""The embedded MongoDB-protocol server (secantusdb) used when a campaign gives no URI.

One server per data folder. A second process that asks for the same folder finds the running
server through ``server.json`` and reuses it instead of starting another on the same files. The
last live process that uses it stops it; a server that dies comes back on the same port.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pymongo

log = logging.getLogger(__name__)

STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
#: One empty file per process using the server: ``<pid>-<random>``.
USERS_DIR = "users"
#: Seconds between two looks of a watching user at the server's process.
WATCH_S = 1.0


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def executable(name: str, package: str) -> str:
    """Path of the console script ``name`` beside this interpreter, or on ``PATH``."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install {package} (pip install {package})")
    return found


def ping(uri: str, timeout_s: float = 1.0) -> bool:
    """Whether a MongoDB-protocol server answers at ``uri``."""
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


def pid_alive(pid: int) -> bool:
    """Whether a live process (not a zombie left unreaped) has this pid on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # zombie or dead


class EmbeddedServer:
    """Start (or reuse) a secantusdb server storing its data under ``data_dir``.

    ``storage=":memory:"`` keeps nothing on disk (tests). Every process that starts or reuses
    the server is one of its users (a file under ``users/``); the server stops when its last
    live user stops it, whoever started it: a user killed with ``kill -9`` leaves its file, but
    a dead process counts for nothing, so the next user to stop takes the server down with it.
    With ``watch=True`` a thread restarts a server that died under its users, on the same port:
    clients reconnect to the address they know.
    """

    def __init__(
        self,
        data_dir: str | Path,
        storage: str | None = None,
        start_timeout_s: float = 60.0,
        watch: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.storage = storage
        self.start_timeout_s = start_timeout_s
        self.watch = watch
        self.process: subprocess.Popen | None = None
        self.uri: str | None = None
        self.restarts = 0
        self._user: Path | None = None
        self._stop_watching = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def running_uri(self) -> str | None:
        """URI of a live server already serving this folder, if any (RuntimeError if
        ``server.json`` names another host: a server started there on a shared filesystem
        cannot be reached, nor a second one started on its files)."""
        state = self._state()
        if state is None:
            return None
        host = state.get("host", socket.gethostname())
        if host != socket.gethostname():
            raise RuntimeError(
                f"the embedded server of {self.data_dir} was started on host {host} "
                f"({self.state_path}): run al-loop there, or give the campaign a MongoDB that "
                "every node reaches (store.uri_file); if that server is gone, delete "
                f"{self.state_path}"
            )
        uri = f"mongodb://127.0.0.1:{state['port']}"
        if pid_alive(int(state["pid"])) and ping(uri):
            return uri
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the folder's ``server.lock``: check-and-start, and stop, are one step each."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def start(self) -> str:
        """Start the server or reuse a running one, as one of its users; returns its URI.

        Two processes starting at once end up with one server."""
        with self._locked():
            uri = self._start_locked()
            self._become_user()
        if self.watch and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="server watch", daemon=True)
            self._watcher.start()
        return uri

    def _start_locked(self) -> str:
        existing = self.running_uri()
        if existing:
            log.info("reusing the embedded server at %s", existing)
            self.uri = existing
            return existing
        storage = self.storage or str(self.data_dir / "wiredtiger")
        previous = self._state()  # a server that died: come back on its address
        ports = [int(previous["port"])] if previous else []
        for attempt in range(4):  # a free port can be taken between probe and bind
            port = ports[attempt] if attempt < len(ports) else free_port()
            logfile = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 (lives with the process)
            cmd = [
                executable("secantusd-py", "secantusdb"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                storage,
                "--log-level",
                "WARNING",
            ]
            if storage != ":memory:":
                # every commit on disk before it is acknowledged: without it a kill -9 of the
                # server lost the last seconds of writes (measured: 49 of 49 documents lost
                # when killed at once, none 5 s later); it costs 0.3 ms a write (docs/design.md)
                cmd.append("--sync-on-commit")
            self.process = subprocess.Popen(
                cmd, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
            )
            logfile.close()
            uri = f"mongodb://127.0.0.1:{port}"
            if self._wait_ready(uri):
                self.uri = uri
                scratch = self.state_path.with_suffix(".tmp")
                scratch.write_text(
                    json.dumps(
                        {"pid": self.process.pid, "port": port, "host": socket.gethostname()}
                    )
                )
                os.replace(scratch, self.state_path)  # readers never see a partial file
                log.info("embedded server on %s, data in %s", uri, storage)
                return uri
            self._terminate()
            if attempt < len(ports):
                log.warning("port %d of the server that died is taken; starting on another", port)
        raise RuntimeError(f"the embedded server did not start; see {self.data_dir / 'server.log'}")

    def _wait_ready(self, uri: str) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            if ping(uri, timeout_s=0.5):
                return True
            time.sleep(0.05)
        return False

    def _watch(self) -> None:
        """Restart the server, on its port, when it dies while this user still needs it."""
        while not self._stop_watching.wait(WATCH_S):
            state = self._state()
            if state is None or pid_alive(int(state["pid"])):
                continue
            with self._locked():
                if self._stop_watching.is_set():
                    return
                state = self._state()
                if state is None or pid_alive(int(state["pid"])):
                    continue
                log.warning("the embedded server (pid %s) died; restarting it", state["pid"])
                try:
                    self._start_locked()
                    self.restarts += 1
                except RuntimeError as exc:
                    log.error("%s", exc)

    def _terminate(self) -> None:
        if self.process is None:
            return
        process = self.process
        process.terminate()
        port = int(self.uri.rsplit(":", 1)[1]) if self.uri else None
        if not _wait_stopped(lambda: process.poll() is not None, port, 30.0):
            process.kill()
        process.wait()
        self.process = None

    def join(self) -> str | None:
        """Use a running server as one of its users, without starting one (a rocket launcher
        does: the server then outlives a run killed under it); the user file is removed when
        this process exits. Returns the server's URI, or None if none runs."""
        with self._locked():
            uri = self.running_uri()
            if uri is not None and self._user is None:
                atexit.register(self._become_user().unlink, missing_ok=True)
        self.uri = uri
        return uri

    def _become_user(self) -> Path:
        """This object's user file (made once; under the folder's lock)."""
        if self._user is None:
            users = self.data_dir / USERS_DIR
            users.mkdir(exist_ok=True)
            self._user = users / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._user.touch()
        return self._user

    def _live_users(self) -> list[Path]:
        users = self.data_dir / USERS_DIR
        live = []
        for path in users.glob("*-*") if users.is_dir() else []:
            pid = int(path.name.split("-", 1)[0])
            if pid_alive(pid):
                live.append(path)
            else:  # a user killed without stopping
                path.unlink(missing_ok=True)
        return live

    def stop(self) -> None:
        """Leave the server; stop it if no other live process uses it (data stay on disk)."""
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=WATCH_S + 5)
            self._watcher = None
        if self._user is None:
            return
        with self._locked():
            self._user.unlink(missing_ok=True)
            self._user = None
            if self._live_users():
                self.process = None  # others still use it (it is theirs to stop)
                return
            state = self._state()
            if self.process is not None and state and state["pid"] == self.process.pid:
                self._terminate()
            elif state is not None and pid_alive(int(state["pid"])):
                _kill(int(state["pid"]), int(state["port"]))
            self.process = None
            self.state_path.unlink(missing_ok=True)
        log.info("embedded server stopped")

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill(pid: int, port: int | None = None, timeout_s: float = 30.0) -> None:
    """Stop a server this process did not start (SIGTERM, then SIGKILL)."""
    os.kill(pid, signal.SIGTERM)
    if not _wait_stopped(lambda: not pid_alive(pid), port, timeout_s):
        os.kill(pid, signal.SIGKILL)


def _wait_stopped(stopped: Callable[[], bool], port: int | None, timeout_s: float) -> bool:
    """Wait until ``stopped()`` after a SIGTERM; True if it stopped in time.

    The server's stop closes its listening socket and joins its accept thread for 2 s, but on
    Linux a close does not wake a thread blocked in accept(): every stop took 2.1 s. A
    connection to the port wakes it, and the server is gone in ~0.1 s."""
    deadline = time.monotonic() + timeout_s
    while not stopped():
        if time.monotonic() > deadline:
            return False
        if port is not None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                pass
        time.sleep(0.02)
    return True
