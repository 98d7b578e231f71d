"""VASP outputs through al-loop's parser: real VASP output stored with the pinned ASE
(``ase/test/testdata/vasp``: a VASP 6.3.0 single point, a complete OUTCAR, OUTCAR excerpts of
converged and unconverged SCF), and files derived from them for the failure classes."""

from __future__ import annotations

import shutil
from pathlib import Path

import ase
import numpy as np
import pytest
from ase import units
from custodian.vasp.handlers import VaspErrorHandler

from calculators.oracles.vasp_output import (
    INPUT_ERRORS,
    WARNINGS,
    classify,
    read_results,
    vasp_version,
)

STORED = Path(ase.__file__).parent / "test" / "testdata" / "vasp"
VASPRUN = STORED / "vasprun_pstress.xml"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A folder holding the stored single point as ``vasprun.xml``, with its INCAR."""
    shutil.copy(VASPRUN, tmp_path / "vasprun.xml")
    (tmp_path / "INCAR").write_text("PSTRESS = 1.0\n")
    return tmp_path


def test_the_stored_run_is_ok_and_its_results_agree_with_pymatgen(run_dir: Path) -> None:
    from pymatgen.io.vasp.outputs import Vasprun

    assert classify(run_dir, 0) == ("ok", "")
    results = read_results(run_dir)
    pmg = Vasprun(str(run_dir / "vasprun.xml"), parse_dos=False, parse_eigen=False)
    step = pmg.ionic_steps[-1]
    # vasprun.xml's e_fr_energy is an enthalpy: PSTRESS (1 kbar) times the volume is in it
    pv = 1.0 * 0.1 * units.GPa * pmg.final_structure.volume
    assert results["energy"] == pytest.approx(step["e_fr_energy"] - pv, abs=1e-6)
    assert results["energy_sigma0"] != results["energy"]  # the smearing entropy is kept apart
    kbar = np.array(step["stress"])
    voigt = -0.1 * units.GPa * kbar.reshape(9)[[0, 4, 8, 5, 2, 1]]  # VASP kbar -> ASE sign
    np.testing.assert_allclose(results["stress"], voigt, atol=1e-12)
    pressure_GPa = -results["stress"][:3].mean() / units.GPa
    assert pressure_GPa == pytest.approx(np.trace(kbar) / 30, abs=1e-9)
    assert results["forces"].shape == (2, 3)
    assert vasp_version(run_dir) == "6.3.0"


def test_results_come_back_in_the_input_order(run_dir: Path) -> None:
    as_written = read_results(run_dir)["positions"]
    (run_dir / "ase-sort.dat").write_text("    1     1 \n    0     0 \n")
    np.testing.assert_allclose(read_results(run_dir)["positions"], as_written[[1, 0]])
    (run_dir / "ase-sort.dat").write_text("    0     0 \n")
    with pytest.raises(ValueError, match="does not describe 2 atoms"):
        read_results(run_dir)


def test_an_scf_that_ran_nelm_steps_is_unconverged(run_dir: Path) -> None:
    from helpers.vasp_standin import unconverged_vasprun  # what the stand-in binary writes

    (run_dir / "vasprun.xml").write_text(unconverged_vasprun())
    steps = VASPRUN.read_text().count("<scstep>")
    assert classify(run_dir, 0) == ("unconverged", f"SCF not converged after {steps} steps (NELM)")


@pytest.mark.parametrize(
    ("outcar", "status"),
    [("convergence_OUTCAR_y_n", "unconverged"), ("convergence_OUTCAR_y_y", "killed")],
)
def test_outcar_excerpts(outcar: str, status: str, tmp_path: Path) -> None:
    """Real OUTCAR excerpts without vasprun.xml: an SCF that stopped at NELM is unconverged;
    one that converged but never reached the timing summary was stopped."""
    shutil.copy(STORED / outcar, tmp_path / "OUTCAR")
    (tmp_path / "INCAR").write_text("NELM = 60\n")
    assert classify(tmp_path, None)[0] == status


def test_a_truncated_vasprun(run_dir: Path) -> None:
    text = VASPRUN.read_text()
    (run_dir / "vasprun.xml").write_text(text[: len(text) // 2])
    status, reason = classify(run_dir, None)
    assert status == "killed" and "timing summary" in reason and "unreadable" in reason
    assert classify(run_dir, 137)[0] == "killed"
    shutil.copy(STORED / "OUTCAR_example_1", run_dir / "OUTCAR")  # a complete, real OUTCAR
    status, reason = classify(run_dir, 0)
    assert status == "crashed" and reason.startswith("VASP finished but vasprun.xml is unreadable")


def test_a_killed_run_is_killed_even_with_a_warning_in_its_log(tmp_path: Path) -> None:
    (tmp_path / "INCAR").write_text("ENCUT = 400\n")
    warning = VaspErrorHandler.error_msgs["subspacematrix"][0]
    (tmp_path / "vasp.out").write_text(f" {warning}\n")
    (tmp_path / "OUTCAR").write_text(" running on 4 cores\n")  # stopped mid-SCF
    for code in (124, 137, -9):
        assert classify(tmp_path, code) == (
            "killed",
            f"stopped by a signal or a time limit (exit {code})",
        )
    status, reason = classify(tmp_path, None)  # the exit code lost (custodian's validator)
    assert status == "killed" and "timing summary" in reason
    assert set(VaspErrorHandler.error_msgs) >= WARNINGS | INPUT_ERRORS  # names custodian still has


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("triple_product", "input_error"),
        ("read_error", "input_error"),
        ("brmix", "crashed"),
        ("zbrent", "crashed"),
        ("edddav", "crashed"),
    ],
)
def test_an_error_in_vasp_out_names_the_failure(name: str, status: str, tmp_path: Path) -> None:
    (tmp_path / "INCAR").write_text("ENCUT = 400\n")
    message = VaspErrorHandler.error_msgs[name][0]
    (tmp_path / "vasp.out").write_text(f" running on 4 cores\n {message} in line 12\n")
    got, reason = classify(tmp_path, 1)
    assert got == status and got == ("input_error" if name in INPUT_ERRORS else "crashed")
    assert f"'{name}'" in reason and message in reason


def test_a_warning_does_not_spoil_a_finished_run(run_dir: Path) -> None:
    warning = VaspErrorHandler.error_msgs["subspacematrix"][0]
    (run_dir / "vasp.out").write_text(f" {warning}\n")
    assert classify(run_dir, 0) == ("ok", "")


def test_runs_without_output(tmp_path: Path) -> None:
    assert classify(tmp_path, None)[0] == "input_error"  # no INCAR: VASP never started
    (tmp_path / "INCAR").write_text("ENCUT = 400\n")
    assert classify(tmp_path, 137)[0] == "killed"
    assert classify(tmp_path, -9)[0] == "killed"
    assert classify(tmp_path, 1) == ("crashed", "VASP wrote no output (exit 1)")


def test_a_finished_run_with_a_bad_exit_code_is_not_ok(run_dir: Path) -> None:
    assert classify(run_dir, 1) == ("crashed", "VASP finished but exited 1")
