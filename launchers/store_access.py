"""How a Firetask finds the dataset without putting a URI (or a password) in the Firework spec.

Order: the FWorker's ``env`` (``al_loop_store_uri``, ``al_loop_store_uri_file``,
``al_loop_store_data_dir`` for the embedded server), then the environment variable
``AL_LOOP_STORE_URI``. Connections are cached per process: rapidfire reuses them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from database import EmbeddedServer, Store, resolve_uri

ENV_VAR = "AL_LOOP_STORE_URI"

_STORES: dict[tuple[str, str], Store] = {}


def store_uri(fw_env: dict[str, Any] | None) -> str:
    """The URI of the dataset's server as a worker sees it."""
    env = fw_env or {}
    uri = resolve_uri(env.get("al_loop_store_uri"), env.get("al_loop_store_uri_file"))
    if uri is None and os.environ.get(ENV_VAR):
        uri = os.environ[ENV_VAR]
    if uri is None and env.get("al_loop_store_data_dir"):
        data_dir = Path(env["al_loop_store_data_dir"])
        uri = EmbeddedServer(data_dir).running_uri()
        if uri is None:
            raise RuntimeError(
                f"no embedded al-loop server is running for {data_dir}; "
                "start one with `al-loop db serve CAMPAIGN.yaml`"
            )
    if uri is None:
        raise RuntimeError(
            "this worker does not know where the al-loop dataset is: set "
            f"{ENV_VAR} or al_loop_store_uri[_file] in the FWorker's env"
        )
    return uri


def task_store(fw_env: dict[str, Any] | None, database: str, launchpad_database: str) -> Store:
    """A connected :class:`Store` for a Firetask (cached per process)."""
    uri = store_uri(fw_env)
    key = (uri, database)
    if key not in _STORES:
        _STORES[key] = Store.connect(uri, database, launchpad_database=launchpad_database)
    return _STORES[key]
