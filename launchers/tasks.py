"""The Firetasks: labelling structures with an oracle (label documents), and training one
committee member (a model document)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fireworks import FiretaskBase, FWAction, explicit_serialize
from pymongo.errors import PyMongoError

from calculators.models.member_training import MemberJob, train_member
from calculators.oracles import LabelResult, Oracle, merge_settings, oracle_class
from calculators.oracles.settings import differences
from database import Store
from database.documents import stress_fields
from database.store import CLAIM_EXPIRY_S
from launchers.worker_env import execution_settings, task_store

log = logging.getLogger(__name__)


class LabellingFailed(RuntimeError):
    """Raised after a batch in which some structures failed, so that the Firework FIZZLEs."""


def label_fields(result: LabelResult, natoms: int, worker: dict[str, Any]) -> dict[str, Any]:
    """The label document's fields from an oracle result (arrays are stored separately)."""
    fields = {
        k: v
        for k, v in dataclasses.asdict(result).items()
        if k not in ("forces_eV_A", "stress_eV_A3", "extra")
    }
    fields.update(stress_fields(result.stress_eV_A3))
    fields["extra"] = result.extra
    fields["energy_per_atom_eV"] = (
        result.energy_eV / natoms if result.energy_eV is not None else None
    )
    if result.forces_eV_A is not None:
        fields["max_force_eV_A"] = float((result.forces_eV_A**2).sum(axis=1).max() ** 0.5)
    fields["host"] = worker.get("host")
    return fields


def worker_oracle(spec: dict[str, Any], fw_env: dict[str, Any] | None) -> Oracle:
    """The Firework's oracle (``{"code", "settings", "elements", "physics_hash"}``) with this
    worker's execution settings (FWorker ``env``) merged in, checked to compute the same
    physics: the worker's files (pseudopotentials, POTCARs) must have the content the campaign
    hashed, and a worker may change no physics setting. The commands it runs (the settings'
    ``command_fields``) come from the worker alone: a Firework's are ignored."""
    code = spec["code"]
    local = execution_settings(fw_env, code)
    Oracle = oracle_class(code)
    # what this worker executes is its own: anyone who can write to the LaunchPad could put
    # any command in a Firework
    given = {k: v for k, v in spec["settings"].items() if k not in Oracle.Settings.command_fields}
    oracle = Oracle(merge_settings(given, local))
    expected, elements = spec.get("physics_hash"), spec.get("elements") or []
    if expected is not None and oracle.physics_hash_for(elements) != expected:
        changed = differences(spec.get("physics") or {}, oracle.physics_for(elements))
        raise LabellingFailed(
            f"this worker would compute other physics than the campaign's ({code}: "
            f"{', '.join(changed) or 'physics hash'} differ): check its pseudopotential/POTCAR "
            f"files and its al_loop_execution settings ({sorted(local) or 'none'})"
        )
    return oracle


def error_summary(error: str | None) -> str:
    """The exception lines of a (possibly chained) traceback: root cause -> ... -> last raised.

    ``quacc`` wraps a calculator's error in ``JobFailure``; the last line alone would hide the
    original error (e.g. ``NotImplementedError: No EMT-potential for Fe``).
    """
    skip = (
        "Traceback (most recent call last)",
        "The above exception was the direct cause",
        "During handling of the above exception",
    )
    lines = [
        line.strip()
        for line in (error or "").splitlines()
        if line.strip() and not line[:1].isspace() and not line.startswith(skip)
    ]
    return " -> ".join(lines) if lines else "(no error text)"


@contextlib.contextmanager
def heartbeat(store: Store, claim: dict[str, Any], every_s: float) -> Iterator[None]:
    """Beat ``claim``'s heartbeat every ``every_s`` seconds while the block runs: a label
    whose worker stops beating (killed, its node lost) is taken over after the expiry."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                if not store.beat_label(claim):
                    log.warning("label %s was taken over by another claim", claim["_id"])
                    return
            except PyMongoError as exc:  # the server is away: the next beat tries again
                log.warning("label heartbeat failed: %s", exc)

    thread = threading.Thread(target=beat, name="label heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s + 5)


@explicit_serialize
class LabelStructuresTask(FiretaskBase):
    """Label ``structure_ids`` with ``oracle`` (``{"code", "settings"}``) and store the labels.

    Each structure is claimed first (unique per structure and settings hash), so racing
    workers and reruns never label it twice. Failures are stored with their status; if any
    structure failed and ``fail_on_error`` (default true), the task raises and the Firework
    FIZZLES with the error; the failed labels are kept, and a rerun retries only them.
    """

    required_params = ["structure_ids", "campaign", "iteration", "oracle", "store", "job_id"]
    optional_params = ["fail_on_error", "claim_expiry_s"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        store_spec = self["store"]
        store = task_store(
            fw_spec.get("_fw_env"),
            store_spec["database"],
            store_spec.get("launchpad_database", "al_loop_fireworks"),
        )
        oracle = worker_oracle(self["oracle"], fw_spec.get("_fw_env"))
        worker = {
            "job_id": self["job_id"],
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "launch_dir": os.getcwd(),
        }
        done, skipped, failed = [], [], []
        for sid in self["structure_ids"]:
            atoms = store.get_structure(sid)
            identity = oracle.physics_hash_for(atoms.get_chemical_symbols())
            expiry_s = float(self.get("claim_expiry_s", CLAIM_EXPIRY_S))
            claim = store.claim_label(
                sid,
                identity,
                self["campaign"],
                int(self["iteration"]),
                {**worker, "expiry_s": expiry_s},  # others wait this long for our heartbeat
                expiry_s,
            )
            if claim is None:
                skipped.append(sid)
                continue
            with heartbeat(store, claim, expiry_s / 10):
                result = oracle.label(atoms, Path.cwd() / sid[:16])
            store.complete_label(
                claim, atoms, label_fields(result, len(atoms), worker), forces=result.forces_eV_A
            )
            (done if result.status == "ok" else failed).append((sid, result))
        summary = {
            "labelled": len(done),
            "skipped": len(skipped),
            "failed": len(failed),
            "physics_hash": self["oracle"].get("physics_hash"),
        }
        log.info("labelled %(labelled)d, skipped %(skipped)d, failed %(failed)d", summary)
        if failed and self.get("fail_on_error", True):
            lines = [f"{sid[:16]} {r.status}: {error_summary(r.error)}" for sid, r in failed]
            raise LabellingFailed(
                f"{len(failed)} of {len(self['structure_ids'])} structures "
                "failed (stored with their status):\n" + "\n".join(lines)
            )
        return FWAction(stored_data=summary)


@explicit_serialize
class TrainMemberTask(FiretaskBase):
    """Train one committee member and store it: a Firework of the train stage on a queue
    (``committee.queue``). ``job`` is a signed
    :class:`calculators.models.member_training.MemberJob` (the database it goes to included);
    one whose signature does not match this worker's model-signing key is refused: its
    foundation file and mace options would be loaded and run."""

    required_params = ["job"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        job = MemberJob.from_dict(dict(self["job"])).check()  # the database names too
        store = task_store(
            fw_spec.get("_fw_env"),
            job.store["database"],
            job.store.get("launchpad_database", "al_loop_fireworks"),
        )
        doc = train_member(store, job, Path.cwd() / f"member{job.member}")
        return FWAction(
            stored_data={
                "member": job.member,
                "sha256": doc["sha256"],
                "training_wall_s": doc["training_wall_s"],
            }
        )
