"""The model validator: a correct model (ASE's EMT behind the model interface) passes, and each
kind of broken model fails the check that names its bug."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import voigt_6_to_full_3x3_stress

from calculators.models.interface import MODEL_PROPERTIES, ModelCalculator
from calculators.models.validation import (
    CHECKS,
    ModelValidationError,
    Tolerances,
    default_structures,
    numerical_stress,
    validate_model,
)

Tamper = Callable[[dict[str, Any], Atoms], None]


class EMTModel(ModelCalculator):
    """ASE's EMT as a model; ``tamper(results, atoms)`` breaks it after each calculation
    (``atoms`` is the caller's Atoms object)."""

    def __init__(self, tamper: Tamper | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emt = EMT()
        self.tamper = tamper

    def predict(self, atoms: Atoms) -> dict[str, Any]:
        self.emt.calculate(atoms, list(MODEL_PROPERTIES), all_changes)
        r = self.emt.results
        energy = float(r["energy"])
        return {
            "energy": energy,
            "free_energy": energy,
            "forces": np.array(r["forces"]),
            "stress": np.array(r["stress"]),
        }

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        if self.tamper is not None:
            self.tamper(self.results, atoms if atoms is not None else self.atoms)


def validate(tamper: Tamper | None = None, **kwargs: Any):
    kwargs.setdefault("elements", ["Cu"])
    return validate_model(lambda: EMTModel(tamper), **kwargs)


def test_a_correct_model_passes_every_check() -> None:
    report = validate(elements=["Cu", "Ni", "Al"])
    assert report.ok, report.summary()
    assert {c.name for c in report.checks} == set(CHECKS)
    assert {c.structure for c in report.checks} == {"0:Cu4", "1:Ni4", "2:Al4", "3:AlCu2Ni"}
    worst = report.worst()
    assert worst["forces_vs_fd"].value < 1e-5
    assert worst["stress_vs_fd"].value < 1e-7
    assert worst["supercell_energy"].value < 1e-12
    assert report.raise_on_failure() is report


def test_a_calculator_instance_and_given_structures_are_accepted() -> None:
    atoms = bulk("Cu", "fcc", a=3.5, cubic=True).repeat((1, 1, 2))
    atoms.rattle(0.05, seed=1)
    report = validate_model(EMTModel(), [atoms], supercell=(1, 2, 2), fd_atoms=3)
    assert report.ok, report.summary()
    assert "atoms [0, 4, 7]" in next(c for c in report.checks if c.name == "forces_vs_fd").detail


def scale_forces(factor: float) -> Tamper:
    def tamper(results: dict[str, Any], atoms: Atoms) -> None:
        results["forces"] = results["forces"] * factor

    return tamper


def scale_stress(factor: float) -> Tamper:
    def tamper(results: dict[str, Any], atoms: Atoms) -> None:
        results["stress"] = results["stress"] * factor

    return tamper


def swap_shear_stress(results: dict[str, Any], atoms: Atoms) -> None:
    results["stress"] = results["stress"][[0, 1, 2, 5, 4, 3]]  # xy and yz swapped


def double_shear_stress(results: dict[str, Any], atoms: Atoms) -> None:
    results["stress"] = results["stress"] * [1, 1, 1, 2, 2, 2]  # engineering-strain slip


def add_per_cell(results: dict[str, Any], atoms: Atoms) -> None:
    results["energy"] += 0.5  # a constant per cell: the energy is not extensive
    results["free_energy"] += 0.5


def wrap_input(results: dict[str, Any], atoms: Atoms) -> None:
    atoms.wrap()


def write_info(results: dict[str, Any], atoms: Atoms) -> None:
    atoms.info["energy"] = results["energy"]


def translate_input(results: dict[str, Any], atoms: Atoms) -> None:
    atoms.positions += atoms.cell[2]  # by a lattice vector: the same crystal, other positions


def flat_forces(results: dict[str, Any], atoms: Atoms) -> None:
    results["forces"] = results["forces"].ravel()


def stress_3x3(results: dict[str, Any], atoms: Atoms) -> None:
    results["stress"] = voigt_6_to_full_3x3_stress(results["stress"])


def energy_array(results: dict[str, Any], atoms: Atoms) -> None:
    results["energy"] = np.array([results["energy"]])


def integer_forces(results: dict[str, Any], atoms: Atoms) -> None:
    results["forces"] = np.round(results["forces"]).astype(int)


def nan_forces(results: dict[str, Any], atoms: Atoms) -> None:
    results["forces"][0, 0] = np.nan


def no_stress(results: dict[str, Any], atoms: Atoms) -> None:
    del results["stress"]


def noisy() -> Tamper:
    rng = np.random.default_rng(0)  # its state advances: each call differs

    def tamper(results: dict[str, Any], atoms: Atoms) -> None:
        results["forces"] = results["forces"] + rng.normal(0, 1e-6, results["forces"].shape)

    return tamper


BUGS: dict[str, tuple[Tamper, set[str]]] = {
    "forces x 1.1": (scale_forces(1.1), {"forces_vs_fd"}),
    "forces sign flipped": (scale_forces(-1.0), {"forces_vs_fd"}),
    "stress sign flipped": (scale_stress(-1.0), {"stress_vs_fd"}),
    "stress in GPa": (scale_stress(1 / units.GPa), {"stress_vs_fd", "stress_units"}),
    "stress in kbar": (scale_stress(10 / units.GPa), {"stress_vs_fd", "stress_units"}),
    "shear stress Voigt order": (swap_shear_stress, {"stress_vs_fd"}),
    "shear stress doubled": (double_shear_stress, {"stress_vs_fd"}),
    "energy not extensive": (add_per_cell, {"supercell_energy"}),
    "wraps its input": (wrap_input, {"inputs_unchanged"}),
    "writes the input's info": (write_info, {"inputs_unchanged"}),
    "translates its input": (translate_input, {"inputs_unchanged"}),
    "forces flattened": (flat_forces, {"shapes"}),
    "stress 3x3": (stress_3x3, {"shapes"}),
    "energy an array": (energy_array, {"shapes"}),
    "integer forces": (integer_forces, {"shapes"}),
    "NaN force": (nan_forces, {"finite"}),
    "no stress": (no_stress, {"runs"}),
    "not deterministic": (noisy(), {"deterministic", "supercell_forces"}),
}


@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_fails_the_check_that_names_it(bug: str) -> None:
    tamper, expected = BUGS[bug]
    report = validate(tamper)
    assert not report.ok
    assert report.failed_names == expected, report.summary()
    with pytest.raises(ModelValidationError) as raised:
        report.raise_on_failure()
    message = str(raised.value)
    for name in expected:
        assert name in message
    assert "tolerance" in message


def test_the_failure_message_gives_the_figures() -> None:
    report = validate(scale_forces(-1.0), elements=["Cu", "Ni"])
    with pytest.raises(ModelValidationError, match=r"failed 3 check\(s\)") as raised:
        report.raise_on_failure()
    message = str(raised.value)
    assert "0:Cu4: forces_vs_fd" in message and "1:Ni4: forces_vs_fd" in message
    assert "(tolerance 0.0001)" in message and "sign flipped?" in message
    (failure,) = [c for c in report.failures if c.structure == "0:Cu4"]
    assert failure.value > 0.1  # twice the forces, of some tenths of eV/Å


def test_wrong_stress_units_are_named() -> None:
    report = validate(scale_stress(1 / units.GPa))
    (units_check,) = [c for c in report.checks if c.name == "stress_units"]
    assert "in GPa, not eV/Å^3?" in units_check.detail
    report = validate(scale_stress(1e4))  # any huge stress
    (units_check,) = [c for c in report.checks if c.name == "stress_units"]
    assert units_check.value > 10 and "stress not in eV/Å^3?" in units_check.detail


def test_a_changed_attached_calculator_is_caught() -> None:
    (atoms,) = default_structures(["Cu"])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((4, 3)))

    def drop_labels(results: dict[str, Any], given: Atoms) -> None:
        given.calc = None

    assert validate(structures=[atoms]).ok
    report = validate(drop_labels, structures=[atoms])
    assert report.failed_names == {"inputs_unchanged"}
    assert "attached calculator" in report.failures[0].detail
    assert atoms.calc is not None and atoms.calc.results["energy"] == -1.0  # ours untouched


def test_the_validator_leaves_the_structures_alone() -> None:
    structures = default_structures(["Cu", "Al"], seed=4)
    before = [s.copy() for s in structures]
    validate(wrap_input, structures=structures)
    for s, b in zip(structures, before, strict=True):
        assert s == b and s.calc is None


def test_a_model_that_raises_fails_runs() -> None:
    class Broken(EMTModel):
        def calculate(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("no GPU")

    report = validate_model(Broken(), elements=["Cu"])
    assert report.failed_names == {"runs"}
    assert "RuntimeError: no GPU" in report.failures[0].detail


def test_default_structures_are_seeded_periodic_unwrapped_and_stressed() -> None:
    first, again, other = (default_structures(["Cu", "Ni"], seed=s) for s in (0, 0, 1))
    assert len(first) == 3 and [len(a) for a in first] == [4, 4, 4]
    assert [a.get_chemical_formula() for a in first] == ["Cu4", "Ni4", "Cu2Ni2"]
    assert all(a == b for a, b in zip(first, again, strict=True))
    assert not any(a == b for a, b in zip(first, other, strict=True))
    for atoms in first:
        assert atoms.pbc.all()
        assert (atoms.get_scaled_positions(wrap=False) < 0).any()  # some outside the cell
        atoms.calc = EMT()
        stress = atoms.get_stress()
        assert stress[:3].max() < -0.005  # compressed: clearly negative (ASE's sign)
        assert np.abs(stress[3:]).max() > 1e-4  # sheared: off-diagonal stress to check
    with pytest.raises(ValueError, match="structures or the elements"):
        validate_model(EMTModel())


def test_numerical_stress_has_ase_sign() -> None:
    compressed = bulk("Cu", "fcc", a=3.3, cubic=True)
    assert (numerical_stress(EMT(), compressed)[:3] < -0.01).all()
    stretched = bulk("Cu", "fcc", a=3.9, cubic=True)  # tension is positive
    assert (numerical_stress(EMT(), stretched)[:3] > 0.001).all()
    (sheared,) = default_structures(["Cu"])
    sheared.calc = EMT()
    np.testing.assert_allclose(numerical_stress(EMT(), sheared), sheared.get_stress(), atol=1e-8)


def round_to_float32(results: dict[str, Any], atoms: Atoms) -> None:
    """A single-precision model: total energies of some eV, rounded to float32."""
    energy = np.float32(results["energy"] - 4.0 * len(atoms))
    results["energy"] = results["free_energy"] = energy
    results["forces"] = results["forces"].astype(np.float32)
    results["stress"] = results["stress"].astype(np.float32)


def test_float32_models_need_the_float32_tolerances() -> None:
    report = validate(round_to_float32, elements=["Cu", "Ni"], tolerances=Tolerances.float32())
    assert report.ok, report.summary()
    assert validate(round_to_float32, elements=["Cu", "Ni"]).failed_names >= {"stress_vs_fd"}
