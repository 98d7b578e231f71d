"""The EMT oracle (through quacc) against ASE's EMT, settings presets, hashing, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from pydantic import ValidationError

from calculators.oracles import (
    STATUSES,
    LabelResult,
    available_oracles,
    available_presets,
    make_oracle,
    merge_settings,
    oracle_class,
    resolve_settings,
)
from calculators.oracles.emt import EMTOracle
from calculators.oracles.registry import preset_settings
from calculators.oracles.settings import digest


def cunial(seed: int = 0) -> Atoms:
    """A 4-atom rattled fcc Cu/Ni/Al cell with a slightly sheared, compressed cell."""
    atoms = bulk("Cu", "fcc", a=3.55, cubic=True)
    atoms.symbols[[1, 3]] = "Ni"
    atoms.symbols[2] = "Al"
    shear = np.array([[0.0, 0.0, 0.0], [0.12, 0.0, 0.0], [0.0, -0.05, 0.0]])
    atoms.set_cell(atoms.cell[:] + shear, scale_atoms=True)
    atoms.rattle(0.06, seed=seed)
    return atoms


def ase_emt(atoms: Atoms, **settings: object) -> tuple[float, np.ndarray, np.ndarray]:
    reference = atoms.copy()
    reference.calc = EMT(**settings)
    return (reference.get_potential_energy(), reference.get_forces(), reference.get_stress())


# -- the EMT oracle -------------------------------------------------------------------------------


def test_emt_matches_ase_emt(tmp_path: Path) -> None:
    oracle = make_oracle("emt")
    atoms = cunial(seed=1)
    before = atoms.copy()
    result = oracle.label(atoms, tmp_path / "run")

    assert result.status == "ok", result.error
    assert result.error is None
    energy, forces, stress = ase_emt(atoms, **oracle.settings.to_dict())
    assert result.energy_eV == pytest.approx(energy, rel=1e-12, abs=1e-12)
    assert result.forces_eV_A.shape == (4, 3)
    np.testing.assert_allclose(result.forces_eV_A, forces, rtol=1e-10, atol=1e-12)
    assert result.stress_eV_A3.shape == (6,)
    np.testing.assert_allclose(result.stress_eV_A3, stress, rtol=1e-10, atol=1e-12)
    # a rattled sheared cell: the comparison is not between zeros
    assert np.abs(forces).max() > 1e-2 and np.abs(stress[3:]).max() > 1e-4

    # identity and provenance of the label
    assert result.code == "emt" == oracle.code
    assert result.code_version.startswith("ase-")
    assert result.settings == oracle.settings.to_dict()
    assert result.physics_hash == oracle.physics_hash_for(["Cu", "Ni", "Al"])
    assert result.physics == oracle.physics_for(["Cu"]) == {"asap_cutoff": False}
    assert result.wall_time_s > 0
    assert result.extra.get("quacc_version")
    # the input is not modified, and has no calculator attached
    assert atoms == before and atoms.calc is None
    np.testing.assert_array_equal(atoms.positions, before.positions)
    # the work happened in the given directory
    assert (tmp_path / "run").is_dir()


def test_emt_oracle_labels_several_structures_consistently(tmp_path: Path) -> None:
    oracle = make_oracle("emt")
    for seed in range(3):
        atoms = cunial(seed=10 + seed)
        atoms = atoms[[0, 1, 2]] if seed == 2 else atoms  # a 3-atom cell as well
        result = oracle.label(atoms, tmp_path / f"s{seed}")
        energy, forces, _ = ase_emt(atoms, **oracle.settings.to_dict())
        assert result.status == "ok"
        assert result.energy_eV == pytest.approx(energy, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(result.forces_eV_A, forces, rtol=1e-10, atol=1e-12)


def test_emt_setting_override_reaches_the_calculator(tmp_path: Path) -> None:
    """asap_cutoff=True changes EMT's cutoff: the oracle must follow the override."""
    atoms = cunial(seed=2)
    default = make_oracle("emt").label(atoms, tmp_path / "a")
    asap = make_oracle("emt", overrides={"asap_cutoff": True}).label(atoms, tmp_path / "b")
    energy, _, _ = ase_emt(atoms, asap_cutoff=True)
    assert asap.status == default.status == "ok"
    assert asap.energy_eV == pytest.approx(energy, rel=1e-12)
    assert asap.energy_eV != pytest.approx(default.energy_eV, rel=1e-6)
    assert asap.physics_hash != default.physics_hash


