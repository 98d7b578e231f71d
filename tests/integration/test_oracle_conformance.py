"""The contract every oracle in the registry keeps; a new code (CP2K, say) passes it or fails.

Each code brings a :class:`Kit`: settings for a test structure, one change per setting (physics
or execution), and a replay of every status it can end in (its stored outputs classified, or,
for a code that runs in this process, a run). The tests check, per code:

- typed settings: every field marked physics or execution; shipped presets valid and complete;
  unknown keys, quoted numbers and physics-changing retry rungs refused;
- identity: a label's hash follows its physics (file contents included) and nothing else;
- inputs written and read back (codes that write input files);
- every status named, from stored outputs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from custodian.vasp.handlers import VaspErrorHandler
from pydantic import ValidationError

from calculators.oracles import Oracle, available_presets, oracle_class
from calculators.oracles.registry import ORACLES, preset_settings

pytestmark = pytest.mark.integration

STORED_VASP = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / "vasprun_pstress.xml"

#: A replay: given the oracle and a scratch folder, produce an outcome (status, reason).
Replay = Callable[[Oracle, Path], tuple[str, str]]


@dataclass
class Kit:
    """What a code brings to the conformance test."""

    elements: list[str]
    overrides: Callable[[Path], dict[str, Any]]
    physics_changes: Callable[[Path], list[dict[str, Any]]]
    execution_changes: Callable[[Path], list[dict[str, Any]]]
    replays: dict[str, Replay]
    #: Edit the file of ``element`` named by the physics (pseudopotential, POTCAR), if any.
    edit_file: Callable[[Path, str], None] | None = None

    def structure(self) -> Atoms:
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.set_chemical_symbols([self.elements[i % len(self.elements)] for i in range(4)])
        atoms.rattle(0.02, seed=3)
        return atoms


def _emt_label(symbol: str) -> Replay:
    def replay(oracle: Oracle, folder: Path) -> tuple[str, str]:
        result = oracle.label(bulk(symbol, "fcc", a=3.6), folder)
        return result.status, result.error or ""

    return replay


def _files(outputs: dict[str, str], code: int | None) -> Replay:
    """Write ``outputs`` (file name → text) into the folder, then classify it."""

    def replay(oracle: Oracle, folder: Path) -> tuple[str, str]:
        for name, text in outputs.items():
            (folder / name).write_text(text)
        return type(oracle).classify_run(folder, code)

    return replay


# -- Quantum ESPRESSO --------------------------------------------------------------------------

UPF = {"Ca": "Ca.pbe-spn-rrkjus.UPF", "Fe": "Fe.pbe-nd-rrkjus.UPF", "Ni": "Ni.pbe-nd-rrkjus.UPF"}


def _upf_dir(root: Path, name: str = "upf") -> Path:
    """UPF stand-ins: the identity reads their bytes only (the real files run in test_espresso)."""
    folder = root / name
    folder.mkdir(exist_ok=True)
    for element, filename in UPF.items():
        (folder / filename).write_text(f"<UPF> stand-in for {element} </UPF>\n")
    (folder / "Fe.other.UPF").write_text("<UPF> another Fe </UPF>\n")
    return folder


#: The output of one real pw.x run, stored by the ``real_pw_out`` fixture.
_PW_OUT: dict[str, str] = {}


def _pw_ok(oracle: Oracle, folder: Path) -> tuple[str, str]:
    (folder / "pw.out").write_text(_PW_OUT["text"])
    return type(oracle).classify_run(folder, 0)


def _pw_killed(oracle: Oracle, folder: Path) -> tuple[str, str]:
    text = _PW_OUT["text"]
    (folder / "pw.out").write_text(text[: text.index("JOB DONE")])
    return type(oracle).classify_run(folder, 137)


ESPRESSO = Kit(
    elements=["Fe", "Ni"],
    overrides=lambda root: {"pseudo_dir": str(_upf_dir(root))},
    physics_changes=lambda root: [
        {"pseudopotentials": {"Fe": "Fe.other.UPF"}},
        {"ecutwfc_Ry": 35},
        {"ecutrho_Ry": 280},
        {"kspacing_A": 0.3},
        {"smearing": "gaussian"},
        {"degauss_Ry": 0.01},
        {"spin_polarized": True},
        {"magmoms": {"Fe": 0.5}},
        {"conv_thr_Ry": 1e-8},
        {"input_data": {"system": {"nbnd": 30}}},
    ],
    execution_changes=lambda root: [
        {"pseudo_dir": str(_upf_dir(root, "same-content-elsewhere"))},
        {"mixing_beta": 0.3},
        {"mixing_mode": "local-TF"},
        {"diagonalization": "cg"},
        {"electron_maxstep": 50},
        {"parallel_cmd": "nice -n 1"},
        {"pw_args": "-nk 1"},
        {"wall_time_s": 60},
        {"retries": [{"mixing_beta": 0.1}]},
    ],
    replays={
        "ok": _pw_ok,
        "unconverged": _files({"pw.out": "     convergence NOT achieved after  3 iterations\n"}, 2),
        "input_error": _files({"pw.out": " Error in routine readpp (1):\n  file not found\n"}, 1),
        "crashed": _files({"pw.out": " Error in routine cdiaghg (21):\n  S matrix not pd\n"}, 1),
        "killed": _pw_killed,
    },
    edit_file=lambda root, element: (root / "upf" / UPF[element]).write_text("edited\n"),
)

# -- VASP --------------------------------------------------------------------------------------


def _pp_dir(root: Path, name: str = "pp") -> Path:
    """A POTCAR folder (the session's stand-ins, copied to ``root/stub-potcars`` by the test's
    fixture) with both potpaw_PBE.64/ and potpaw_PBE/, the same files, and one more Fe dataset
    of other content."""
    folder = root / name
    if not folder.exists():
        shutil.copytree(root / "stub-potcars", folder)
        shutil.copytree(folder / "potpaw_PBE.64", folder / "potpaw_PBE")
        other = folder / "potpaw_PBE.64" / "Fe"
        other.mkdir()
        text = (folder / "potpaw_PBE.64" / "Fe_pv" / "POTCAR").read_text()
        (other / "POTCAR").write_text(text.replace("Fe_pv", "Fe"))
    return folder


def _vasp_ok(oracle: Oracle, folder: Path) -> tuple[str, str]:
    shutil.copy(STORED_VASP, folder / "vasprun.xml")
    (folder / "INCAR").write_text("PSTRESS = 1.0\n")
    return type(oracle).classify_run(folder, 0)


def _vasp_unconverged(oracle: Oracle, folder: Path) -> tuple[str, str]:
    from helpers.vasp_standin import unconverged_vasprun

    (folder / "vasprun.xml").write_text(unconverged_vasprun())
    return type(oracle).classify_run(folder, 0)


VASP = Kit(
    elements=["Fe", "Ni"],
    overrides=lambda root: {"pp_path": str(_pp_dir(root))},
    physics_changes=lambda root: [
        {"potcars": {"Fe": "Fe"}},
        {"incar": {"ENCUT": 520}},
        {"kspacing_A": 0.3},
        {"spin_polarized": True},
        {"magmoms": {"Fe": 2.0}},
    ],
    execution_changes=lambda root: [
        {"pp_path": str(_pp_dir(root, "same-content-elsewhere"))},
        {"potcar_version": None},  # potpaw_PBE/ holds the same content
        {"potcar_functional": "pbe"},
        {"incar": {"ALGO": "All", "NCORE": 4, "NELM": 200}},
        {"vasp_cmd": "vasp_x"},
        {"vasp_gamma_cmd": "vasp_y"},
        {"parallel_cmd": "srun"},
        {"use_custodian": False},
        {"custodian_handlers": ["VaspErrorHandler"]},
        {"custodian_max_errors": 2},
        {"wall_time_s": 60},
        {"retries": [{"incar": {"ALGO": "All"}}]},
    ],
    replays={
        "ok": _vasp_ok,
        "unconverged": _vasp_unconverged,
        "input_error": _files({}, None),  # no INCAR: VASP never started
        "crashed": _files(
            {"INCAR": "ENCUT = 400\n", "vasp.out": f" {VaspErrorHandler.error_msgs['brmix'][0]}\n"},
            1,
        ),
        "killed": _files({"INCAR": "ENCUT = 400\n", "OUTCAR": " running on 4 cores\n"}, 137),
    },
    edit_file=lambda root, element: (
        root / "pp" / "potpaw_PBE.64" / f"{element}_pv" / "POTCAR"
    ).write_text("edited\n"),
)

# -- EMT ---------------------------------------------------------------------------------------

EMT = Kit(
    elements=["Cu", "Ni", "Al"],
    overrides=lambda root: {},
    physics_changes=lambda root: [{"asap_cutoff": True}],
    execution_changes=lambda root: [],
    replays={"ok": _emt_label("Cu"), "crashed": _emt_label("Fe")},  # EMT has no Fe
)

# -- universal potentials ------------------------------------------------------------------------


def _universal_label(symbol: str, changes: dict[str, Any] | None = None, repeat: int = 1) -> Replay:
    """Label one fcc cell of ``symbol`` (Og: an element no universal potential knows),
    repeated ``repeat`` times along each axis."""

    def replay(oracle: Oracle, folder: Path) -> tuple[str, str]:
        if changes:
            oracle = type(oracle)(oracle.settings.merged(changes))
        result = oracle.label(bulk(symbol, "fcc", a=3.6).repeat(repeat), folder)
        if result.status == "ok":  # a real result, in ASE's units and signs
            assert result.energy_eV is not None and result.forces_eV_A.shape == (1, 3)
            assert result.stress_eV_A3.shape == (6,)
            assert result.extra["weights_sha256"] == result.physics["weights_sha256"]
        return result.status, result.error or ""

    return replay


CHGNET = Kit(
    elements=["Ca", "Fe", "Ni"],
    overrides=lambda root: {},
    physics_changes=lambda root: [{"model": "r2scan"}, {"model": "0.2.0"}],
    execution_changes=lambda root: [{"device": "cuda"}],  # hashed only, never run here
    replays={"ok": _universal_label("Ni"), "crashed": _universal_label("Og")},
)


def _sevenn_python_elsewhere(root: Path) -> str:
    """The same environment's interpreter under another name: an execution setting only."""
    from calculators.oracles.sevennet import DEFAULT_PYTHON

    return str(DEFAULT_PYTHON.with_name("python3"))


