"""SevenNet (sevenn on PyPI, MIT) as an oracle: a universal potential whose weights ship in its
wheel, run as an external program the way pw.x is.

sevenn needs e3nn >= 0.5 while mace-torch pins e3nn 0.4.4, so it lives in an environment of its
own (``.venv-sevenn``, made by scripts/setup.sh from requirements-sevenn.lock). The oracle keeps
one long-lived worker process (calculators/oracles/sevennet_worker.py) per model and feeds it
structures over a pipe: the model is loaded once, not once per label.

Models: ``7net-0`` (SevenNet-0, 11Jul2024), ``7net-0_22may2024``, ``7net-l3i5`` and ``7net-mf-0``
(multi-fidelity: ``modal`` PBE or R2SCAN, its heads).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from ase import Atoms
from pydantic import model_validator

from calculators.oracles.base import LabelResult
from calculators.oracles.setting_types import PositiveFloat
from calculators.oracles.settings import OracleSettings, execution, physics
from calculators.oracles.universal import UniversalPotentialOracle

WORKER = Path(__file__).with_name("sevennet_worker.py")
#: The interpreter of sevenn's environment when ``python`` is null and the variable is unset.
DEFAULT_PYTHON = Path(__file__).resolve().parents[2] / ".venv-sevenn" / "bin" / "python"
PYTHON_VARIABLE = "AL_LOOP_SEVENN_PYTHON"
#: Heads of the multi-fidelity model (``modal``); the other models have one.
MF_HEADS = ("PBE", "R2SCAN")


class SevennetUnavailable(RuntimeError):
    """sevenn's environment is missing or its worker does not start."""


class SevennetSettings(OracleSettings):
    """Which SevenNet model and head label, and how its worker runs."""

    command_fields: ClassVar[frozenset[str]] = frozenset({"python"})

    model: Literal["7net-0", "7net-0_22may2024", "7net-l3i5", "7net-mf-0"] = physics(
        "7net-0", "the shipped model"
    )
    modal: Literal["PBE", "R2SCAN"] | None = physics(
        None, "the head of 7net-mf-0 (PBE or R2SCAN); null for the single-head models"
    )
    python: str | None = execution(
        None, f"sevenn's Python (null: ${PYTHON_VARIABLE}, else the repository's .venv-sevenn)"
    )
    device: Literal["cpu", "cuda"] = execution("cpu", "where the model runs")
    wall_time_s: PositiveFloat = execution(600.0, "a label taking longer is killed")

    @model_validator(mode="after")
    def _head_matches_model(self) -> SevennetSettings:
        if self.model == "7net-mf-0" and self.modal is None:
            raise ValueError(f"7net-mf-0 has heads {MF_HEADS}: set modal to one of them")
        if self.model != "7net-mf-0" and self.modal is not None:
            raise ValueError(f"{self.model} has one head: set modal to null")
        return self


class _Worker:
    """One running sevennet_worker.py: requests in on stdin, answers out on stdout."""

    def __init__(self, command: list[str]) -> None:
        # the worker's stderr, for error messages; closed with the worker
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=dict(os.environ, PYTHONWARNINGS="ignore"),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.info = self.read(timeout_s=300.0)
        if self.info is None or not self.info.get("ready"):
            raise SevennetUnavailable(f"sevennet worker did not start: {self.stderr_tail()}")

    def ask(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """The answer to ``request``, or None when the worker died or ran past ``timeout_s``
        (it is then stopped)."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self.read(timeout_s)

    def _pump(self) -> None:
        """Move the worker's stdout lines to :attr:`lines` (None at its end)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self, timeout_s: float) -> dict[str, Any] | None:
        """The next JSON line (other lines are skipped), or None when the worker ended or
        ran past ``timeout_s`` (it is then stopped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                self.stop()
                return None
            if line is None:
                return None
            if line.startswith("{"):
                return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stderr_tail(self, lines: int = 15) -> str:
        """The last lines the worker wrote to stderr."""
        if self.log.closed:
            return self._last_words
        self.log.seek(0)
        return "\n".join(self.log.read().splitlines()[-lines:])

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()
        if not self.log.closed:
            self._last_words = self.stderr_tail()
            self.log.close()


_WORKERS: dict[tuple[str, ...], _Worker] = {}
_LOCK = threading.Lock()


@atexit.register
def stop_workers() -> None:
    """Stop every worker this process started."""
    with _LOCK:
        for worker in _WORKERS.values():
            worker.stop()
        _WORKERS.clear()


class SevennetOracle(UniversalPotentialOracle):
    """SevenNet energies, forces and stress from a worker in sevenn's own environment."""

    code = "sevennet"
    Settings = SevennetSettings
    package = "sevenn"
    statuses: ClassVar[tuple[str, ...]] = ("ok", "killed", "crashed")
    settings: SevennetSettings

    def python(self) -> Path:
        chosen = self.settings.python or os.environ.get(PYTHON_VARIABLE) or DEFAULT_PYTHON
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise SevennetUnavailable(
                f"sevenn's Python {path} not found: run bash scripts/setup.sh (it makes "
                f".venv-sevenn), or set oracle.overrides.python or ${PYTHON_VARIABLE}"
            )
        return path

    def _describe(self) -> dict[str, Any]:
        if not hasattr(self, "_description"):
            command = [str(self.python()), str(WORKER), "--model", self.settings.model]
            done = subprocess.run(
                [*command, "--describe"], capture_output=True, text=True, timeout=300
            )
            if done.returncode != 0:
                raise SevennetUnavailable(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            self._description = json.loads(lines[-1])
        return self._description

    def weights_file(self) -> Path:
        return Path(self._describe()["weights_file"])

    def weights_sha256(self) -> str:
        return self._describe()["weights_sha256"]

    def package_version(self) -> str:
        return self._describe()["version"]

    def _worker(self) -> _Worker:
        s = self.settings
        command = [str(self.python()), str(WORKER), "--model", s.model, "--device", s.device]
        if s.modal:
            command += ["--modal", s.modal]
        key = tuple(command)
        with _LOCK:
            worker = _WORKERS.get(key)
            if worker is None or not worker.alive():
                worker = _WORKERS[key] = _Worker(command)
            return worker

    def prepare(self) -> None:
        """Start the worker (the model's load is not counted in a label's wall time)."""
        self._worker()

    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        request = {
            "numbers": atoms.numbers.tolist(),
            "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(),
            "pbc": atoms.pbc.tolist(),
        }
        worker = self._worker()
        with _LOCK:  # one request at a time per worker
            answer = worker.ask(request, self.settings.wall_time_s)
        if answer is None:
            reason = (
                f"sevennet worker stopped after {self.settings.wall_time_s:g} s or died: "
                f"{worker.stderr_tail()}"
            )
            return self.result("killed", error=reason)
        if "error" in answer:
            return self.result("crashed", error=answer["error"])
        return self.ok_result(answer, extra={"weights_sha256": self.weights_sha256()})
