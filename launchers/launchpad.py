"""LaunchPad and FWorker for a campaign, and the YAML files FireWorks' own CLIs read."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from fireworks import FWorker, LaunchPad

from launchers import fireworks_compat
from launchers.fireworks_compat import URI_ENV_KEY, URI_FILE_KEY


def make_launchpad(uri: str, launchpad_database: str) -> LaunchPad:
    """The campaign's LaunchPad: on the dataset's server, in its own database.

    A LaunchPad database that was never used is initialised (ids and indexes, as ``lpad
    reset`` would); one that holds anything is left as it is.
    """
    fireworks_compat.patch()
    lp = LaunchPad(host=uri, name=launchpad_database, uri_mode=True, strm_lvl="WARNING")
    if lp.fw_id_assigner.count_documents({}) == 0 and lp.fireworks.count_documents({}) == 0:
        lp.reset("", require_password=False, max_reset_wo_password=0)
    return lp


#: The Firetasks al-loop's workers run (their ``_fw_name``): labelling, a member's training,
#: a campaign command. Each checks what it is given (a worker's own commands, signed jobs).
AL_LOOP_TASKS = (
    "{{launchers.tasks.LabelStructuresTask}}",
    "{{launchers.tasks.TrainMemberTask}}",
    "{{launchers.campaign_commands.CampaignCommandTask}}",
)


def make_fworker(
    name: str,
    category: str | None,
    env: dict[str, Any],
    campaign: str | None = None,
    stage: str | None = None,
) -> FWorker:
    """An FWorker; with ``campaign`` it pulls only that campaign's Fireworks made of al-loop's
    own Firetasks (:data:`AL_LOOP_TASKS`: a Firework that anyone with LaunchPad access wrote
    with a ``ScriptTask`` is never run by it), with ``stage`` only that stage's."""
    query: dict[str, Any] = {}
    if campaign:
        query["spec.al_loop.campaign"] = campaign
        allowed = {"$nin": list(AL_LOOP_TASKS)}
        query["spec._tasks"] = {"$not": {"$elemMatch": {"_fw_name": allowed}}}
    if stage is not None:
        query["spec.al_loop.stage"] = stage
    return FWorker(name=name, category=category or "", env=env, query=query)


def _write_private(path: Path, text: str) -> Path:
    """Write ``text`` atomically with mode 0600, and only if it changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        os.chmod(path, 0o600)
        return path
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(scratch, path)  # a reader (rlaunch, lpad) never sees a partial file
    return path


def write_launchpad_file(
    path: Path,
    uri: str,
    launchpad_database: str,
    uri_file: Path | None = None,
    uri_env: str | None = None,
) -> Path:
    """``my_launchpad.yaml`` for ``lpad``/``rlaunch``/``qlaunch`` (mode 0600).

    A password is never written: when the URI comes from a file (``uri_file``) or a variable
    (``uri_env``), the file holds the URI without it and says where the full one is; the
    LaunchPad is then built by al-loop's commands and ``python -m launchers.rlaunch``, which
    read it there (launchers.fireworks_compat)."""
    content: dict[str, Any] = {"host": uri, "name": launchpad_database}
    if uri_file is not None or uri_env is not None:
        content["host"] = without_password(uri)
        content |= {URI_FILE_KEY: str(uri_file)} if uri_file else {URI_ENV_KEY: uri_env}
    content |= {"uri_mode": True, "strm_lvl": "WARNING"}
    return _write_private(path, yaml.safe_dump(content))


def without_password(uri: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user@host``."""
    return re.sub(r"(://[^:/?#@\s]*):[^@\s]*@", r"\1@", uri)


def write_qadapter_file(path: Path, qadapter: Any) -> Path:
    """``my_qadapter.yaml``: the queue adapter, for FireWorks' ``qlaunch -q``."""
    return _write_private(path, yaml.safe_dump(qadapter.to_dict()))


def write_fworker_file(path: Path, fworker: FWorker) -> Path:
    """``my_fworker.yaml`` with the FWorker's name, category, query and env."""
    return _write_private(path, yaml.safe_dump(fworker.to_dict()))