SEVENNET = Kit(
    elements=["Ca", "Fe", "Ni"],
    overrides=lambda root: {},
    physics_changes=lambda root: [
        {"model": "7net-l3i5"},
        {"model": "7net-mf-0", "modal": "R2SCAN"},
    ],
    execution_changes=lambda root: [
        {"python": _sevenn_python_elsewhere(root)},
        {"device": "cuda"},
        {"wall_time_s": 60},
    ],
    replays={
        "ok": _universal_label("Ni"),
        "crashed": _universal_label("Og"),
        # past its wall time: 1,000 atoms take seconds against 0.05 s (a 1-atom cell answered
        # within a 1e-4 s wall time on a loaded machine: the answer came before the timeout
        # was noticed)
        "killed": _universal_label("Ni", {"wall_time_s": 0.05}, repeat=10),
    },
)

KITS = {"emt": EMT, "espresso": ESPRESSO, "vasp": VASP, "chgnet": CHGNET, "sevennet": SEVENNET}


@pytest.fixture(autouse=True)
def _stub_potcars_in_tmp(stub_potcars: Path, tmp_path: Path) -> None:
    """The kits build their file folders under the test's ``tmp_path``."""
    shutil.copytree(stub_potcars, tmp_path / "stub-potcars")


@pytest.fixture(scope="module")
def real_pw_out(fast_pseudos: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The output of one real pw.x run (one Ni atom, coarse k-points): the stored ok output."""
    from calculators.oracles import make_oracle

    overrides = {"pseudo_dir": str(fast_pseudos), "kspacing_A": 1.0}
    result = make_oracle("espresso", "fast", overrides).label(
        bulk("Ni", "fcc", a=3.52), tmp_path_factory.mktemp("pw")
    )
    assert result.status == "ok", result.error
    text = (Path(result.extra["pw_out"]) / "pw.out").read_text()
    _PW_OUT["text"] = text
    return text


def test_every_registered_code_has_a_kit() -> None:
    assert set(KITS) == set(ORACLES), "add a Kit for every code in the registry"


@pytest.mark.parametrize("code", sorted(ORACLES))
def test_settings_are_typed_and_every_field_is_physics_or_execution(
    code: str, tmp_path: Path
) -> None:
    cls, kit = oracle_class(code), KITS[code]
    Settings = cls.Settings
    roles = {name: Settings.role(name) for name in Settings.model_fields}  # raises if unmarked
    # the kit changes every setting once, under the role the setting has
    physics = {k for change in kit.physics_changes(tmp_path) for k in change}
    execution = {k for change in kit.execution_changes(tmp_path) for k in change}
    assert {k for k, r in roles.items() if r == "physics"} <= physics
    assert {k for k, r in roles.items() if r == "execution"} <= execution
    for preset in available_presets(code):
        raw = preset_settings(code, preset)
        assert set(raw) == set(Settings.model_fields), (code, preset)  # a preset sets all
        valid = Settings.model_validate(raw)
        with pytest.raises(ValidationError, match="not_a_setting"):
            Settings.model_validate({**raw, "not_a_setting": 1})
        for key, value in raw.items():  # values are checked: no "1h" for a number
            if isinstance(value, bool):
                with pytest.raises(ValidationError):
                    Settings.model_validate({**raw, key: "yes"})
            elif isinstance(value, int | float):
                with pytest.raises(ValidationError):
                    Settings.model_validate({**raw, key: "1h"})
        if "retries" in Settings.model_fields:  # a rung may not change physics
            rung = kit.physics_changes(tmp_path)[-1]
            with pytest.raises(ValidationError, match="execution settings only"):
                Settings.model_validate({**valid.to_dict(), "retries": [rung]})


@pytest.mark.parametrize("code", sorted(ORACLES))
def test_a_label_identity_follows_its_physics_and_nothing_else(code: str, tmp_path: Path) -> None:
    kit = KITS[code]
    preset = available_presets(code)[0]
    base = oracle_class(code)(preset_settings(code, preset, kit.overrides(tmp_path)))
    identity = base.physics_hash_for(kit.elements)
    for change in kit.execution_changes(tmp_path):
        other = base.settings.merged(change)
        assert oracle_class(code)(other).physics_hash_for(kit.elements) == identity, change
    for change in kit.physics_changes(tmp_path):
        other = base.settings.merged(change)
        assert oracle_class(code)(other).physics_hash_for(kit.elements) != identity, change
    if kit.edit_file is not None:  # a file's content, not its path, is physics
        alone = base.physics_hash_for(kit.elements[1:])
        kit.edit_file(tmp_path, kit.elements[0])
        fresh = oracle_class(code)(base.settings)
        assert fresh.physics_hash_for(kit.elements) != identity
        assert fresh.physics_hash_for(kit.elements[1:]) == alone  # other elements unchanged


@pytest.mark.parametrize("code", sorted(ORACLES))
def test_inputs_are_written_and_read_back(code: str, tmp_path: Path) -> None:
    kit = KITS[code]
    cls = oracle_class(code)
    oracle = cls(preset_settings(code, available_presets(code)[0], kit.overrides(tmp_path)))
    atoms = kit.structure()
    if not cls.input_files:  # runs in this process: says so
        with pytest.raises(NotImplementedError, match="no input files"):
            oracle.write_inputs(atoms, tmp_path / "in")
        return
    folder = oracle.write_inputs(atoms, tmp_path / "in")
    assert all((folder / name).is_file() for name in cls.input_files)
    back = cls.read_inputs(folder)
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(back.cell.array, atoms.cell.array, atol=1e-8)
    delta = back.get_scaled_positions(wrap=False) - atoms.get_scaled_positions(wrap=False)
    np.testing.assert_allclose(delta - np.round(delta), 0.0, atol=1e-8)


@pytest.mark.parametrize("code", sorted(ORACLES))
def test_every_status_is_named_from_stored_outputs(
    code: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kit = KITS[code]
    cls = oracle_class(code)
    assert set(kit.replays) == set(cls.statuses), "a replay for every status the code can end in"
    if code == "espresso":
        request.getfixturevalue("real_pw_out")
    oracle = cls(preset_settings(code, available_presets(code)[0], kit.overrides(tmp_path)))
    for status, replay in kit.replays.items():
        folder = tmp_path / status
        folder.mkdir()
        got, reason = replay(oracle, folder)
        assert got == status, (status, reason)
        assert status == "ok" or reason  # every failure says why
