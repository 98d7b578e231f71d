"""The one interface of al-loop's machine-learned models: an ASE calculator with a fixed contract.

Every model (the MACE committee, the future student) is a :class:`ModelCalculator`, and every
one passes :func:`calculators.models.validation.validate_model`, which checks this contract.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

#: The properties every model computes, in ASE units (see :class:`ModelCalculator`).
MODEL_PROPERTIES = ("energy", "free_energy", "forces", "stress")

#: Voigt order of ``results["stress"]`` (ASE's): xx yy zz yz xz xy, as (row, column) pairs.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


class ModelCalculator(Calculator):
    """An ASE calculator for a machine-learned interatomic potential.

    The contract, for any periodic cell (the validator checks each point):

    - ``results["energy"]`` and ``["free_energy"]``: the total energy, a float, eV; extensive
      (a supercell has the same energy per atom);
    - ``results["forces"]``: float array (n_atoms, 3), eV/Å, minus the gradient of the energy;
    - ``results["stress"]``: float array (6,), eV/Å^3, Voigt order xx yy zz yz xz xy, ASE's sign:
      ``(1/V) dE/d(strain)``, so tension is positive and a compressed cell's stress negative;
    - the :class:`~ase.Atoms` given to :meth:`calculate` is never modified (positions, cell,
      numbers, pbc, info, arrays, constraints and its own attached calculator);
    - the same atoms give the same results (deterministic).
    """

    implemented_properties = list(MODEL_PROPERTIES)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """ASE's entry point: ``self.atoms`` becomes a copy of ``atoms``, and ``self.results``
        what :meth:`predict` returns for it (every property, whatever was asked)."""
        super().calculate(atoms, properties, system_changes)
        self.results = self.predict(self.atoms)

    @abstractmethod
    def predict(self, atoms: Atoms) -> dict[str, Any]:
        """Every one of :data:`MODEL_PROPERTIES` (and any extra result) for ``atoms``, a copy
        the model may modify."""
