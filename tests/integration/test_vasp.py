"""VASP through quacc's calculator and runner, with custodian, on a stand-in binary (VASP itself
cannot exist here): the inputs are written by the real quacc/ASE path and read back with
pymatgen, and every failure class goes through the real runner, custodian and the ladder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms, units
from ase.build import bulk
from custodian.vasp.handlers import VaspErrorHandler
from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

from calculators.oracles.registry import make_oracle, resolve_settings
from calculators.oracles.sampling import kpoints
from calculators.oracles.vasp import VaspOracle
from calculators.oracles.vasp_output import resort_order

pytestmark = [
    pytest.mark.integration,
    # the stand-in POTCARs are, rightly, unknown to pymatgen's database of POTCAR hashes
    pytest.mark.filterwarnings("ignore::pymatgen.io.vasp.inputs.UnknownPotcarWarning"),
]


def ca_fe_ni() -> Atoms:
    """Five atoms in an input order VASP will not keep (it groups species), chosen so that
    ASE's sort and resort lists differ: reading the wrong column would fail."""
    return Atoms(
        "FeCaNiCaFe",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.3, 0.3, 0.3]],
        cell=[3.4, 3.5, 3.6],
        pbc=True,
    )


def standin_oracle(pp_path: Path, command: str, **overrides: object) -> VaspOracle:
    settings = {
        "pp_path": str(pp_path),
        "potcars": {"C": "C", "Fe": "Fe_pv"},
        "vasp_cmd": command,
        "vasp_gamma_cmd": command,
        "use_custodian": False,
        "wall_time_s": 60,
        **overrides,
    }
    made = make_oracle("vasp", "fast", settings)
    assert isinstance(made, VaspOracle)
    return made


def test_production_inputs_of_a_ca_fe_ni_cell(stub_potcars: Path, tmp_path: Path) -> None:
    atoms = ca_fe_ni()
    settings = resolve_settings("vasp", "production", {"pp_path": str(stub_potcars)})
    folder = VaspOracle(settings).write_inputs(atoms, tmp_path)

    incar = Incar.from_file(folder / "INCAR")
    expected = {"ENCUT": 600, "PREC": "Accurate", "ISMEAR": 1, "SIGMA": 0.1, "EDIFF": 1e-6}
    assert {key: incar[key] for key in expected} == pytest.approx(expected)
    assert (incar["NSW"], incar["IBRION"], incar["ISIF"], incar["ISPIN"]) == (0, -1, 2, 2)
    assert incar["LASPH"] is True and incar["LWAVE"] is False and incar["ISYM"] == 0

    poscar = Poscar.from_file(folder / "POSCAR")
    assert poscar.site_symbols == ["Fe", "Ca", "Ni"] and poscar.natoms == [2, 2, 1]
    moments = settings.magmoms
    assert incar["MAGMOM"] == [moments[str(site.specie)] for site in poscar.structure]
    order = resort_order(folder / "ase-sort.dat", len(atoms))  # what read_results applies
    assert list(order) != [int(r.split()[0]) for r in (folder / "ase-sort.dat").open()]
    np.testing.assert_allclose(poscar.structure.cart_coords[order], atoms.positions, atol=1e-8)
    assert [str(poscar.structure[i].specie) for i in order] == atoms.get_chemical_symbols()
    np.testing.assert_allclose(poscar.structure.lattice.matrix, atoms.cell.array)

    kpts = Kpoints.from_file(folder / "KPOINTS")
    assert kpts.style == Kpoints.supported_modes.Gamma
    assert tuple(kpts.kpts[0]) == kpoints(atoms, 0.2) == (10, 9, 9)

    assert (folder / "POTCAR.spec").read_text().split() == ["Fe_pv", "Ca_sv", "Ni_pv"]
    assert (folder / "POTCAR").read_text().count("End of Dataset") == 3


