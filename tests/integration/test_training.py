"""MACE training through mace-torch's own trainer: fine-tuning, multi-head replay, from scratch,
failures, and models stored in (and reloaded from) the database."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from calculators.models.committee import mace_calculator
from calculators.models.mace_train import (
    TrainingFailed,
    command_line,
    train_mace,
)
from calculators.models.standin import (
    STANDIN_SETTINGS,
    emt_structures,
    replay_file,
)
from database import Store

pytestmark = pytest.mark.integration

QUICK = replace(STANDIN_SETTINGS, max_epochs=1)


def predict_energy(model: Path) -> float:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[0] = "Ni"
    atoms.calc = mace_calculator([model], "cpu", "float64")
    return float(atoms.get_potential_energy())


def test_fine_tuning_starts_from_the_foundation(standin_model: Path, tmp_path: Path) -> None:
    data = emt_structures(["Cu", "Ni"], 8, seed=7)
    # training that cannot move the weights, with the foundation's isolated-atom energies
    frozen = replace(QUICK, learning_rate=1e-12, e0s="foundation")
    model = train_mace(
        data[2:], data[:2], tmp_path, seed=3, settings=frozen, foundation=standin_model
    )
    assert model.path.is_file() and model.heads == ["Default"]
    assert "--foundation_model=" + str(standin_model) in model.args
    assert "--E0s=foundation" in model.args and "--multiheads_finetuning=False" in model.args
    # the weights and E0s are the foundation's: it predicts what the foundation predicts
    assert predict_energy(model.path) == pytest.approx(predict_energy(standin_model), abs=1e-6)


def test_estimated_e0s_take_up_another_energy_reference(
    standin_model: Path, tmp_path: Path
) -> None:
    """Labels whose energies are shifted by 0.4 eV/atom (another code's reference): with E0s
    estimated, a model that cannot train predicts 0.4 eV/atom more than on unshifted labels (the
    fit also absorbs the foundation's own errors, the same in both); with the foundation's E0s,
    what the foundation predicts. All the foundation's elements: mace 0.3.16 then overwrote the
    chosen E0s with the foundation's (calculators/models/mace_run.py)."""
    data = emt_structures(["Cu", "Ni", "Al"], 8, seed=9)
    shifted_data = [atoms.copy() for atoms in data]
    for atoms in shifted_data:
        atoms.info["REF_energy"] += 0.4 * len(atoms)
    frozen = replace(QUICK, learning_rate=1e-12)
    energy = {}
    for name, labels, e0s in (
        ("plain", data, "estimated"),
        ("shifted", shifted_data, "estimated"),
        ("foundation", shifted_data, "foundation"),
    ):
        model = train_mace(
            labels[2:], labels[:2], tmp_path / name, 1, replace(frozen, e0s=e0s), standin_model
        )
        assert f"--E0s={e0s}" in model.args
        energy[name] = predict_energy(model.path)
    n_atoms = 4  # predict_energy's cell
    assert (energy["shifted"] - energy["plain"]) / n_atoms == pytest.approx(0.4, abs=1e-3)
    assert energy["foundation"] == pytest.approx(predict_energy(standin_model), abs=1e-6)


def test_energy_forces_and_stress_weights_all_reach_the_loss(
    standin_model: Path, tmp_path: Path
) -> None:
    """mace's ``weighted`` loss drops the stress term silently: the loss must be ``stress``."""
    data = emt_structures(["Cu", "Ni"], 6, seed=5)
    settings = replace(QUICK, energy_weight=7.0, forces_weight=3.0, stress_weight=11.0)
    model = train_mace(data[2:], data[:2], tmp_path, 1, settings, foundation=standin_model)
    log = model.log_file.read_text()
    assert "WeightedEnergyForcesStressLoss(energy_weight=7.000, forces_weight=3.000, " in log
    assert "stress_weight=11.000)" in log


def test_a_second_training_in_the_same_folder_starts_clean(
    standin_model: Path, tmp_path: Path
) -> None:
    """mace would resume from the first training's checkpoint and return its model."""
    data = emt_structures(["Cu", "Ni"], 6, seed=4)
    longer = replace(QUICK, max_epochs=3)  # its last checkpoint outlives a shorter run's
    first = train_mace(data[2:], data[:2], tmp_path, 1, longer, foundation=standin_model)
    energy_first = predict_energy(first.path)
    moved = replace(QUICK, learning_rate=0.05, max_epochs=1)
    second = train_mace(data[2:], data[:2], tmp_path, 1, moved, foundation=standin_model)
    assert abs(predict_energy(second.path) - energy_first) > 1e-6


def test_relative_paths_are_taken_from_the_callers_folder(
    standin_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer runs inside its work folder: a relative foundation path must still work."""
    monkeypatch.chdir(tmp_path)
    relative = Path(os.path.relpath(standin_model, tmp_path))
    data = emt_structures(["Cu"], 4, seed=2)
    model = train_mace(
        data[1:], data[:1], Path("work"), seed=1, settings=QUICK, foundation=relative
    )
    assert model.path == (tmp_path / "work" / "model.model") and model.path.is_file()
    assert "--foundation_model=" + str(standin_model.resolve()) in model.args


def test_multi_head_fine_tuning_with_a_replay_set(standin_model: Path, tmp_path: Path) -> None:
    data = emt_structures(["Cu", "Ni", "Al"], 8, seed=8)
    settings = replace(QUICK, replay_samples=20)
    model = train_mace(
        data[2:],
        data[:2],
        tmp_path,
        seed=4,
        settings=settings,
        foundation=standin_model,
        replay_file=replay_file(standin_model),
    )
    assert set(model.heads) == {"pt_head", "Default"}
    assert np.isfinite(predict_energy(model.path))  # the calculator uses the Default head


def test_training_from_scratch(tmp_path: Path) -> None:
    data = emt_structures(["Cu", "Ni"], 8, seed=9)
    settings = replace(QUICK, num_channels=8, max_L=0, r_max_A=3.5)
    model = train_mace(data[2:], data[:2], tmp_path, seed=5, settings=settings)
    assert "--num_channels=8" in model.args and "--E0s=average" in model.args
    assert np.isfinite(predict_energy(model.path))


def test_a_failed_training_says_why(tmp_path: Path) -> None:
    data = emt_structures(["Cu"], 4, seed=1)
    bad = replace(QUICK, extra_args={"model": "NoSuchModel"})
    with pytest.raises(TrainingFailed, match="NoSuchModel") as err:
        train_mace(data[1:], data[:1], tmp_path, seed=1, settings=bad)
    assert str(tmp_path / "train.log") in str(err.value)


def test_switches_are_written_the_way_argparse_reads_them() -> None:
    assert command_line({"ema": True, "swa": False, "lr": 0.01}) == ["--ema", "--lr=0.01"]
    with pytest.raises(ValueError, match="not an option of mace_run_train"):
        command_line({"learning_rate": 0.01})


def test_models_are_stored_with_their_files(store: Store, standin_model: Path) -> None:
    data = standin_model.read_bytes()
    doc = {"campaign": "c", "iteration": 0, "member": 1, "seed": 7, "label_ids": ["a"]}
    first = store.add_model(doc, data)
    assert store.read_file(first) == data
    second = store.add_model({**doc, "seed": 8}, data[:100])  # retrained: replaces the member
    (stored,) = store.models("c", 0)
    assert stored["seed"] == 8 and stored["file_id"] == second
    assert store.read_file(second) == data[:100]
    assert store.fs.exists(second) and not store.fs.exists(first)


def test_emt_structures_refuse_elements_emt_does_not_know() -> None:
    with pytest.raises(ValueError, match="--surrogates"):
        emt_structures(["Ca"], 1)
