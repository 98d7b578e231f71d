"""Model files in the database are signed: loading one can run code (MACE's files are pickled
modules; students are signed too), so a file is used only if its HMAC-SHA256 matches a key not
in the database. Whoever can write to the database, but cannot read the key, cannot make
al-loop run their code.

The key is a file: ``$AL_LOOP_MODEL_KEY_FILE``, else ``~/.config/al-loop/model.key`` (32
random bytes, mode 0600, made on first use). Machines that load a campaign's models (the
campaign's, a GPU node's) share it, as they share an SSH key; a database moved to another
machine comes with its models unsigned there until ``al-loop db trust-models`` signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

KEY_FILE_VARIABLE = "AL_LOOP_MODEL_KEY_FILE"


class UntrustedModel(RuntimeError):
    """A model file whose signature does not match this machine's key (or has none)."""


def key_file() -> Path:
    """Where this machine's signing key is."""
    given = os.environ.get(KEY_FILE_VARIABLE)
    return Path(given).expanduser() if given else Path.home() / ".config" / "al-loop" / "model.key"


def signing_key() -> bytes:
    """This machine's key, made (32 random bytes, mode 0600) if there is none yet; a key that
    others can read is refused."""
    path = key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        try:
            os.link(scratch, path)  # whole or not at all; of two makers, the first one's
        except FileExistsError:
            pass
        finally:
            scratch.unlink()
    if path.stat().st_mode & 0o077:
        raise UntrustedModel(
            f"the model signing key {path} can be read by others: chmod 600 {path}"
        )
    key = path.read_bytes()
    if len(key) < 16:
        raise UntrustedModel(f"the model signing key {path} is shorter than 16 bytes")
    return key


def sign(data: bytes, context: dict[str, Any] | None = None) -> str:
    """The signature of a model file's bytes and of what it is (``context``: campaign,
    iteration, member, companion files...), hex: a signed file cannot be passed off as another
    one."""
    message = json.dumps(context or {}, sort_keys=True, default=str).encode() + b"\0" + data
    return hmac.new(signing_key(), message, hashlib.sha256).hexdigest()


def verify(
    data: bytes, signature: str | None, what: str, context: dict[str, Any] | None = None
) -> bytes:
    """``data`` if ``signature`` signs it and ``context`` under this machine's key; else raise
    :class:`UntrustedModel` naming ``what``."""
    if signature is None or not hmac.compare_digest(sign(data, context), signature):
        state = "has no signature" if signature is None else "has a signature that does not match"
        raise UntrustedModel(
            f"{what} in the database {state} this machine's key ({key_file()}): it was "
            "written by another machine or changed in the database, and loading it could run "
            "code. Copy the campaign machine's key here (or set $AL_LOOP_MODEL_KEY_FILE), or, "
            "if you trust everyone who can write to this database, sign its models with "
            "`al-loop db trust-models CAMPAIGN.yaml`"
        )
    return data