def test_unsupported_element_is_a_crashed_label_not_an_exception(tmp_path: Path) -> None:
    oracle = make_oracle("emt")
    assert "Fe" not in EMTOracle.supported_elements
    assert {"Cu", "Ni", "Al"} <= EMTOracle.supported_elements
    result = oracle.label(bulk("Fe", "bcc", a=2.87, cubic=True), tmp_path / "fe")

    assert result.status == "crashed"
    assert result.energy_eV is None and result.forces_eV_A is None and result.stress_eV_A3 is None
    assert result.error.startswith("Traceback (most recent call last)")
    assert "No EMT-potential for Fe" in result.error  # the original error, not just quacc's
    assert result.code == "emt" and result.physics_hash == oracle.physics_hash_for(["Fe"])
    assert result.wall_time_s > 0


def test_label_creates_missing_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "deep" / "er" / "dir"
    result = make_oracle("emt").label(cunial(), str(workdir))
    assert result.status == "ok" and workdir.is_dir()


# -- settings -------------------------------------------------------------------------------------


def test_physics_hash_is_stable_and_order_independent() -> None:
    a = digest({"code": "emt", "physics": {"asap_cutoff": False, "nested": {"x": 1, "y": [1, 2]}}})
    b = digest({"physics": {"nested": {"y": [1, 2], "x": 1}, "asap_cutoff": False}, "code": "emt"})
    assert a == b
    assert len(a) == 64 and int(a, 16) >= 0
    # a fresh oracle from the same preset gets the same hash (no process-dependent state)
    one, two = make_oracle("emt"), make_oracle("emt")
    assert one.physics_hash_for(["Cu"]) == two.physics_hash_for(["Cu"])
    # known value: the hash is part of stored label keys and must not drift silently
    assert one.physics_hash_for(["Cu"]) == digest(
        {"code": "emt", "physics": {"asap_cutoff": False}}
    )
    # EMT has no per-element settings: every subset of elements has the same identity
    assert one.identity_hashes(["Cu", "Ni", "Al"]) == [one.physics_hash_for(["Al"])]


def test_physics_hash_changes_with_physics_only() -> None:
    base = make_oracle("emt")
    changed = make_oracle("emt", overrides={"asap_cutoff": True})
    assert base.physics_hash_for(["Cu"]) != changed.physics_hash_for(["Cu"])
    assert digest({"x": [1, 2]}) != digest({"x": [2, 1]})
    with pytest.raises(ValidationError, match="extra_key"):  # an unknown setting is refused
        make_oracle("emt", overrides={"extra_key": 1})


