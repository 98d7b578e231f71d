"""The MACE committee: one calculator against its members run one by one, and the spreads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import bulk

from calculators.models.committee import CommitteeCalculator, force_spread, mace_calculator
from calculators.models.interface import ModelCalculator
from calculators.models.validation import CHECKS, default_structures, validate_model

pytestmark = pytest.mark.integration


def alloy(repeat: int = 1):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.symbols[1::3] = "Ni"
    atoms.symbols[2::5] = "Al"
    atoms.rattle(0.05, seed=3)
    return atoms


def test_committee_equals_its_members_averaged(committee_models: list[Path]) -> None:
    atoms = alloy()
    committee = CommitteeCalculator(committee_models, device="cpu", dtype="float64")
    atoms.calc = committee
    energy, forces, stress = (
        atoms.get_potential_energy(),
        atoms.get_forces(),
        atoms.get_stress(),
    )
    singles = []
    for path in committee_models:
        calc = mace_calculator([path], "cpu", "float64")
        probe = atoms.copy()
        probe.calc = calc
        singles.append((probe.get_potential_energy(), probe.get_forces(), probe.get_stress()))
    e = np.array([s[0] for s in singles])
    f = np.array([s[1] for s in singles])
    s = np.array([s[2] for s in singles])
    assert energy == pytest.approx(e.mean(), abs=1e-8)
    np.testing.assert_allclose(forces, f.mean(axis=0), atol=1e-8)
    np.testing.assert_allclose(stress, s.mean(axis=0), atol=1e-8)
    r = committee.results
    assert r["force_spread"] == pytest.approx(force_spread(f), abs=1e-8)
    assert r["force_spread"] > 0  # members trained on different data disagree
    assert r["energy_spread"] == pytest.approx(e.std() / len(atoms), abs=1e-8)
    assert r["stress_spread"] == pytest.approx(s.std(axis=0).max() / units.GPa, abs=1e-6)


def test_a_batch_gives_what_one_structure_at_a_time_gives(committee_models: list[Path]) -> None:
    committee = CommitteeCalculator(committee_models, device="cpu", dtype="float64")
    cells = [alloy(), alloy(2), bulk("Ni", "fcc", a=3.4), bulk("Al", "fcc", a=4.1) * (1, 1, 2)]
    cells[2].rattle(0.03, seed=1)
    batched = committee.predict_many(cells, batch_size=3)  # two batches, one of a single cell
    assert len(batched) == len(cells)
    for atoms, got in zip(cells, batched, strict=True):
        one = committee.predict(atoms)
        assert got["forces"].shape == (len(atoms), 3)
        assert got["energy"] == pytest.approx(one["energy"], abs=1e-8)
        for key in ("forces", "stress", "forces_comm", "energies_comm"):
            np.testing.assert_allclose(got[key], one[key], atol=1e-8)
        for key in ("force_spread", "energy_spread", "stress_spread"):
            assert got[key] == pytest.approx(one[key], abs=1e-8)


def test_the_committee_passes_the_model_validator(committee_models: list[Path]) -> None:
    import torch

    committee = CommitteeCalculator(committee_models, device="cpu", dtype="float64")
    assert isinstance(committee, ModelCalculator)
    structures = default_structures(["Cu", "Ni", "Al"])  # Cu4, Ni4, Al4 and a Cu-Ni-Al cell
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 4-atom graphs: ~3 s in one thread, 30 s and more in two (loaded)
    try:
        report = validate_model(committee, structures, fd_atoms=2)
    finally:
        torch.set_num_threads(threads)
    print(report.summary())
    assert report.ok, report.summary()
    assert {c.name for c in report.checks} == set(CHECKS)
    assert len({c.structure for c in report.checks}) == len(structures) == 4


def test_identical_members_have_no_spread(committee_models: list[Path]) -> None:
    atoms = alloy()
    atoms.calc = CommitteeCalculator([committee_models[0]] * 3, device="cpu", dtype="float64")
    spread = atoms.calc.spread(atoms)
    assert spread == pytest.approx(
        {"force_spread": 0.0, "energy_spread": 0.0, "stress_spread": 0.0}, abs=1e-9
    )


def test_descriptor_length_does_not_depend_on_cell_size(committee_models: list[Path]) -> None:
    committee = CommitteeCalculator(committee_models, device="cpu")
    small, large = committee.descriptor(alloy(1)), committee.descriptor(alloy(2))
    assert small.shape == large.shape and small.ndim == 1
    assert np.isfinite(small).all()
    # a periodic repetition has the same environments, hence the same averaged descriptor
    np.testing.assert_allclose(
        committee.descriptor(bulk("Cu", "fcc", a=3.6, cubic=True)),
        committee.descriptor(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)),
        atol=1e-5,
    )


def test_a_committee_of_one_is_refused(committee_models: list[Path]) -> None:
    with pytest.raises(ValueError, match="at least 2 models"):
        CommitteeCalculator(committee_models[:1])


def test_force_spread_formula() -> None:
    forces = np.zeros((2, 3, 3))
    forces[0, 1] = [1.0, 0.0, 0.0]
    forces[1, 1] = [-1.0, 0.0, 0.0]  # atom 1: deviation 1 eV/Å from the mean for both models
    forces[0, 2] = [0.0, 0.2, 0.0]  # atom 2: 0.1 each way
    assert force_spread(forces) == pytest.approx(1.0)
    assert force_spread(np.ones((4, 5, 3))) == 0.0
