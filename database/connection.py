"""Where the dataset lives: a MongoDB URI (inline, file or environment) or the embedded server."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

from database.embedded import EmbeddedServer
from database.store import Store

log = logging.getLogger(__name__)


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for logs and messages)."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", uri)


def resolve_uri(
    uri: str | None = None, uri_file: str | Path | None = None, uri_env: str | None = None
) -> str | None:
    """The MongoDB URI from, in order: ``uri``, the file ``uri_file``, the variable ``uri_env``.

    ``None`` means: use the embedded server.
    """
    if uri:
        return uri
    if uri_file:
        text = Path(uri_file).read_text().strip()
        if not text:
            raise ValueError(f"{uri_file}: the URI file is empty; write one mongodb:// URI in it")
        return text
    if uri_env:
        value = os.environ.get(uri_env, "").strip()
        if not value:
            raise ValueError(f"environment variable {uri_env} (store.uri_env) is not set")
        return value
    return None


@contextlib.contextmanager
def open_store(
    database: str,
    data_dir: str | Path,
    uri: str | None = None,
    uri_file: str | Path | None = None,
    uri_env: str | None = None,
    launchpad_database: str = "al_loop_fireworks",
) -> Iterator[Store]:
    """Connect to the dataset; start (or join) the embedded server under ``data_dir`` when no
    URI is set.

    On exit the embedded server is left, and stopped if no other live process uses it; while
    the block runs, a server that dies is restarted on its port (database/embedded.py).
    """
    resolved = resolve_uri(uri, uri_file, uri_env)
    server = None
    if resolved is None:
        server = EmbeddedServer(Path(data_dir), watch=True)
        resolved = server.start()
    else:
        log.info("using MongoDB at %s", redact(resolved))
    try:
        store = Store.connect(resolved, database, launchpad_database=launchpad_database)
    except BaseException:  # do not leave a server we started running behind us
        if server is not None:
            server.stop()
        raise
    try:
        yield store
    finally:
        store.close()
        if server is not None:
            server.stop()
