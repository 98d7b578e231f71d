"""An oracle as an ASE calculator: relaxations with DFT itself (``phase.model: oracle``).

Every call is one labelled run of the oracle in a folder of its own under ``workdir``, named
after the structure. A *ledger* (optional) is asked first for a stored label of the same
structure and physics, and keeps every new result: a relaxation resumed after a crash repeats
no DFT run, and no run is lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator, all_changes

from calculators.oracles.base import LabelResult, Oracle
from database.documents import structure_id


class Ledger(Protocol):
    """Where an :class:`OracleCalculator` looks for and keeps its results."""

    def recall(self, atoms: Atoms) -> Atoms | None:
        """``atoms`` with a stored ``ok`` result of the oracle's physics, or None."""

    def keep(self, atoms: Atoms, result: LabelResult) -> None:
        """Store ``result`` (any status) of ``atoms``."""


class OracleCalculator(Calculator):
    """Energy, forces and stress of ``oracle``; a failed run raises ``CalculationFailed``."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, oracle: Oracle, workdir: Path, ledger: Ledger | None = None) -> None:
        super().__init__()
        self.oracle = oracle
        self.workdir = Path(workdir)
        self.ledger = ledger
        #: Runs of the oracle, and results the ledger already held.
        self.runs = 0
        self.recalled = 0

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Any = ("energy",),
        system_changes: Any = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        cell = self.atoms.copy()
        cell.calc = None
        cell.set_constraint()  # the run needs the cell only (FixSymmetry is the optimiser's)
        stored = self.ledger.recall(cell) if self.ledger is not None else None
        if stored is not None:
            self.recalled += 1
            self.results = {
                "energy": stored.get_potential_energy(),
                "free_energy": stored.get_potential_energy(),
                "forces": stored.get_forces(),
                "stress": stored.get_stress(),
            }
            return
        self.runs += 1
        result = self.run(cell)
        if self.ledger is not None:
            self.ledger.keep(cell, result)  # before anything else: a failure loses no run
        if result.status != "ok" or result.energy_eV is None:
            raise CalculationFailed(
                f"{self.oracle.code} {result.status}: {result.error or 'no energy'}"
            )
        self.results = {
            "energy": result.energy_eV,
            "free_energy": result.energy_eV,
            "forces": result.forces_eV_A,
            "stress": result.stress_eV_A3,
        }

    def run(self, cell: Atoms) -> LabelResult:
        """One run of the oracle on ``cell``, in a folder named after the structure."""
        return self.oracle.label(cell, self.workdir / structure_id(cell)[:16])
