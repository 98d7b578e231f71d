"""ASE's EMT through quacc's EMT recipe: the cheap reference oracle for demos and tests.

It takes the same path as the DFT recipes (a quacc ``static_job`` with quacc's workflow engine
off), so what works for EMT works for the codes that come later.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import ase
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.emt import parameters as emt_parameters

from calculators.oracles.base import LabelResult, Oracle


class EMTOracle(Oracle):
    """Effective-medium theory (ASE); elements limited to EMT's parameter table."""

    code = "emt"
    quacc_module = "quacc.recipes.emt.core"  # a 4 s import, paid once per process
    supported_elements = frozenset(emt_parameters)

    @classmethod
    def settings_problem(cls, settings: dict[str, Any]) -> tuple[str, str] | None:
        allowed = sorted(EMT.default_parameters)
        for key in settings:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                return key, (
                    f"EMT has no setting {key!r}{suggestion}; "
                    f"its settings are: {', '.join(allowed)}"
                )
        return None

    def version(self) -> str:
        return f"ase-{ase.__version__}"

    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        from quacc import change_settings
        from quacc.recipes.emt.core import static_job

        changes = {"RESULTS_DIR": workdir, "CREATE_UNIQUE_DIR": False, "GZIP_FILES": False}
        with change_settings(changes):
            output = static_job(atoms, **self.settings)
        return self.ok_result(
            output["results"], extra={"quacc_version": output.get("quacc_version")}
        )
