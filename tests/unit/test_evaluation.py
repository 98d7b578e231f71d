"""Energy, force and pressure errors, per pressure bin, on a known answer; held-out slices."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from al_loop.committee import FIXED, held_out_slices
from al_loop.evaluation import errors, pressure_bin, pressure_GPa, summary
from al_loop.stages.explore import converged_share

SHIFT_EV_ATOM, SHIFT_GPA = 0.010, 1.5


class ShiftedEMT(Calculator):
    """EMT with every energy raised by 10 meV/atom and every pressure by 1.5 GPa."""

    implemented_properties = ("energy", "forces", "stress")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        emt = EMT()
        emt.calculate(self.atoms, ["energy", "forces", "stress"], all_changes)
        stress = emt.results["stress"].copy()
        stress[:3] -= SHIFT_GPA * units.GPa  # pressure is -trace/3: raised by SHIFT_GPA
        self.results = {
            "energy": emt.results["energy"] + SHIFT_EV_ATOM * len(self.atoms),
            "forces": emt.results["forces"],
            "stress": stress,
        }


def labelled(scale: float, seed: int, with_stress: bool = True) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[:2] = "NiAl"
    atoms.set_cell(atoms.cell * scale, scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if with_stress:
        results["stress"] = atoms.get_stress()
    out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    out.calc = SinglePointCalculator(out, **results)
    return out


def test_errors_are_the_known_shifts_overall_and_per_pressure_bin() -> None:
    structures = [labelled(1.03, 0), labelled(1.03, 1), labelled(0.95, 2), labelled(0.95, 3, False)]
    pressures = [pressure_GPa(a.calc.results["stress"]) for a in structures[:3]]
    assert pressures[0] < 10 and 25 < pressures[2] < 50  # the cells are in two bins
    result = errors(ShiftedEMT(), structures, pressure_bins_GPa=[0, 10, 25, 50])
    assert result["n"] == 4 and result["n_pressures"] == 3
    assert result["energy_rmse_meV_atom"] == pytest.approx(1000 * SHIFT_EV_ATOM)
    assert result["energy_mae_meV_atom"] == pytest.approx(1000 * SHIFT_EV_ATOM)
    assert result["force_rmse_eV_A"] == pytest.approx(0, abs=1e-12)
    assert result["pressure_rmse_GPa"] == pytest.approx(SHIFT_GPA)
    bins = result["by_pressure"]
    assert list(bins) == ["0-10", "25-50", "no stress"]
    assert [bins[b]["n"] for b in bins] == [2, 1, 1]
    assert bins["25-50"]["pressure_mae_GPa"] == pytest.approx(SHIFT_GPA)
    assert bins["no stress"]["pressure_rmse_GPa"] is None
    assert bins["no stress"]["energy_rmse_meV_atom"] == pytest.approx(1000 * SHIFT_EV_ATOM)
    assert len(result["pressure_reference_GPa"]) == 3
    assert "forces_reference" not in summary(result)


def test_a_calculator_that_agrees_has_no_error() -> None:
    result = errors(EMT(), [labelled(0.95, 4), labelled(1.02, 5)])
    for key in ("energy_rmse_meV_atom", "force_rmse_eV_A", "pressure_rmse_GPa"):
        assert result[key] == pytest.approx(0, abs=1e-9)


def test_pressure_bins_name_the_interval_and_open_the_last() -> None:
    edges = [0, 10, 50]
    assert [pressure_bin(p, edges) for p in (-3, 0, 9.9, 10, 49, 50, 480)] == [
        "0-10", "0-10", "0-10", "10-50", "10-50", ">50", ">50",
    ]  # fmt: skip


def test_held_out_slices_keep_the_fixed_set_and_add_new_slices() -> None:
    def at(iteration: int | None) -> Atoms:
        atoms = Atoms("Cu")
        atoms.info["first_iteration"] = iteration
        return atoms

    held = [at(0), at(3), at(1), at(None), at(2), at(3)]
    slices = held_out_slices(held, fixed_after=1)
    assert list(slices) == [FIXED, "iteration 2", "iteration 3"]
    assert [a.info["first_iteration"] for a in slices[FIXED]] == [0, 1, None]
    assert len(slices["iteration 3"]) == 2
    assert list(held_out_slices([], 1)) == [FIXED]


def test_convergence_can_require_a_small_energy_spread() -> None:
    classes = np.array(["accurate", "accurate", "accurate", "candidate"])
    table = {"energy_spread": np.array([0.001, 0.004, np.nan, 0.0])}  # eV/atom
    assert converged_share(classes, table, None) == 0.75
    assert converged_share(classes, table, 2.0) == 0.25  # 2 meV/atom: only the first
    assert converged_share(classes[:0], {"energy_spread": np.array([])}, 2.0) == 0.0