def test_merge_settings_is_deep_and_none_removes() -> None:
    base = {"a": 1, "b": {"c": 2, "d": {"e": 3, "f": 4}}, "g": [1, 2], "h": "keep"}
    snapshot = {"a": 1, "b": {"c": 2, "d": {"e": 3, "f": 4}}, "g": [1, 2], "h": "keep"}
    merged = merge_settings(
        base,
        {"a": 10, "b": {"d": {"e": 30, "f": None}, "new": 5}, "g": [3], "h": None, "i": {"j": 1}},
    )
    assert merged == {"a": 10, "b": {"c": 2, "d": {"e": 30}, "new": 5}, "g": [3], "i": {"j": 1}}
    assert base == snapshot  # the base (a preset) is not modified
    # None on a missing key is harmless; a dict replaces a scalar and vice versa
    assert merge_settings({"a": 1}, {"zz": None}) == {"a": 1}
    assert merge_settings({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert merge_settings({"a": {"b": 2}}, {"a": 3}) == {"a": 3}
    assert merge_settings({}, {}) == {}


def test_resolve_settings_reads_the_preset_and_applies_overrides() -> None:
    assert "emt" in available_oracles()
    assert "default" in available_presets("emt")
    preset = resolve_settings("emt", "default")
    assert preset.to_dict() == {"asap_cutoff": False}
    # a null override removes the preset's key: the setting's default applies
    assert resolve_settings("emt", "default", {"asap_cutoff": None}).to_dict() == preset.to_dict()
    on = resolve_settings("emt", "default", {"asap_cutoff": True})
    assert on.to_dict() == {"asap_cutoff": True}


def test_resolve_settings_from_a_preset_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("asap_cutoff: true\n")
    assert resolve_settings("emt", str(path)).to_dict() == {"asap_cutoff": True}
    oracle = make_oracle("emt", str(path))
    assert oracle.settings.to_dict() == {"asap_cutoff": True}


def test_missing_preset_names_the_known_presets() -> None:
    with pytest.raises(FileNotFoundError) as info:
        resolve_settings("emt", "no-such-preset")
    message = str(info.value)
    assert "no-such-preset" in message
    assert "default" in message  # the shipped preset is listed
    for name in available_presets("emt"):
        assert name in message


def test_presets_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "emt").mkdir()
    (tmp_path / "emt" / "fast.yaml").write_text("asap_cutoff: true\n")
    monkeypatch.setenv("AL_LOOP_PRESETS", str(tmp_path))
    assert available_presets("emt") == ["fast"]
    assert resolve_settings("emt", "fast").to_dict() == {"asap_cutoff": True}
    with pytest.raises(FileNotFoundError, match="fast"):
        resolve_settings("emt", "default")


def test_unknown_code_names_the_known_codes() -> None:
    with pytest.raises(KeyError, match="emt"):
        oracle_class("castep")
    with pytest.raises(KeyError, match="castep"):
        make_oracle("castep")


# -- LabelResult ----------------------------------------------------------------------------------


def test_label_result_rejects_an_unknown_status() -> None:
    fields = {"code": "emt", "code_version": "x", "settings": {}, "physics_hash": "h"}
    with pytest.raises(ValueError, match="unknown label status 'done'") as info:
        LabelResult(status="done", **fields)
    assert "crashed" in str(info.value)  # the allowed statuses are listed
    for status in STATUSES:
        assert LabelResult(status=status, **fields).status == status
    assert "ok" in STATUSES and "crashed" in STATUSES


def test_oracle_result_carries_code_and_settings() -> None:
    oracle = make_oracle("emt")
    result = oracle.result("unconverged", error="SCF did not converge")
    assert (result.code, result.settings, result.status) == (
        "emt",
        {"asap_cutoff": False},
        "unconverged",
    )
    assert result.physics_hash is None  # label() adds the structure's identity
    with pytest.raises(ValueError):
        oracle.result("finished")


def test_every_shipped_preset_is_usable_and_sets_every_key() -> None:
    assert available_oracles() == ["chgnet", "emt", "espresso", "sevennet", "vasp"]
    for code in available_oracles():
        for name in available_presets(code):
            raw = preset_settings(code, name)
            settings = resolve_settings(code, name)  # validated: raises if not usable
            # a preset sets every key, so nothing comes from a default hidden in the code
            assert set(raw) == set(type(settings).model_fields), (code, name)


def test_launch_prefix_guards_the_wall_time_and_lets_open_mpi_run_as_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from calculators.oracles.base import launch_prefix

    assert launch_prefix(1800, "") == "timeout -k 10 1800"
    assert launch_prefix(60.7, "srun --cpu-bind=cores") == "timeout -k 10 60 srun --cpu-bind=cores"
    monkeypatch.setenv("SLURM_NTASKS", "32")  # expanded: neither ASE nor quacc uses a shell
    assert launch_prefix(60, "srun -n $SLURM_NTASKS") == "timeout -k 10 60 srun -n 32"
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert launch_prefix(60, "/usr/bin/mpirun -np 4") == (
        "timeout -k 10 60 env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
        "/usr/bin/mpirun -np 4"
    )
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert launch_prefix(60, "mpirun -np 4") == "timeout -k 10 60 mpirun -np 4"
