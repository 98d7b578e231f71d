"""The oracle interface: one class per code that turns atoms into a label.

An oracle is built from resolved settings (a preset merged with the campaign's overrides) and
returns a :class:`LabelResult` for every structure, never raising: a failure is a status.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import shlex
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ase import Atoms

from calculators.oracles.settings import OracleSettings, digest, file_sha256

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
    #: The label's identity: the hash of the code and :attr:`physics`, the physics settings for
    #: the structure's elements (None when they could not be read, e.g. a missing
    #: pseudopotential file: the label is then an input error).
    physics_hash: str | None = None
    physics: dict[str, Any] | None = None
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


class Oracle(ABC):
    """Base class of every reference code (EMT, Quantum ESPRESSO, VASP).

    A code is a subclass with its ``code`` name, its typed ``Settings`` (every field physics or
    execution, see :mod:`calculators.oracles.settings`) and ``_compute``; one line in
    :mod:`calculators.oracles.registry` makes it available, and the conformance test
    (``tests/integration/test_oracle_conformance.py``) holds it to the contract.
    """

    code: ClassVar[str]
    Settings: ClassVar[type[OracleSettings]]
    #: Elements the code can handle with these settings; ``None`` means any element.
    supported_elements: ClassVar[frozenset[str] | None] = None
    #: The setting that must name a file per element (UPF, POTCAR); checked against the
    #: campaign's elements when the campaign file is loaded, and hashed by content.
    per_element_setting: ClassVar[str | None] = None
    #: The statuses a run of this code can end in.
    statuses: ClassVar[tuple[str, ...]] = STATUSES
    #: The input files :meth:`write_inputs` writes (none: the code runs in this process).
    input_files: ClassVar[tuple[str, ...]] = ()
    #: The quacc module the code runs through, imported by :meth:`prepare`.
    quacc_module: ClassVar[str | None] = None
    #: The program's name in :meth:`version` (pw.x, VASP), its version read from its output.
    program: ClassVar[str] = ""
    _program_version = ""
    #: What to fix when a file of :meth:`physics_files` is missing.
    file_hint: ClassVar[str] = ""
    #: The setting naming the folder of those files, the variable read when it is null, and
    #: how to get such a folder.
    folder_setting: ClassVar[tuple[str, str, str] | None] = None

    def __init__(self, settings: OracleSettings | dict[str, Any]) -> None:
        self.settings = (
            settings
            if isinstance(settings, self.Settings)
            else self.Settings.model_validate(settings)
        )
        self._physics: dict[tuple[str, ...], dict[str, Any]] = {}

    def version(self) -> str:
        """The version of the code that computes the labels (read from its output once it ran)."""
        from quacc import __version__

        read = self._program_version or "(version not read yet)"
        return f"{self.program} {read} (quacc {__version__})"

    # -- identity ------------------------------------------------------------------------------
    def physics_file(self, element: str) -> Path:
        """The file of ``per_element_setting`` for ``element`` (codes that name files)."""
        raise NotImplementedError(f"{self.code} names no file per element")

    def physics_files(self, elements: Sequence[str]) -> dict[str, Path]:
        """The files the physics settings name for ``elements`` (pseudopotentials, POTCARs);
        their content, not their path, is part of a label's identity. Raises ValueError for an
        element without an entry, FileNotFoundError naming the setting and the fix for a file
        that is not there."""
        table_name = self.per_element_setting
        if table_name is None:
            return {}
        missing = sorted(set(elements) - set(getattr(self.settings, table_name)))
        if missing:  # ASE would silently take a default file for the element
            raise ValueError(f"no {table_name} entry for {missing} in the oracle's settings")
        files = {element: self.physics_file(element) for element in elements}
        for element, path in files.items():
            if not path.is_file():
                raise FileNotFoundError(
                    f"{table_name}.{element}: {path} not found; {self.file_hint}"
                )
        return files

    def files_folder(self) -> Path:
        """The folder of the per-element files: its setting, else its environment variable."""
        if self.folder_setting is None:
            raise NotImplementedError(f"{self.code} reads no folder of files")
        setting, variable, how = self.folder_setting
        chosen = getattr(self.settings, setting) or os.environ.get(variable)
        if not chosen:
            raise FileNotFoundError(
                f"no {setting} folder: set oracle.overrides.{setting} or ${variable} ({how})"
            )
        return Path(chosen).expanduser().resolve()

    def physics_for(self, elements: Iterable[str]) -> dict[str, Any]:
        """The physics part of the settings that a structure of ``elements`` is computed with:
        per-element settings restricted to them, each file of :meth:`physics_files` replaced by
        the SHA-256 of its content (read once per process)."""
        species = tuple(sorted(set(elements)))
        if species not in self._physics:
            part = self.settings.physics_part()
            for name in self.settings.per_element_fields:
                part[name] = {el: v for el, v in part[name].items() if el in species}
            files = self.physics_files(species)
            if files:
                part[self.per_element_setting or "files"] = {
                    el: file_sha256(path) for el, path in sorted(files.items())
                }
            self._physics[species] = part
        return self._physics[species]

    def physics_hash_for(self, elements: Iterable[str]) -> str:
        """The identity of a label of a structure made of ``elements``."""
        return digest({"code": self.code, "physics": self.physics_for(elements)})

    def identity_hashes(self, elements: Sequence[str]) -> list[str]:
        """The identities a label of a campaign of ``elements`` can have: one per non-empty
        subset (a Fe-Ni label serves every campaign whose elements include Fe and Ni)."""
        subsets = itertools.chain.from_iterable(
            itertools.combinations(sorted(set(elements)), n) for n in range(1, len(elements) + 1)
        )
        return sorted({self.physics_hash_for(subset) for subset in subsets})

    # -- running ---------------------------------------------------------------------------------
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
        self, workdir: Path, run: Callable[[Any, Path], Attempt]
    ) -> tuple[Attempt, list[dict[str, Any]]]:
        """``run(settings, folder)`` with the settings, then, while the SCF stays unconverged,
        with each rung of ``settings.retries`` merged in, each in its own ``attempt-N``
        folder. Returns the last attempt and the label's ``retries`` list (every attempt)."""
        retries: list[dict[str, Any]] = []
        rungs = getattr(self.settings, "retries", None) or []
        for number, changes in enumerate([{}, *rungs]):
            settings = self.settings.merged(changes) if changes else self.settings
            attempt = run(settings, workdir / f"attempt-{number}")
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

    def write_inputs(self, atoms: Atoms, directory: Path) -> Path:
        """Write the code's input files for ``atoms`` (:attr:`input_files`) without running."""
        raise NotImplementedError(f"{self.code} runs in this process: it has no input files")

    @classmethod
    def read_inputs(cls, directory: Path) -> Atoms:
        """The structure the input files in ``directory`` describe, in the input's atom order."""
        raise NotImplementedError(f"{cls.code} runs in this process: it has no input files")

    @classmethod
    def classify_run(cls, directory: Path, returncode: int | None) -> tuple[str, str]:
        """(status, reason) of the run whose output files are in ``directory``."""
        raise NotImplementedError(f"{cls.code} runs in this process: it has no output files")

    def result(self, status: str, **fields: Any) -> LabelResult:
        """A :class:`LabelResult` carrying this oracle's code and settings (:meth:`label` adds
        the structure's identity)."""
        return LabelResult(
            status=status,
            code=self.code,
            code_version=self.version(),
            settings=self.settings.to_dict(),
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
        species = atoms.get_chemical_symbols()
        try:
            physics, physics_hash = self.physics_for(species), self.physics_hash_for(species)
        except (OSError, ValueError) as exc:  # a missing pseudopotential is an input error
            result = self.result("input_error", error=f"{type(exc).__name__}: {exc}")
            result.wall_time_s = time.perf_counter() - start
            return result
        try:
            self.prepare()
            start = time.perf_counter()
            result = self._compute(atoms.copy(), workdir)
        except Exception as exc:  # a failure is data, never lost
            log.warning("%s failed on %s: %s", self.code, atoms.get_chemical_formula(), exc)
            result = self.result("crashed", error="".join(traceback.format_exception(exc)))
        result.wall_time_s = time.perf_counter() - start
        result.physics, result.physics_hash = physics, physics_hash
        return result
