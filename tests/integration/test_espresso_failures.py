"""Every pw.x failure class provoked for real (through quacc's espresso recipe) and classified."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ase.build import bulk

from calculators.espresso_output import classify

pytestmark = pytest.mark.integration


def run_pw(
    tmp_path: Path,
    pseudo_dir: Path,
    pseudo: str = "Ni.pbe-nd-rrkjus.UPF",
    electrons: dict | None = None,
    parallel_cmd: tuple[str, str] = ("", ""),
    atoms_repeat: int = 1,
    kpts: int = 4,
) -> tuple[str | None, int | None]:
    """(pw.out text, exit code) of one Ni run, whatever happened."""
    from quacc import JobFailure, change_settings
    from quacc.recipes.espresso.core import static_job

    atoms = bulk("Ni", "fcc", a=3.52, cubic=atoms_repeat > 1)
    atoms.set_initial_magnetic_moments(None)
    settings = {
        "ESPRESSO_PSEUDO": str(pseudo_dir),
        "ESPRESSO_PARALLEL_CMD": parallel_cmd,
        "RESULTS_DIR": tmp_path,
        "GZIP_FILES": False,
    }
    input_data = {
        "control": {"tstress": True, "tprnfor": True},
        "system": {"ecutwfc": 25, "ecutrho": 200, "occupations": "smearing", "degauss": 0.02},
        "electrons": {"conv_thr": 1e-8, **(electrons or {})},
    }
    try:
        with change_settings(settings):
            out = static_job(
                atoms,
                preset=None,
                input_data=input_data,
                pseudopotentials={"Ni": pseudo},
                kpts=(kpts,) * 3,
            )
        return (Path(out["dir_name"]) / "pw.out").read_text(), 0
    except JobFailure as exc:
        error = exc.parent_error
        code = error.returncode if isinstance(error, subprocess.CalledProcessError) else None
        output = Path(exc.directory) / "pw.out"
        return (output.read_text() if output.is_file() else None), code


def test_a_converged_run_is_ok(tmp_path: Path, fast_pseudos: Path) -> None:
    assert classify(*run_pw(tmp_path, fast_pseudos)) == ("ok", "")


def test_an_unconverged_scf_is_never_ok(tmp_path: Path, fast_pseudos: Path) -> None:
    text, code = run_pw(tmp_path, fast_pseudos, electrons={"electron_maxstep": 1})
    assert code == 2
    assert classify(text, code) == (
        "unconverged",
        "SCF convergence NOT achieved after 1 iterations",
    )


def test_a_missing_pseudopotential_is_an_input_error(tmp_path: Path, fast_pseudos: Path) -> None:
    text, code = run_pw(tmp_path, fast_pseudos, pseudo="Ni.nowhere.UPF")
    status, reason = classify(text, code)
    assert code == 1 and status == "input_error", reason
    assert reason.startswith("Error in routine readpp")


def test_a_killed_run_is_killed(tmp_path: Path, fast_pseudos: Path) -> None:
    """A 4-atom cell with 8x8x8 k-points takes tens of seconds; timeout kills it after 1 s."""
    text, code = run_pw(
        tmp_path, fast_pseudos, parallel_cmd=("timeout -s KILL 1", ""), atoms_repeat=2, kpts=8
    )
    status, reason = classify(text, code)
    assert code in (137, -9) and status == "killed", (code, reason)