def test_campaign_overrides_reach_the_incar(stub_potcars: Path, tmp_path: Path) -> None:
    base = resolve_settings("vasp", "fast", {"pp_path": str(stub_potcars)})
    changed = resolve_settings(
        "vasp", "fast", {"pp_path": str(stub_potcars), "incar": {"ENCUT": 520, "LREAL": None}}
    )
    folder = VaspOracle(changed).write_inputs(bulk("Fe", "bcc", a=2.8), tmp_path)
    incar = Incar.from_file(folder / "INCAR")
    assert incar["ENCUT"] == 520 and "LREAL" not in incar and incar["PREC"] == "Normal"
    assert incar["ISPIN"] == 1 and "MAGMOM" not in incar  # fast: no spin, no moments
    assert VaspOracle(base).physics_hash_for(["Fe"]) != VaspOracle(changed).physics_hash_for(["Fe"])
    # a setting of another element is not part of an Fe structure's identity
    other = resolve_settings("vasp", "fast", {"pp_path": str(stub_potcars), "magmoms": {"Ni": 9.0}})
    assert VaspOracle(other).physics_hash_for(["Fe"]) == VaspOracle(base).physics_hash_for(["Fe"])
    assert VaspOracle(other).physics_hash_for(["Ni"]) != VaspOracle(base).physics_hash_for(["Ni"])


def diamond() -> Atoms:
    """The cell of the stored VASP run (ASE's vasprun_pstress.xml): diamond C, a = 3.57 Å."""
    return bulk("C", "diamond", a=3.57)


def test_a_finished_run_becomes_an_ok_label(
    stub_potcars: Path, tmp_path: Path, vasp_standin: str
) -> None:
    oracle = standin_oracle(stub_potcars, f"{vasp_standin} finished")
    result = oracle.label(diamond(), tmp_path)
    assert result.status == "ok", result.error
    # the stored run's numbers (free energy less PSTRESS·V: checked against pymatgen in
    # tests/unit/test_vasp_output.py)
    assert result.energy_eV == pytest.approx(-20.246959, abs=1e-5)
    assert result.extra["energy_sigma0_eV"] == pytest.approx(-20.247201, abs=1e-5)
    assert -result.stress_eV_A3[:3].mean() / units.GPa == pytest.approx(-16.59956, abs=1e-4)
    assert result.forces_eV_A.shape == (2, 3)
    assert result.code_version.startswith("VASP 6.3.0 (quacc ")
    assert result.pseudopotentials == {"C": "C"} and result.kpoints == [7, 7, 7]
    assert [t["title"] for t in result.extra["potcar_titles"]] == ["PAW_PBE C 08Apr2002"]
    folder = Path(result.extra["vasp_dir"])
    assert (folder / "POTCAR.spec").read_text().split() == ["C"]
    assert Incar.from_file(folder / "INCAR")["ENCUT"] == 400


@pytest.mark.parametrize("change", ["cell", "positions"])
def test_output_that_does_not_match_the_input_is_refused(
    change: str, stub_potcars: Path, tmp_path: Path, vasp_standin: str
) -> None:
    """The stored run is diamond at a = 3.57 Å: a label of another structure must not take its
    numbers (a stale vasprun.xml, a mixed-up folder)."""
    atoms = bulk("C", "diamond", a=3.50) if change == "cell" else diamond()
    if change == "positions":
        atoms.positions[1] += [0.05, 0.0, 0.0]
    result = standin_oracle(stub_potcars, f"{vasp_standin} finished").label(atoms, tmp_path)
    assert result.status == "crashed", result.error
    assert f"the {change} in vasprun.xml differ" in result.error


@pytest.mark.parametrize("custodian", [False, True])
def test_a_missing_potcar_is_an_input_error(
    custodian: bool, stub_potcars: Path, tmp_path: Path, vasp_standin: str
) -> None:
    oracle = standin_oracle(
        stub_potcars,
        f"{vasp_standin} silent",
        potcars={"Ni": "Ni_sv_GW"},
        use_custodian=custodian,
    )
    result = oracle.label(bulk("Ni", "fcc", a=3.5), tmp_path)
    assert result.status == "input_error", result.error
    assert "potcars.Ni" in result.error and "Ni_sv_GW/POTCAR not found" in result.error
    assert result.retries == [] and not any(tmp_path.iterdir())  # found before VASP starts


def test_an_unconverged_scf_climbs_the_ladder_and_never_becomes_ok(
    stub_potcars: Path, tmp_path: Path, vasp_standin: str
) -> None:
    oracle = standin_oracle(stub_potcars, f"{vasp_standin} unconverged")
    result = oracle.label(bulk("C", "diamond", a=3.57), tmp_path)
    assert result.status == "unconverged" and result.energy_eV is None
    assert [r["status"] for r in result.retries] == ["unconverged", "unconverged"]
    assert result.retries[1]["changes"] == {"incar": {"ALGO": "All", "NELM": 120}}
    second = Incar.from_file(Path(result.retries[1]["directory"]) / "INCAR")
    assert second["ALGO"] == "All" and second["NELM"] == 120  # the rung reached VASP's input
    assert (Path(result.retries[0]["directory"]) / "vasprun.xml").is_file()  # files kept


