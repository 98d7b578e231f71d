"""ASE's EMT through quacc's EMT recipe: the cheap reference oracle for demos and tests.

It takes the same path as the DFT recipes (a quacc ``static_job`` with quacc's workflow engine
off), so what works for EMT works for the other codes. It runs in this process: no input
files, no output files; a failure is an exception, stored as ``crashed``.
"""

from __future__ import annotations

from pathlib import Path

import ase
from ase import Atoms
from ase.calculators.emt import parameters as emt_parameters

from calculators.oracles.base import LabelResult, Oracle
from calculators.oracles.setting_types import Bool
from calculators.oracles.settings import OracleSettings, physics


class EMTSettings(OracleSettings):
    """ase.calculators.emt.EMT's keyword arguments."""

    asap_cutoff: Bool = physics(False, "ASAP's cut-off convention instead of ASE's")


class EMTOracle(Oracle):
    """Effective-medium theory (ASE); elements limited to EMT's parameter table."""

    code = "emt"
    Settings = EMTSettings
    quacc_module = "quacc.recipes.emt.core"  # a 4 s import, paid once per process
    supported_elements = frozenset(emt_parameters)
    statuses = ("ok", "crashed")

    def version(self) -> str:
        return f"ase-{ase.__version__}"

    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        from quacc import change_settings
        from quacc.recipes.emt.core import static_job

        changes = {"RESULTS_DIR": workdir, "CREATE_UNIQUE_DIR": False, "GZIP_FILES": False}
        with change_settings(changes):
            output = static_job(atoms, **self.settings.to_dict())
        return self.ok_result(
            output["results"], extra={"quacc_version": output.get("quacc_version")}
        )
