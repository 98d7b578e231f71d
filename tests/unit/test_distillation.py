"""The distillation's pieces that need no teacher: the sample's round trip, filter, split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from al_loop.config import CampaignConfig, load_campaign
from al_loop.distillation import (
    by_teacher_spread,
    crystal_cells,
    crystal_factors,
    frames_bytes,
    frames_read,
    grown,
    sample_key,
    split,
    spread_bin,
    teacher_frames,
    usable,
    weighted,
)


def frame(stop_reason: str = "", spread: float = 0.1):
    atoms = bulk("Cu", "fcc", a=3.6) * 2
    atoms.info.update(stop_reason=stop_reason, force_spread=spread, trajectory="000-npt")
    forces = np.arange(3 * len(atoms), dtype=float).reshape(-1, 3)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.5, forces=forces, stress=np.ones(6))
    return atoms


def test_the_stored_sample_reads_back_with_its_labels_and_reasons() -> None:
    frames = [frame(), frame("driver failed: x", float("inf")), frame(spread=0.5)]
    again = frames_read(frames_bytes(frames))
    assert [usable(f, 0.3) for f in again] == ["", "stopped trajectory", "teacher unsure"]
    assert again[0].info["force_spread"] == 0.1 and again[0].info["stop_reason"] == ""
    np.testing.assert_array_equal(again[0].get_forces(), frames[0].get_forces())
    assert again[0].get_potential_energy() == -1.5
    assert frames[0].info["stop_reason"] == ""  # the frames given are not changed


def test_crystal_frames_weigh_crystal_weight_in_the_fit() -> None:
    from al_loop.config import StudentConfig

    md, crystal = frame(), frame()
    crystal.info["trajectory"] = "crystal Ca:fcc x0.95"
    fit = weighted([md, crystal], StudentConfig(crystal_weight=4.0))
    assert [f.info.get("weight", 1.0) for f in fit] == [1.0, 4.0]
    assert "weight" not in crystal.info  # the sample's frames are left as they were
    assert fit[1].get_potential_energy() == -1.5  # the teacher's results go with the copy


def test_split_and_growth() -> None:
    frames = [frame() for _ in range(20)]
    fit, test = split(frames, 0.1, seed=0)
    assert len(test) == 2 and len(fit) == 18
    assert {id(f) for f in fit} | {id(f) for f in test} == {id(f) for f in frames}
    assert len(grown(bulk("Cu"), 32)) == 64 and len(grown(bulk("Cu") * 4, 32)) == 64


def test_errors_by_the_teachers_spread_name_the_worst_frame() -> None:
    from ase.calculators.emt import EMT

    frames = []
    for k, spread in enumerate([0.05, 0.05, 0.15, 0.25]):
        atoms = bulk("Cu", "fcc", a=3.6) * 2
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        forces = atoms.get_forces() + (0.5 if spread > 0.2 else 0.0)  # the teacher off there
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(), forces=forces, stress=atoms.get_stress()
        )
        atoms.info.update(force_spread=spread, trajectory=f"{k:03d}", P_GPa=1.0, T_K=300.0)
        frames.append(atoms)
    split_up = by_teacher_spread(EMT(), frames)
    assert list(split_up) == ["<0.1", "0.1-0.2", ">=0.2", "worst_frame"]
    assert [split_up[b]["n"] for b in ("<0.1", "0.1-0.2", ">=0.2")] == [2, 1, 1]
    assert split_up["<0.1"]["force_rmse_eV_A"] < 1e-12
    assert split_up[">=0.2"]["force_rmse_eV_A"] == pytest.approx(0.5)
    assert split_up["worst_frame"]["trajectory"] == "003"
    assert [spread_bin(x) for x in (0.0, 0.1, 0.19, 0.2, 3.0)] == [
        "<0.1",
        "0.1-0.2",
        "0.1-0.2",
        ">=0.2",
        ">=0.2",
    ]


def test_the_phase_candidates_join_the_sample_as_labelled_crystals(tmp_path: Path) -> None:
    """Each candidate at each of its volumes, ideal and rattled, with the teacher's (here EMT's)
    energy, forces and pressure; the sample's key names them."""
    (tmp_path / "c.yaml").write_text(
        "name: t\nsystem:\n  elements: [Cu, Ni]\n  pressures_GPa: [0, 20]\n"
        "student:\n  sample_crystal_volumes: 3\n"
    )
    config = load_campaign(tmp_path / "c.yaml")
    fcc, hcp = bulk("Cu", "fcc", a=3.6), bulk("Ni", "hcp", a=2.5, c=4.1)
    named = [("Cu:fcc", fcc, [0.8, 0.9, 1.0]), ("Ni:hcp", hcp, [0.7, 0.8, 0.9])]
    cells = crystal_cells(named, 0.05, 1)
    assert len(cells) == 2 * 3 * 2
    volumes = [c.get_volume() / fcc.get_volume() for c in cells[:6:2]]
    assert volumes == pytest.approx([0.8, 0.9, 1.0])
    assert np.allclose(cells[0].get_scaled_positions(), fcc.get_scaled_positions())
    assert len(cells[1]) == 8 and cells[1].get_volume() / 8 == pytest.approx(
        cells[0].get_volume(), rel=0.07
    )  # the distorted copy: grown, strained, rattled
    assert cells[7].info["trajectory"] == "crystal Ni:hcp x0.700"
    frames = teacher_frames(EMT(), cells)
    for cell, got in zip(cells, frames, strict=True):
        cell.calc = EMT()
        assert got.get_potential_energy() == pytest.approx(cell.get_potential_energy())
        assert got.get_forces() == pytest.approx(cell.get_forces())
        assert got.info["P_GPa"] == pytest.approx(-cell.get_stress()[:3].mean() / 0.006241509)
        assert usable(got, 0.3) == "no teacher spread"  # EMT is no committee: no spread
    assert got.info["T_K"] == 0.0 and got.info["stop_reason"] == ""
    assert np.abs(frames[0].get_forces()).max() < 1e-9 < np.abs(frames[1].get_forces()).max()
    bare = sample_key(["a"], config)
    assert sample_key(["a"], config, ["Cu:fcc:x"]) not in (bare, sample_key(["a"], config, ["y"]))


