"""The oracle interface: one class per code that turns atoms into a label.

An oracle is built from resolved settings (a preset merged with the campaign's overrides) and
returns a :class:`LabelResult` for every structure, never raising: a failure is a status.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shlex
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ase import Atoms

log = logging.getLogger(__name__)

#: Every status a label can have. Only ``ok`` labels train a model.
STATUSES = ("ok", "unconverged", "killed", "input_error", "crashed")


@dataclass
class LabelResult:
    """What an oracle returns for one structure (ASE units: eV, Å; stress in Voigt order)."""

    status: str
    code: str
    code_version: str
    settings: dict[str, Any]
    settings_hash: str
    energy_eV: float | None = None
    forces_eV_A: np.ndarray | None = None
    stress_eV_A3: np.ndarray | None = None
    wall_time_s: float = 0.0
    error: str | None = None
    pseudopotentials: dict[str, str] | None = None
    kpoints: Any = None
    retries: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown label status {self.status!r}; allowed: {STATUSES}")


#: Open MPI refuses to start as root unless told twice (CI containers run as root).
OPENMPI_AS_ROOT = ("OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")


def launch_prefix(wall_time_s: float, parallel_cmd: str | None) -> str:
    """The command before a DFT binary: GNU ``timeout`` (TERM at the wall time, KILL 10 s
    later), then the parallel command with environment variables expanded (``-np
    $SLURM_NTASKS``: neither ASE nor quacc runs it through a shell); as root, ``mpirun`` or
    ``mpiexec`` gets Open MPI's two run-as-root variables through ``env`` (this process's
    environment is left alone)."""
    command = os.path.expandvars(parallel_cmd or "").strip()
    words = shlex.split(command)
    if words and Path(words[0]).name in {"mpirun", "mpiexec"} and os.geteuid() == 0:
        command = " ".join(["env", *OPENMPI_AS_ROOT, command])
    return " ".join(["timeout -k 10", str(int(wall_time_s)), command]).strip()


@dataclass
class Attempt:
    """One run of a code: its status, the folder its files are in, what the label's ``retries``
    list keeps of it (``record``), and the calculator's results when ``ok``."""

    status: str
    reason: str
    directory: Path
    record: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] | None = None


def merge_settings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base``; an override of ``None`` removes the key."""
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def settings_hash(code: str, settings: dict[str, Any]) -> str:
    """A stable hash of the code and its full resolved settings (sorted-key JSON, SHA-256)."""
    payload = json.dumps({"code": code, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class Oracle(ABC):
    """Base class of every reference calculator (EMT, Quantum ESPRESSO, VASP)."""

    code: ClassVar[str]
    #: Elements the code can handle with these settings; ``None`` means any element.
    supported_elements: ClassVar[frozenset[str] | None] = None
    #: The setting that must name a file per element (UPF, POTCAR); checked against the
    #: campaign's elements when the campaign file is loaded.
    per_element_setting: ClassVar[str | None] = None

    @classmethod
    def settings_problem(cls, settings: dict[str, Any]) -> tuple[str, str] | None:
        """The first problem with ``settings`` as (key, message), or ``None`` if they are usable.

        Called when a campaign file is loaded, so a typo in a setting is an input error, not a
        run-time failure (nor, worse, a setting silently ignored).
        """
        return None

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = dict(settings)
        self.settings_hash = settings_hash(self.code, self.settings)

    @abstractmethod
    def version(self) -> str:
        """The version of the code that computes the labels."""

    #: The quacc module the code runs through, imported by :meth:`prepare`.
    quacc_module: ClassVar[str | None] = None

    def prepare(self) -> None:
        """Import what the code needs (not counted in a label's wall time; quacc's imports take
        seconds, paid once per process) and check that quacc runs jobs now: inside a Firetask
        there is no workflow engine to hand them to."""
        if self.quacc_module is None:
            return
        from quacc import get_settings

        importlib.import_module(self.quacc_module)
        if get_settings().WORKFLOW_ENGINE is not None:
            raise RuntimeError("unset QUACC_WORKFLOW_ENGINE: al-loop runs quacc jobs directly")

    def climb_retries(
        self, workdir: Path, run: Callable[[dict[str, Any], Path], Attempt]
    ) -> tuple[Attempt, list[dict[str, Any]]]:
        """``run(settings, folder)`` with the settings, then, while the SCF stays unconverged,
        with each rung of ``settings["retries"]`` merged in, each in its own ``attempt-N``
        folder. Returns the last attempt and the label's ``retries`` list (every attempt)."""
        retries: list[dict[str, Any]] = []
        for number, changes in enumerate([{}, *(self.settings.get("retries") or [])]):
            attempt = run(merge_settings(self.settings, changes), workdir / f"attempt-{number}")
            retries.append(
                {
                    "attempt": number,
                    "changes": changes,
                    "status": attempt.status,
                    "reason": attempt.reason,
                    **attempt.record,
                    "directory": str(attempt.directory),
                }
            )
            if attempt.status != "unconverged":
                break
        return attempt, retries

    @abstractmethod
    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        """Run the code once; may raise, :meth:`label` turns exceptions into ``crashed``."""

    def result(self, status: str, **fields: Any) -> LabelResult:
        """A :class:`LabelResult` carrying this oracle's identity and settings."""
        return LabelResult(
            status=status,
            code=self.code,
            code_version=self.version(),
            settings=self.settings,
            settings_hash=self.settings_hash,
            **fields,
        )

    def ok_result(self, results: dict[str, Any], **fields: Any) -> LabelResult:
        """An ``ok`` result from a calculator's results (energy, forces, stress)."""
        return self.result(
            "ok",
            energy_eV=float(results["energy"]),
            forces_eV_A=np.asarray(results["forces"], dtype=float),
            stress_eV_A3=np.asarray(results["stress"], dtype=float),
            **fields,
        )

    def label(self, atoms: Atoms, workdir: str | Path) -> LabelResult:
        """Label one structure in ``workdir``; every failure comes back as a status."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            self.prepare()
            start = time.perf_counter()
            result = self._compute(atoms.copy(), workdir)
        except Exception as exc:  # a failure is data, never lost
            log.warning("%s failed on %s: %s", self.code, atoms.get_chemical_formula(), exc)
            result = self.result("crashed", error="".join(traceback.format_exception(exc)))
        result.wall_time_s = time.perf_counter() - start
        return result
