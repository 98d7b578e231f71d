"""What a worker finds in its environment, written and read in this one module.

A Firework carries no URI and no machine-specific command: each worker finds them in its own
configuration.

- **The dataset** (never a password in a file al-loop writes): the FWorker's ``env`` holds
  ``al_loop_store_uri`` (a URI without a password), ``al_loop_store_uri_file`` (a file holding
  the URI), ``al_loop_store_uri_env`` (the name of a variable holding it) or
  ``al_loop_store_data_dir`` (the embedded server's folder); else the process variable
  ``AL_LOOP_STORE_URI``. Connections are cached per process: rapidfire reuses them.
- **Execution settings of the oracles** (``al_loop_execution: {code: {setting: value}}`` in the
  FWorker's ``env``): the DFT binary, ``mpirun``, paths, wall time of this machine. They
  replace the Firework's execution settings; physics settings cannot be changed there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from database import EmbeddedServer, Store, resolve_uri

#: The process variable that holds the dataset's URI for workers.
URI_VARIABLE = "AL_LOOP_STORE_URI"
#: FWorker ``env`` keys.
URI_KEY, URI_FILE_KEY, URI_ENV_KEY, DATA_DIR_KEY = (
    "al_loop_store_uri",
    "al_loop_store_uri_file",
    "al_loop_store_uri_env",
    "al_loop_store_data_dir",
)
EXECUTION_KEY = "al_loop_execution"

_STORES: dict[tuple[str, str], Store] = {}
_JOINED: dict[Path, EmbeddedServer] = {}


def fworker_env(
    uri: str | None = None,
    uri_file: Path | None = None,
    data_dir: Path | None = None,
    execution: dict[str, dict[str, Any]] | None = None,
    uri_env: str | None = None,
) -> dict[str, Any]:
    """The FWorker ``env`` telling Firetasks where the dataset is: a URI file, else a URI
    without a password, else the name of the variable that holds it (a queue job inherits
    the environment it was submitted from), else the embedded server's folder; and this
    machine's execution settings per code, if any."""
    env: dict[str, Any] = {}
    if uri_file is not None:
        env[URI_FILE_KEY] = str(uri_file)
    elif uri is not None:
        env[URI_KEY] = uri  # validated by the campaign file: holds no password
    elif uri_env is not None:
        env[URI_ENV_KEY] = uri_env
    elif data_dir is not None:
        env[DATA_DIR_KEY] = str(data_dir)
    if execution:
        env[EXECUTION_KEY] = execution
    return env


def process_env(uri_variable: str | None) -> dict[str, str]:
    """Variables of local rocket launchers: the URI, when the campaign reads it from the
    variable ``uri_variable`` (it is passed on, never written to a file)."""
    return {URI_VARIABLE: os.environ[uri_variable]} if uri_variable else {}


def store_uri(fw_env: dict[str, Any] | None) -> str:
    """The URI of the dataset's server as a worker sees it."""
    env = fw_env or {}
    uri = resolve_uri(env.get(URI_KEY), env.get(URI_FILE_KEY))
    if uri is None and env.get(URI_ENV_KEY) and os.environ.get(env[URI_ENV_KEY]):
        uri = os.environ[env[URI_ENV_KEY]]
    if uri is None and os.environ.get(URI_VARIABLE):
        uri = os.environ[URI_VARIABLE]
    if uri is None and env.get(DATA_DIR_KEY):
        data_dir = Path(env[DATA_DIR_KEY])
        if data_dir not in _JOINED:  # a user of the server while this worker lives
            _JOINED[data_dir] = EmbeddedServer(data_dir)
            _JOINED[data_dir].join()
        uri = _JOINED[data_dir].running_uri()
        if uri is None:
            raise RuntimeError(
                f"no embedded al-loop server is running for {data_dir}; "
                "start one with `al-loop db serve CAMPAIGN.yaml`"
            )
    if uri is None:
        raise RuntimeError(
            "this worker does not know where the al-loop dataset is: set "
            f"{URI_VARIABLE} or {URI_KEY}[_file] in the FWorker's env"
        )
    return uri


def task_store(fw_env: dict[str, Any] | None, database: str, launchpad_database: str) -> Store:
    """A connected :class:`Store` for a Firetask (cached per process)."""
    uri = store_uri(fw_env)
    key = (uri, database)
    if key not in _STORES:
        _STORES[key] = Store.connect(uri, database, launchpad_database=launchpad_database)
    return _STORES[key]


def execution_settings(fw_env: dict[str, Any] | None, code: str) -> dict[str, Any]:
    """This worker's execution settings for ``code`` (empty when it has none)."""
    table = (fw_env or {}).get(EXECUTION_KEY) or {}
    return dict(table.get(code) or {})
