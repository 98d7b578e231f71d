"""Quantum ESPRESSO (pw.x) through quacc's espresso ``static_job``, with quacc's workflow engine
off, inside the same Firetasks as every oracle.

Energy, forces and stress always (``tstress``, ``tprnfor``: quacc sets neither). Smearing for
metals; spin only when ``spin_polarized`` (the moments of ``magmoms``; ASE's ``bulk()`` sets
moments silently, so they are always overwritten). K-points from a spacing in Å⁻¹ (VASP's
KSPACING convention, 2π included) so that cells of any size get the same sampling. Each run is
classified (:mod:`calculators.oracles.espresso_output`); an unconverged SCF climbs the
``retries`` ladder (each rung's changes and outcome are kept in the label's ``retries``) and
never becomes ``ok``. A run longer than ``wall_time_s`` is stopped by ``timeout`` and marked
``killed``; the files of every attempt stay in the label's folder.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Annotated, Any, Literal

from ase import Atoms
from pydantic import Field

from calculators.oracles.base import Attempt, LabelResult, Oracle, launch_prefix
from calculators.oracles.espresso_output import classify
from calculators.oracles.sampling import kpoints, with_moments
from calculators.oracles.setting_types import Bool, Element, Float, Int, PositiveFloat
from calculators.oracles.settings import OracleSettings, execution, merge_settings, physics

#: pw.x's smearing names.
Smearing = Literal[
    "gaussian", "gauss", "methfessel-paxton", "m-p", "mp", "marzari-vanderbilt", "cold", "m-v",
    "mv", "fermi-dirac", "f-d", "fd",
]  # fmt: skip
#: pw.x's input file, as quacc names it.
INPUT_FILE, OUTPUT_FILE = "pw.in", "pw.out"


class EspressoSettings(OracleSettings):
    """pw.x settings (the presets in configs/presets/espresso/ set them all)."""

    per_element_fields = frozenset({"pseudopotentials", "magmoms"})
    path_fields = frozenset({"pseudo_dir"})
    command_fields = frozenset({"parallel_cmd", "pw_args"})

    pseudo_dir: str | None = execution(None, "folder of the UPF files (null: $AL_LOOP_PSEUDO_DIR)")
    pseudopotentials: dict[Element, Annotated[str, Field(min_length=1)]] = physics(
        ..., "UPF file name per element; the file's content is part of a label's identity"
    )
    ecutwfc_Ry: PositiveFloat = physics(..., "wave-function cut-off")
    ecutrho_Ry: PositiveFloat = physics(..., "charge-density cut-off")
    kspacing_A: PositiveFloat = physics(..., "k-point spacing in 1/Å, 2π included (KSPACING)")
    smearing: Smearing = physics(..., "pw.x smearing (mv, gaussian, ...)")
    degauss_Ry: PositiveFloat = physics(..., "smearing width")
    spin_polarized: Bool = physics(False, "collinear spin with the starting moments of magmoms")
    magmoms: dict[Element, Annotated[Float, Field(ge=-1, le=1)]] = physics(
        {}, "starting magnetisation per element in [-1, 1] (starting_magnetization)"
    )
    conv_thr_Ry: PositiveFloat = physics(..., "SCF convergence threshold (the label's precision)")
    input_data: dict[str, dict[str, Any]] = physics(
        {}, "any other pw.x namelist keys, nested by namelist"
    )
    mixing_beta: Annotated[Float, Field(gt=0, le=1)] = execution(..., "charge mixing")
    mixing_mode: Literal["plain", "TF", "local-TF"] | None = execution(None, "mixing scheme")
    diagonalization: Literal["david", "cg", "ppcg", "paro", "rmm-davidson", "rmm-paro"] | None = (
        execution(None, "diagonalisation algorithm")
    )
    electron_maxstep: Annotated[Int, Field(ge=1)] = execution(..., "SCF iterations at most")
    parallel_cmd: str = execution("", "command before pw.x, e.g. 'mpirun -np 4'")
    pw_args: str = execution("", "arguments after pw.x, e.g. '-nk 2'")
    wall_time_s: PositiveFloat = execution(..., "a run is stopped (and marked killed) after this")
    retries: list[dict[str, Any]] = execution(
        [], "changes tried in turn after an unconverged SCF (execution settings only)"
    )


def pw_parameters(atoms: Atoms, s: EspressoSettings) -> dict[str, Any]:
    """quacc's ``static_job`` keyword arguments for one structure: namelists, UPF names,
    k-points (what the run and :meth:`EspressoOracle.write_inputs` both use)."""
    missing = sorted(set(atoms.get_chemical_symbols()) - set(s.pseudopotentials))
    if missing:
        raise ValueError(f"no pseudopotential for {missing} in the oracle's settings")
    electrons = {
        "conv_thr": s.conv_thr_Ry,
        "mixing_beta": s.mixing_beta,
        "electron_maxstep": s.electron_maxstep,
    }
    electrons |= {k: getattr(s, k) for k in ("mixing_mode", "diagonalization") if getattr(s, k)}
    input_data = merge_settings(
        {
            "control": {"tstress": True, "tprnfor": True},
            "system": {
                "ecutwfc": s.ecutwfc_Ry,
                "ecutrho": s.ecutrho_Ry,
                "occupations": "smearing",
                "smearing": s.smearing,
                "degauss": s.degauss_Ry,
            },
            "electrons": electrons,
        },
        s.input_data,
    )
    species = sorted(set(atoms.get_chemical_symbols()))
    return {
        "input_data": input_data,
        "pseudopotentials": {el: s.pseudopotentials[el] for el in species},
        "kpts": kpoints(atoms, s.kspacing_A),
    }


class EspressoOracle(Oracle):
    """pw.x SCF: energy, forces and stress of one structure."""

    code = "espresso"
    Settings = EspressoSettings
    quacc_module = "quacc.recipes.espresso.core"
    per_element_setting = "pseudopotentials"
    input_files = (INPUT_FILE,)
    settings: EspressoSettings

    program = "pw.x"
    file_hint = "put the UPF file in pseudo_dir, or fix the name"

    def _note_version(self, output: str | None) -> str | None:
        found = re.search(r"Program PWSCF (v\.\S+)", output or "")
        if found:
            self._program_version = found.group(1)
        return output

    folder_setting = ("pseudo_dir", "AL_LOOP_PSEUDO_DIR", "`al-loop setup pseudos DIR` fills one")

    def physics_file(self, element: str) -> Path:
        return self.files_folder() / self.settings.pseudopotentials[element]

    @classmethod
    def classify_run(cls, directory: Path, returncode: int | None) -> tuple[str, str]:
        """(status, reason) of the pw.x run whose files are in ``directory``."""
        return classify(_read(Path(directory) / OUTPUT_FILE), returncode)

    @classmethod
    def read_inputs(cls, directory: Path) -> Atoms:
        from ase.io import read

        return read(Path(directory) / INPUT_FILE, format="espresso-in")

    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        last, retries = self.climb_retries(workdir, lambda s, folder: self._run(atoms, folder, s))
        if last.status != "ok" or last.results is None:
            return self.result(last.status, error=last.reason, retries=retries)
        parameters = pw_parameters(atoms, self.settings)
        return self.ok_result(
            last.results,
            pseudopotentials=parameters["pseudopotentials"],
            kpoints=list(parameters["kpts"]),
            retries=retries,
            extra={"attempts": len(retries), "pw_out": str(last.directory)},
        )

    def _quacc_settings(self, workdir: Path, s: EspressoSettings) -> dict[str, Any]:
        return {
            "ESPRESSO_PSEUDO": str(self.files_folder()),
            "ESPRESSO_PARALLEL_CMD": (launch_prefix(s.wall_time_s, s.parallel_cmd), s.pw_args),
            "RESULTS_DIR": workdir,
            "SCRATCH_DIR": None,  # a user's QUACC_SCRATCH_DIR would put files elsewhere
            "NESTED_RESULTS": False,
            "CREATE_UNIQUE_DIR": False,
            "GZIP_FILES": False,
        }

    def _run(self, atoms: Atoms, workdir: Path, s: EspressoSettings) -> Attempt:
        """One pw.x run in ``workdir`` (quacc's ``failed-quacc-*`` inside it when it fails)."""
        from quacc import JobFailure, change_settings
        from quacc.recipes.espresso.core import static_job

        workdir.mkdir(parents=True, exist_ok=True)
        try:
            with change_settings(self._quacc_settings(workdir, s)):
                out = static_job(
                    with_moments(atoms, s.spin_polarized, s.magmoms),
                    preset=None,
                    **pw_parameters(atoms, s),
                )
        except JobFailure as exc:
            error = exc.parent_error
            code = error.returncode if isinstance(error, subprocess.CalledProcessError) else None
            text = self._note_version(_read(Path(exc.directory) / OUTPUT_FILE))
            status, reason = classify(text, code)
            if code is None and text is None:
                reason = f"{reason} ({type(error).__name__}: {error})"
            return Attempt(status, reason, Path(exc.directory))
        directory = Path(out.get("dir_name") or workdir)
        status, reason = classify(self._note_version(_read(directory / OUTPUT_FILE)), 0)
        return Attempt(status, reason, directory, results=out["results"])

    def write_inputs(self, atoms: Atoms, directory: Path) -> Path:
        """Write ``pw.in`` as the run writes it (quacc's calculator, ``static_job``'s
        defaults), without running pw.x."""
        from quacc import change_settings
        from quacc.atoms.core import check_is_metal
        from quacc.calculators.espresso.espresso import EspressoTemplate
        from quacc.recipes.espresso._base import prepare_calc
        from quacc.recipes.espresso.core import BASE_SET_METAL, BASE_SET_NON_METAL

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        s = self.settings
        atoms = with_moments(atoms, s.spin_polarized, s.magmoms)
        defaults = copy.deepcopy(BASE_SET_METAL if check_is_metal(atoms) else BASE_SET_NON_METAL)
        defaults["input_data"]["control"] = {"calculation": "scf"}  # as static_job
        with change_settings(self._quacc_settings(directory, s)):
            calc = prepare_calc(
                atoms,
                preset=None,
                template=EspressoTemplate("pw"),
                calc_defaults=defaults,
                calc_swaps=pw_parameters(atoms, s),
            )
            calc.template.write_input(
                calc.profile, directory, atoms, calc.parameters, ["energy", "forces", "stress"]
            )
        return directory


def _read(path: Path) -> str | None:
    if not path.is_file():
        return None
    return path.read_text(errors="replace")
