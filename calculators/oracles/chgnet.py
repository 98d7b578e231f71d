"""CHGNet (chgnet on PyPI, BSD) as an oracle: a universal potential whose weights ship in its
wheel, run in this process.

Models: ``0.3.0`` and ``0.2.0`` (PBE/PBE+U, Materials Project trajectories) and ``r2scan``
(transfer-learned to r2SCAN). All are non-magnetic in the sense that matters here: the
predicted magnetic moments do not enter the energy of a given cell.
"""

from __future__ import annotations

import contextlib
import io
import threading
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

from ase import Atoms

from calculators.oracles.base import LabelResult
from calculators.oracles.settings import OracleSettings, execution, physics
from calculators.oracles.universal import UniversalPotentialOracle

#: The weights file of each model inside the chgnet package (chgnet.model.model.CHGNet.load).
CHGNET_FILES = {
    "0.3.0": "0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "0.2.0": "0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
    "r2scan": "r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}

_LOADED: dict[str, Any] = {}  # model name -> CHGNet, loaded once per process
_LOCK = threading.Lock()


class ChgnetSettings(OracleSettings):
    """Which CHGNet model labels, and where it runs."""

    model: Literal["0.3.0", "0.2.0", "r2scan"] = physics(
        "0.3.0", "the shipped model: 0.3.0, 0.2.0 (PBE) or r2scan"
    )
    device: Literal["cpu", "cuda"] = execution("cpu", "where the model runs")


class ChgnetOracle(UniversalPotentialOracle):
    """CHGNet energies, forces and stress (eV, eV/Å, eV/Å³ in ASE's sign convention)."""

    code = "chgnet"
    Settings = ChgnetSettings
    package = "chgnet"
    settings: ChgnetSettings

    def weights_file(self) -> Path:
        import chgnet

        return Path(chgnet.__file__).parent / "pretrained" / CHGNET_FILES[self.settings.model]

    def package_version(self) -> str:
        return package_version("chgnet")

    def prepare(self) -> None:
        """Load the model once per process (not counted in a label's wall time)."""
        self._model()

    def _model(self) -> Any:
        name = self.settings.model
        with _LOCK:
            if name not in _LOADED:
                from chgnet.model import CHGNet

                with contextlib.redirect_stdout(io.StringIO()):  # it says where it runs
                    _LOADED[name] = CHGNet.load(model_name=name, use_device="cpu", verbose=False)
            return _LOADED[name]

    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        from chgnet.model.dynamics import CHGNetCalculator

        if getattr(self, "_calculator", None) is None:  # it prints a line when made: once
            with contextlib.redirect_stdout(io.StringIO()):
                self._calculator = CHGNetCalculator(
                    model=self._model(), use_device=self.settings.device
                )
        atoms.calc = self._calculator
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        return self.ok_result(results, extra={"weights_sha256": self.weights_sha256()})
