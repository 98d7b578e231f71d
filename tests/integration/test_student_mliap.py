"""Route 1, the student as ML-IAP nn on SNAP: the PyTorch model (on LAMMPS's descriptors) against
``pair_style mliap``; LAMMPS's files written and read back; clear errors on mismatched files; a
tiny fit that runs NVE in ``lmp`` from the include file."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from calculators.models import Tolerances, validate_model
from calculators.models.student import routes, snap_nn
from calculators.models.student.lammps_run import lammps_env, lammps_executable
from calculators.models.student.training import StudentSettings

pytestmark = pytest.mark.integration

ELEMENTS = ["Cu", "Ni", "Al"]
PAIRS = list(itertools.combinations_with_replacement(ELEMENTS, 2))


def random_cell(pair: tuple[str, str], seed: int, scale: float) -> Atoms:
    """A skewed, rattled two-element cell, compressed by ``scale`` in length."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6 * scale) * (2, 2, 2)
    strain = np.eye(3) + 0.06 * rng.normal(size=(3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.symbols[:] = [pair[int(k)] for k in rng.integers(2, size=len(atoms))]
    atoms.rattle(0.12, seed=seed)
    return atoms


def relative(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / np.abs(a).max())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A random ML-IAP student (normalised on real descriptors) in LAMMPS's files."""
    model = snap_nn.SnapNetwork(ELEMENTS, snap_nn.SnapSpec(), (16, 8), seed=3)
    frames = [
        snap_nn.snap_frame(random_cell(p, k, 1.0), ELEMENTS, model.spec)
        for k, p in enumerate(PAIRS)
    ]
    model.set_normalisation(
        np.concatenate([f.B for f in frames]), np.concatenate([f.species for f in frames])
    )
    return list(snap_nn.write_mliap(model, tmp_path_factory.mktemp("mliap") / "random"))


def test_the_descriptor_count_follows_twojmax() -> None:
    assert snap_nn.SnapSpec(twojmax=6).n_descriptors == 30  # LAMMPS's Cu example: 30
    assert snap_nn.SnapSpec(twojmax=8).n_descriptors == 55


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("scale", [1.0, 0.72])  # 0.72: about 0.37 of the volume, ~500 GPa
def test_lammps_reproduces_the_pytorch_model(files: list[Path], pair, scale) -> None:
    atoms = random_cell(pair, seed=10 + PAIRS.index(pair), scale=scale)
    model = snap_nn.read_mliap(*files)
    in_torch = snap_nn.predict(model, atoms.copy())
    in_lammps = routes.in_lammps("mliap", files, ELEMENTS).predict(atoms.copy())
    for key in ("energy", "forces", "stress"):
        assert relative(in_torch[key], in_lammps[key]) < 1e-6, key


def test_the_files_read_back(files: list[Path], tmp_path: Path) -> None:
    model = snap_nn.read_mliap(*files)
    again = snap_nn.read_mliap(*snap_nn.write_mliap(model, tmp_path / "again"))
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert (model.elements, model.hidden, model.spec) == (ELEMENTS, [16, 8], snap_nn.SnapSpec())
    include = routes.write_lammps_inputs("mliap", files, ELEMENTS, tmp_path / "lammps")
    lines = include.read_text().splitlines()
    assert lines[-2].split()[:3] == ["pair_style", "mliap", "model"]
    assert lines[-2].split()[4] == str(tmp_path / "lammps" / "random.mliap.model")
    assert lines[-1] == "pair_coeff * * Cu Ni Al"


def test_mismatched_files_are_clear_errors(files: list[Path], tmp_path: Path) -> None:
    model_file, descriptor_file = files
    other = tmp_path / "other.mliap.descriptor"
    other.write_text(descriptor_file.read_text().replace("twojmax 6", "twojmax 8"))
    with pytest.raises(snap_nn.MliapFileError, match=r"30 descriptors, but twojmax 8 in .*55"):
        routes.in_lammps("mliap", [model_file, other], ELEMENTS)
    two = tmp_path / "two.mliap.descriptor"
    two.write_text(
        descriptor_file.read_text()
        .replace("nelems 3", "nelems 2")
        .replace("elems Cu Ni Al", "elems Cu Ni")
        .replace("radelems 0.5 0.5 0.5", "radelems 0.5 0.5")
    )
    with pytest.raises(snap_nn.MliapFileError, match=r"3 elements, but .*two.* has 2 \(Cu Ni\)"):
        routes.in_lammps("mliap", [model_file, two], ELEMENTS)
    with pytest.raises(snap_nn.MliapFileError, match=r"elements Cu Ni Al, not Fe"):
        routes.in_lammps("mliap", files, ["Cu", "Fe"])
    cut = tmp_path / "cut.mliap.model"
    cut.write_text("\n".join(model_file.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(snap_nn.MliapFileError, match=r"numbers after the header, expected"):
        snap_nn.read_mliap(cut, descriptor_file)


def emt_cells(n: int) -> list[Atoms]:
    """Rattled by 0.15 Å: with 0.05 the tiny model's MD left its data at once and blew up."""
    rng = np.random.default_rng(0)
    cells = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 * rng.uniform(0.94, 1.01), cubic=True) * (2, 2, 2)
        atoms.symbols[rng.random(len(atoms)) < 0.4] = "Ni"
        atoms.rattle(0.15, seed=k)
        atoms.calc = EMT()
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        atoms.calc = SinglePointCalculator(atoms, **results)
        cells.append(atoms)
    return cells


def test_a_tiny_fit_learns_and_runs_nve_in_lmp(tmp_path: Path) -> None:
    cells = emt_cells(14)
    settings = StudentSettings(
        route="mliap",
        hidden=(16, 16),
        epochs=80,
        learning_rate=1e-2,
        final_learning_rate=5e-4,
        threads=1,
    )
    files, history = routes.fit(cells[:12], ["Cu", "Ni"], settings, tmp_path / "fitted")
    assert history.validation_loss[history.best_epoch] < history.validation_loss[0] / 2
    calc = routes.calculator("mliap", files, ["Cu", "Ni"])
    assert validate_model(calc, [cells[12]], tolerances=Tolerances.stiff()).ok
    agreement = routes.lammps_agreement("mliap", files, ["Cu", "Ni"], cells[13])
    assert agreement["max_relative_difference"] < 1e-6
    # the include file in a real lmp run: NVE conserves energy (measured: 0.064 eV over 300
    # steps; the tiny model heats the cell to ~2,000 K; a force inconsistent with the energy
    # drifts by hundreds of eV)
    atoms = cells[13].repeat((2, 2, 2))
    atoms.write(tmp_path / "cell.data", format="lammps-data", specorder=["Cu", "Ni"])
    include = routes.write_lammps_inputs("mliap", files, ["Cu", "Ni"], tmp_path / "lammps")
    (tmp_path / "in.lmp").write_text(
        "\n".join(
            [
                "units metal",
                "atom_style atomic",
                "read_data cell.data",
                "mass 1 63.546",
                "mass 2 58.693",
                f"include {include}",
                "velocity all create 300 4928459 loop geom",
                "fix md all nve",
                "timestep 0.001",
                "thermo 50",
                "thermo_style custom step etotal",
                "thermo_modify format float %.10f",
                "run 300",
            ]
        )
    )
    done = subprocess.run(
        [str(lammps_executable()), "-in", "in.lmp", "-log", "log.lammps", "-screen", "none"],
        cwd=tmp_path,
        env=lammps_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "log.lammps").read_text().splitlines()
    start = next(k for k, line in enumerate(log) if line.split() == ["Step", "TotEng"])
    energies = [float(line.split()[1]) for line in log[start + 1 : start + 8]]
    assert len(energies) == 7
    drift = max(energies) - min(energies)
    assert drift < 0.2, energies  # eV over 300 fs, 256 atoms
