"""The student's LAMMPS pair style (built from source by the set-up) against the PyTorch model:
the same energies, forces and stress; 1 and 2 MPI ranks; clear errors on bad input."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from calculators.models.student import routes
from calculators.models.student.calculator import StudentCalculator
from calculators.models.student.lammps_run import lammps_env, lammps_executable, pair_commands
from calculators.models.student.model_file import write_student

pytestmark = pytest.mark.integration

ELEMENTS = ["Cu", "Ni", "Al"]
PAIRS = list(itertools.combinations_with_replacement(ELEMENTS, 2))


def student_in_lammps(model_file: Path, elements: list[str]) -> routes.LammpsCalculator:
    return routes.in_lammps("pair", [model_file], elements)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, random_student) -> Path:
    return write_student(
        random_student(ELEMENTS, seed=4), tmp_path_factory.mktemp("s") / "m.student"
    )


def random_cell(pair: tuple[str, str], seed: int, scale: float) -> Atoms:
    """A skewed, rattled two-element cell, compressed by ``scale`` in length."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6 * scale) * (2, 2, 3)
    strain = np.eye(3) + 0.06 * rng.normal(size=(3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.symbols[:] = [pair[int(k)] for k in rng.integers(2, size=len(atoms))]
    atoms.rattle(0.12, seed=seed)
    return atoms


def relative(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("scale", [1.0, 0.72])  # 0.72: about 0.37 of the volume, ~500 GPa
def test_lammps_reproduces_the_pytorch_model(model_file: Path, pair, scale) -> None:
    atoms = random_cell(pair, seed=PAIRS.index(pair), scale=scale)
    torch_result = StudentCalculator(model_file).predict(atoms.copy())
    lammps_result = student_in_lammps(model_file, ELEMENTS).predict(atoms.copy())
    for key in ("energy", "forces", "stress"):
        assert relative(torch_result[key], lammps_result[key]) < 1e-6, key


def run_lmp(folder: Path, ranks: int = 1, extra: tuple[str, ...] = ()) -> str:
    """``lmp -in in.lmp`` in ``folder`` on ``ranks`` MPI ranks with ``extra`` arguments; its
    screen output."""
    command = [str(lammps_executable()), "-in", "in.lmp", "-log", "none", *extra]
    if ranks > 1:
        command = [
            str(Path(lammps_executable()).parents[4] / "bin" / "mpirun"),
            "-np",
            str(ranks),
            *command,
        ]
    done = subprocess.run(
        command, cwd=folder, env=lammps_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def lmp_energy(inputs: str, folder: Path, ranks: int) -> float:
    (folder / "in.lmp").write_text(inputs)
    run_lmp(folder, ranks, ("-screen", "none"))
    return float((folder / "pe.txt").read_text().split()[-1])


def test_one_and_two_mpi_ranks_give_the_pytorch_energy(model_file: Path, tmp_path: Path) -> None:
    atoms = bulk("Ni", "fcc", a=3.5, cubic=True) * (4, 4, 4)
    atoms.symbols[::3] = "Al"
    atoms.rattle(0.1, seed=1)
    atoms.write(tmp_path / "cell.data", format="lammps-data", specorder=ELEMENTS)
    include = routes.write_lammps_inputs("pair", [model_file], ELEMENTS, tmp_path / "student")
    inputs = "\n".join(
        [
            "units metal",
            "atom_style atomic",
            "read_data cell.data",
            *(f"mass {k + 1} 1.0" for k in range(3)),
            f"include {include}",
            "variable e equal pe",
            "run 0",
            'print "${e}" file pe.txt',
        ]
    )
    expected = StudentCalculator(model_file).predict(atoms.copy())["energy"]
    for ranks in (1, 2):
        assert relative(expected, lmp_energy(inputs, tmp_path, ranks)) < 1e-10, ranks


def test_the_openmp_style_gives_the_serial_numbers_on_two_threads(
    model_file: Path, tmp_path: Path
) -> None:
    """``-sf omp -pk omp 2`` runs alloop/student/omp on two threads: the same energy, pressure
    and forces as alloop/student (sums in another order: 1e-10)."""
    atoms = bulk("Ni", "fcc", a=3.4, cubic=True) * (4, 4, 3)
    atoms.symbols[::3] = "Al"
    atoms.symbols[1::5] = "Cu"
    atoms.rattle(0.15, seed=2)
    atoms.write(tmp_path / "cell.data", format="lammps-data", specorder=ELEMENTS)
    include = routes.write_lammps_inputs("pair", [model_file], ELEMENTS, tmp_path / "student")
    (tmp_path / "in.lmp").write_text(
        "\n".join(
            [
                "units metal",
                "atom_style atomic",
                "read_data cell.data",
                *(f"mass {k + 1} 1.0" for k in range(3)),
                f"include {include}",
                "variable e equal pe",
                "variable p equal press",
                "compute peratom all pe/atom",
                "run 0",
                'print "${e} ${p}" file pe.txt',
                "write_dump all custom forces.txt id fx fy fz c_peratom modify sort id",
            ]
        )
    )
    results = {}
    for name, extra in (("serial", ()), ("omp", ("-sf", "omp", "-pk", "omp", "2"))):
        screen = run_lmp(tmp_path, 1, extra)
        energy, pressure = map(float, (tmp_path / "pe.txt").read_text().split())
        rows = np.loadtxt(tmp_path / "forces.txt", skiprows=9)
        results[name] = (energy, pressure, rows[:, 1:4], rows[:, 4], screen)
    assert "alloop/student/omp" in results["omp"][4]
    assert "set 2 OpenMP thread(s)" in results["omp"][4]
    serial, omp = results["serial"], results["omp"]
    assert abs(serial[2]).max() > 0.1  # a cell with forces to compare
    for k in range(4):
        assert relative(serial[k], omp[k]) < 1e-10, k


def test_the_include_file_reads_back(model_file: Path, tmp_path: Path) -> None:
    include = routes.write_lammps_inputs("pair", [model_file], ELEMENTS, tmp_path)
    lines = include.read_text().splitlines()
    assert lines[-2] == "pair_style alloop/student"
    assert lines[-1].split()[1:] == ["*", "*", str(tmp_path / "m.student"), *ELEMENTS]
    assert Path(lines[-3].split()[-1]).is_file()  # plugin load <built .so>


def test_an_element_missing_from_the_file_is_a_clear_error(model_file: Path) -> None:
    calc = student_in_lammps(model_file, ["Cu", "Fe"])
    atoms = bulk("Cu", "fcc", a=3.6) * 2
    atoms.symbols[0] = "Fe"
    with pytest.raises(Exception, match=r"has no element Fe \(atom type 2\); it knows: Cu Ni Al"):
        calc.predict(atoms)


def test_a_descriptor_network_mismatch_is_a_clear_error(model_file: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.student"
    broken.write_text(
        model_file.read_text().replace("descriptor 4.5 8 4 3 4 44", "descriptor 4.5 8 4 2 4 44")
    )
    atoms = bulk("Cu", "fcc", a=3.6) * 2
    with pytest.raises(
        Exception,
        match=r"broken.student: the descriptor declares 44 features; its shape "
        r"\(channels 4, lmax 2\) gives 34",
    ):
        student_in_lammps(broken, ELEMENTS).predict(atoms)
    # and the process is still alive and LAMMPS usable
    assert student_in_lammps(model_file, ELEMENTS).predict(atoms)["energy"] < 0
    assert pair_commands(model_file, ELEMENTS)[0].startswith("plugin load ")


def test_the_student_through_lammps_passes_the_model_validator(model_file: Path) -> None:
    from calculators.models import Tolerances, validate_model

    atoms = random_cell(("Cu", "Al"), seed=5, scale=0.9)
    report = validate_model(
        student_in_lammps(model_file, ELEMENTS), [atoms], tolerances=Tolerances.stiff()
    )
    assert report.ok, report.summary()
