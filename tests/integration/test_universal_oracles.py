"""The universal potentials as oracles give ASE's units and signs: forces are minus the energy's
gradient, stress the strain derivative (compression gives a positive pressure), for CHGNet in
process and SevenNet through its worker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from al_loop.evaluation import pressure_GPa
from calculators.oracles import make_oracle
from calculators.oracles.ase_calculator import OracleCalculator

pytestmark = pytest.mark.integration


@pytest.fixture(params=[("chgnet", "pbe"), ("sevennet", "pbe")], ids=["chgnet", "sevennet"])
def calc(request: pytest.FixtureRequest, tmp_path: Path) -> OracleCalculator:
    return OracleCalculator(make_oracle(*request.param), tmp_path)


def _energy(atoms: Atoms, calc: OracleCalculator) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy()


def test_forces_and_stress_are_the_energys_derivatives(calc: OracleCalculator) -> None:
    atoms = bulk("Ni", "fcc", a=3.50, cubic=True)
    atoms.symbols[1] = "Fe"
    atoms.rattle(0.05, seed=1)
    atoms.calc = calc
    forces, stress = atoms.get_forces(), atoms.get_stress(voigt=False)
    h = 1e-3
    for atom, axis in ((0, 0), (1, 2)):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[atom, axis] += h
        minus.positions[atom, axis] -= h
        numeric = -(_energy(plus, calc) - _energy(minus, calc)) / (2 * h)
        assert forces[atom, axis] == pytest.approx(numeric, abs=5e-3)
    for i, j in ((0, 0), (1, 2)):
        strains = []
        for sign in (1, -1):
            strained = atoms.copy()
            eps = np.eye(3)
            eps[i, j] += sign * h / 2
            eps[j, i] += sign * h / 2
            strained.set_cell(atoms.cell.array @ eps, scale_atoms=True)
            strains.append(_energy(strained, calc))
        numeric = (strains[0] - strains[1]) / (2 * h) / atoms.get_volume()
        assert stress[i, j] == pytest.approx(numeric, abs=2e-4)  # eV/Å³ (0.03 GPa)


def test_compression_gives_a_rising_positive_pressure(calc: OracleCalculator) -> None:
    pressures = []
    for a in (3.52, 3.40, 3.30):
        atoms = bulk("Ni", "fcc", a=a)
        atoms.calc = calc
        pressures.append(pressure_GPa(atoms.get_stress()))
    assert abs(pressures[0]) < 10 and 20 < pressures[1] < pressures[2]