def test_the_crystals_span_the_campaigns_pressures_on_the_teachers_own_p_of_v() -> None:
    """The volume factors are those where the teacher's pressure is the window's ends (EMT
    copper: 0 and 20 GPa read back within the scan's interpolation), evenly spaced in volume;
    a window past what the scan reaches ends at the scan's smallest volume; the candidate's own
    cell is always in the range."""
    from ase.units import GPa

    from al_loop.distillation import SCAN_FACTORS, crystal_window_GPa

    fcc = bulk("Cu", "fcc", a=3.6)
    factors = crystal_factors(EMT(), fcc, (0.0, 20.0), 4)
    assert len(factors) == 4 and factors[0] > factors[-1]
    assert np.diff(factors) == pytest.approx([np.diff(factors)[0]] * 3)
    for factor, target in ((factors[0], 0.0), (factors[-1], 20.0)):
        cell = fcc.copy()
        cell.set_cell(fcc.cell * factor ** (1 / 3), scale_atoms=True)
        cell.calc = EMT()
        assert -cell.get_stress()[:3].mean() / GPa == pytest.approx(target, abs=1.5)
    assert 0.8 < factors[-1] < 0.95  # copper's bulk modulus: ~140 GPa
    assert crystal_factors(EMT(), fcc, (0.0, 1e6), 2)[-1] == pytest.approx(min(SCAN_FACTORS))
    assert crystal_factors(EMT(), fcc, (10.0, 20.0), 2)[0] == 1.0  # where relaxations start
    config = CampaignConfig.model_validate(
        {"name": "t", "system": {"elements": ["Cu"], "pressures_GPa": [10, 50]}}
    )
    assert crystal_window_GPa(config) == pytest.approx((-12.0, 62.0))  # phase grid: 0-50


def test_the_stable_branch_is_the_one_of_the_candidates_own_cell() -> None:
    """From the limit of tension to where P turns over, around the candidate's cell; a cell
    beyond the limit of tension goes down to it first; wild values far away are not reached."""
    from al_loop.distillation import stable_branch

    # large -> small volume: tension limit at 1, rising to 4, turning over, then wild
    scan = [-3.0, -5.0, 0.0, 10.0, 30.0, 20.0, -9e6, 5e6]
    assert stable_branch(scan, 2) == (1, 5)
    assert stable_branch(scan, 0) == (1, 5)  # beyond the limit of tension: down to it
    assert stable_branch(scan, 4) == (1, 5)
    assert stable_branch([0.0, 1.0, 2.0], 1) == (0, 3)


def test_the_report_splits_the_test_frames_by_structure_type() -> None:
    """MD frames are ``md``; a crystal frame is its prototype (or file) name, all volumes and
    elements together; each group has its own errors."""
    from al_loop.distillation import by_phase, phase_of

    frames = []
    for k, name in enumerate(
        ["000-npt-300K-0GPa", "crystal Cu:fcc x0.900", "crystal CuNi:B2 x1.000"]
    ):
        atoms = bulk("Cu", "fcc", a=3.6) * 2
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms,
            energy=atoms.get_potential_energy() + 0.01 * k * len(atoms),
            forces=atoms.get_forces(),
            stress=atoms.get_stress(),
        )
        atoms.info.update(trajectory=name, P_GPa=0.0)
        frames.append(atoms)
    assert [phase_of(f) for f in frames] == ["md", "fcc", "B2"]
    split_up = by_phase(EMT(), frames)
    assert list(split_up) == ["md", "B2", "fcc"]
    assert split_up["md"]["energy_mae_meV_atom"] == pytest.approx(0.0, abs=1e-9)
    assert split_up["fcc"]["energy_mae_meV_atom"] == pytest.approx(10.0)
    assert split_up["B2"]["energy_mae_meV_atom"] == pytest.approx(20.0)
