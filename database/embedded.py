"""The embedded MongoDB-protocol server (secantusdb) used when a campaign gives no URI.

One server per data folder. A second process that asks for the same folder finds the running
server through ``server.json`` and reuses it instead of starting another on the same files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo

log = logging.getLogger(__name__)

STATE_FILE = "server.json"
LOCK_FILE = "server.lock"


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

    ``storage=":memory:"`` keeps nothing on disk (tests). Use as a context manager; the server
    is stopped at exit only if this object started it.
    """

    def __init__(
        self, data_dir: str | Path, storage: str | None = None, start_timeout_s: float = 60.0
    ) -> None:
        self.data_dir = Path(data_dir)
        self.storage = storage
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.uri: str | None = None

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    def running_uri(self) -> str | None:
        """URI of a live server already serving this folder, if any."""
        try:
            state = json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        uri = f"mongodb://127.0.0.1:{state['port']}"
        if pid_alive(int(state["pid"])) and ping(uri):
            return uri
        return None

    def start(self) -> str:
        """Start the server or reuse a running one; returns its URI.

        Check-and-start holds an exclusive lock on ``server.lock``, so two processes starting
        at once end up with one server.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._start_locked()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _start_locked(self) -> str:
        existing = self.running_uri()
        if existing:
            log.info("reusing the embedded server at %s", existing)
            self.uri = existing
            return existing
        storage = self.storage or str(self.data_dir / "wiredtiger")
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = free_port()
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
            self.process = subprocess.Popen(
                cmd, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
            )
            logfile.close()
            uri = f"mongodb://127.0.0.1:{port}"
            if self._wait_ready(uri):
                self.uri = uri
                scratch = self.state_path.with_suffix(".tmp")
                scratch.write_text(json.dumps({"pid": self.process.pid, "port": port}))
                os.replace(scratch, self.state_path)  # readers never see a partial file
                log.info("embedded server on %s, data in %s", uri, storage)
                return uri
            self._terminate()
        raise RuntimeError(f"the embedded server did not start; see {self.data_dir / 'server.log'}")

    def _wait_ready(self, uri: str) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            if ping(uri, timeout_s=0.5):
                return True
            time.sleep(0.2)
        return False

    def _terminate(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        """Stop the server if this object started it (data stay on disk)."""
        if self.process is None:
            return
        self._terminate()
        self.state_path.unlink(missing_ok=True)
        log.info("embedded server stopped")

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