def test_custodian_corrects_before_the_ladder_and_its_corrections_are_kept(
    stub_potcars: Path, tmp_path: Path, vasp_standin: str
) -> None:
    oracle = standin_oracle(
        stub_potcars, f"{vasp_standin} unconverged", use_custodian=True, retries=[]
    )
    result = oracle.label(bulk("C", "diamond", a=3.57), tmp_path)
    assert result.status == "unconverged"
    corrections = result.retries[0]["custodian_corrections"]
    assert len(corrections) == 3  # the fast preset's custodian_max_errors
    assert {c["handler"] for c in corrections} == {"UnconvergedErrorHandler"}
    assert all(c["errors"] == ["Unconverged"] for c in corrections)


@pytest.mark.parametrize("custodian", [False, True])
def test_a_vasp_error_is_named(
    custodian: bool, stub_potcars: Path, tmp_path: Path, vasp_standin: str
) -> None:
    message = VaspErrorHandler.error_msgs["brmix"][0]
    oracle = standin_oracle(
        stub_potcars, f"{vasp_standin} error '{message}'", use_custodian=custodian
    )
    result = oracle.label(bulk("C", "diamond", a=3.57), tmp_path)
    assert result.status == "crashed" and "'brmix'" in result.error, result.error
    handlers = {c["handler"] for c in result.retries[0]["custodian_corrections"]}
    assert handlers == ({"VaspErrorHandler"} if custodian else set())


@pytest.mark.parametrize("custodian", [False, True])
def test_the_wall_time_guard_stops_a_run_and_keeps_its_files(
    custodian: bool, stub_potcars: Path, tmp_path: Path, vasp_standin: str
) -> None:
    oracle = standin_oracle(
        stub_potcars, f"{vasp_standin} sleep", wall_time_s=2, use_custodian=custodian
    )
    result = oracle.label(bulk("C", "diamond", a=3.57), tmp_path)
    assert result.status == "killed", result.error
    # custodian's validator fails first and the exit code is lost: the files tell
    assert ("timing summary" if custodian else "exit 124") in result.error
    assert result.wall_time_s < 30  # custodian looks at its job every 10 s
    assert (Path(result.retries[0]["directory"]) / "INCAR").is_file()


def test_failed_vasp_labels_reach_the_database_through_a_real_rocket(
    stub_potcars: Path, vasp_standin: str, label_through_a_rocket
) -> None:
    command = f"{vasp_standin} unconverged"
    overrides = {"pp_path": str(stub_potcars), "vasp_cmd": command, "vasp_gamma_cmd": command}
    labels = label_through_a_rocket(
        {"code": "vasp", "preset": "fast", "overrides": {**overrides, "use_custodian": False}}
    )["labels"]
    assert len(labels) == 2 and {d["status"] for d in labels} == {"unconverged"}
    for label in labels:
        assert label["code"] == "vasp" and len(label["retries"]) == 2
        assert label["settings"]["vasp_cmd"] == command


def test_cli_writes_the_inputs_of_a_structure(stub_potcars: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from ase.io import write

    env = {k: v for k, v in os.environ.items() if k != "VASP_PP_PATH"}

    al_loop = str(Path(sys.executable).parent / "al-loop")
    write(tmp_path / "POSCAR.in", ca_fe_ni(), format="vasp")
    campaign = {
        "name": "ca-fe-ni-vasp",
        "system": {"elements": ["Ca", "Fe", "Ni"], "pressures_GPa": [0, 250]},
        "oracle": {"code": "vasp", "preset": "production", "overrides": {}},
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign))
    args = [al_loop, "inputs", str(path), str(tmp_path / "POSCAR.in"), str(tmp_path / "in")]

    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "no pp_path folder" in done.stderr  # no pp_path anywhere

    campaign["oracle"]["overrides"] = {"pp_path": str(stub_potcars)}
    path.write_text(yaml.safe_dump(campaign))
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Ca2Fe2Ni: INCAR, KPOINTS, POSCAR, POTCAR, POTCAR.spec" in done.stdout
    assert Incar.from_file(tmp_path / "in" / "INCAR")["ENCUT"] == 600

    campaign["oracle"] = {"code": "emt"}
    campaign["system"]["elements"] = ["Cu"]
    path.write_text(yaml.safe_dump(campaign))
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "writes no input files" in done.stderr
