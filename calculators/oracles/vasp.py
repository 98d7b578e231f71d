"""VASP through quacc's ``Vasp`` calculator and ``Runner`` (custodian on by default), inside
the same Firetasks as every oracle.

quacc's ``static_job`` is these two calls plus a summary by emmet's ``TaskDoc`` that parses
every output file into a task document; the label stores none of it and its convergence check
is :func:`calculators.oracles.vasp_output.classify`, so the summary is left out. quacc's INCAR
"co-pilot" is off: the INCAR is the resolved settings, nothing changed silently.

Energy, forces and stress always (NSW=0, IBRION=-1, ISIF=2 are set here and cannot be
overridden). K-points come from ``kspacing_A`` as an explicit Γ-centred KPOINTS file, the grid
VASP's KSPACING would make, so that QE and VASP sample alike. Spin only with
``spin_polarized`` (the moments of ``magmoms``). The POTCAR per element comes from ``potcars``;
a ``POTCAR.spec`` (one name per line, pymatgen's convention) is written next to it and the
POTCAR titles and hashes go into the label. An unconverged SCF climbs the ``retries`` ladder
(INCAR changes), after custodian's own corrections when custodian is on.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import math
import re
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from ase import Atoms
from pydantic import AfterValidator, Field

from calculators.oracles.base import Attempt, LabelResult, Oracle, launch_prefix
from calculators.oracles.sampling import kpoints, with_moments
from calculators.oracles.setting_types import Bool, Element, Float, Int, PositiveFloat
from calculators.oracles.settings import OracleSettings, SettingProblem, execution, physics
from calculators.oracles.vasp_output import classify, read_results, resort_order, vasp_version

#: INCAR tags al-loop sets itself, and the setting to use instead.
OWN_TAGS = {
    "NSW": "al-loop labels single points (NSW=0)",
    "IBRION": "al-loop labels single points (IBRION=-1)",
    "ISIF": "al-loop always computes the stress (ISIF=2)",
    "ISPIN": "use spin_polarized",
    "MAGMOM": "use magmoms",
    "KSPACING": "use kspacing_A",
    "KGAMMA": "the grid is always Γ-centred",
    "PSTRESS": "labels are at the structure's own cell (PSTRESS only adds P·V)",
}
#: INCAR tags that change how the answer is reached or what is written, not the answer: the
#: SCF's algorithms and mixing, iteration caps, bands, symmetry use, output, parallelisation.
#: Every other tag is physics (part of a label's identity). A retry rung, and custodian, may
#: change these tags only: a change of any other tag makes the label ``crashed``.
EXECUTION_TAGS = frozenset(
    {
        "ALGO", "IALGO", "NELM", "NELMIN", "NELMDL", "AMIX", "BMIX", "AMIX_MAG", "BMIX_MAG",
        "AMIN", "IMIX", "INIMIX", "MAXMIX", "MIXPRE", "WC", "TIME", "NBLOCK", "KBLOCK", "NSIM",
        "NBANDS", "ISYM", "SYMPREC", "ISTART", "LWAVE", "LCHARG", "LVTOT", "LVHAR", "LELF",
        "LORBIT", "LAECHG", "NWRITE", "NCORE", "NPAR", "KPAR", "LPLANE", "LSCALU",
        "LSCALAPACK",
    }
)  # fmt: skip


def _incar_tags(incar: dict[str, Any]) -> dict[str, Any]:
    for tag in incar:
        if tag != tag.upper():
            raise SettingProblem((tag,), f"write INCAR tags in upper case: {tag.upper()}")
        if tag in OWN_TAGS:
            raise SettingProblem((tag,), f"{tag} is set by al-loop: {OWN_TAGS[tag]}")
        if tag.lower() not in _known_tags():
            hint = difflib.get_close_matches(tag.lower(), _known_tags(), n=1)
            suggestion = f"; did you mean {hint[0].upper()!r}?" if hint else ""
            raise SettingProblem((tag,), f"{tag} is not an INCAR tag ASE knows{suggestion}")
    return incar


def _potcar_names(potcars: dict[str, str]) -> dict[str, str]:
    for element, name in potcars.items():
        if not re.fullmatch(rf"{element}([_.\d].*)?", str(name)):
            raise SettingProblem((element,), f"{name!r} is not a POTCAR of {element}")
    return potcars


def _handlers(names: list[str]) -> list[str]:
    from custodian.vasp import handlers

    for index, name in enumerate(names):
        if not isinstance(getattr(handlers, name, None), type):
            known = [n for n in dir(handlers) if n.endswith("Handler")]
            hint = difflib.get_close_matches(name, known, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise SettingProblem((index,), f"{name!r} is not a custodian VASP handler{suggestion}")
    return names


NonEmpty = Annotated[str, Field(min_length=1)]


class VaspSettings(OracleSettings):
    """VASP settings (the presets in configs/presets/vasp/ set them all)."""

    per_element_fields = frozenset({"potcars", "magmoms"})
    path_fields = frozenset({"pp_path"})
    command_fields = frozenset({"vasp_cmd", "vasp_gamma_cmd", "parallel_cmd"})

    pp_path: str | None = execution(
        None, "folder holding potpaw_PBE.64/ and the like (null: $VASP_PP_PATH)"
    )
    potcar_functional: NonEmpty = execution(
        "PBE", "POTCAR family: PBE or LDA (ASE's pp); which files, whose content is physics"
    )
    potcar_version: str | None = execution(
        None, "POTCAR release: '64' reads potpaw_PBE.64/ (null: potpaw_PBE/)"
    )
    potcars: Annotated[dict[Element, NonEmpty], AfterValidator(_potcar_names)] = physics(
        ..., "POTCAR name per element, e.g. {Fe: Fe_pv}; the file's content is physics"
    )
    incar: Annotated[dict[str, Any], AfterValidator(_incar_tags)] = physics(
        {},
        "INCAR tags in upper case; the EXECUTION_TAGS among them (mixing, ALGO, NELM, "
        "output, parallelisation) are execution",
    )
    kspacing_A: PositiveFloat = physics(..., "k-point spacing in 1/Å, 2π included, Γ-centred")
    spin_polarized: Bool = physics(False, "ISPIN=2 with the starting moments of magmoms")
    magmoms: dict[Element, Float] = physics({}, "starting moment per element in μB (MAGMOM)")
    vasp_cmd: NonEmpty = execution("vasp_std", "VASP executable for k-point grids")
    vasp_gamma_cmd: NonEmpty = execution("vasp_gam", "VASP executable for a Γ-only grid")
    parallel_cmd: str = execution("", "command before VASP, e.g. 'srun' or 'mpirun -np 32'")
    use_custodian: Bool = execution(True, "run VASP under custodian's error handlers")
    custodian_handlers: Annotated[list[str], AfterValidator(_handlers)] = execution(
        ["VaspErrorHandler", "UnconvergedErrorHandler"], "custodian handler names"
    )
    custodian_max_errors: Annotated[Int, Field(ge=0)] = execution(
        5, "custodian corrections at most per run"
    )
    wall_time_s: PositiveFloat = execution(..., "a run is stopped (and marked killed) after this")
    retries: list[dict[str, Any]] = execution(
        [], "INCAR changes tried in turn after an unconverged SCF, e.g. {incar: {ALGO: All}}"
    )

    def physics_part(self) -> dict[str, Any]:
        part = super().physics_part()
        part["incar"] = {k: v for k, v in part["incar"].items() if k not in EXECUTION_TAGS}
        return part

    def execution_part(self) -> dict[str, Any]:
        part = super().execution_part()
        part["incar"] = {k: v for k, v in self.incar.items() if k in EXECUTION_TAGS}
        return part


def potcar_file(settings: VaspSettings, pp_path: Path, element: str) -> Path:
    """The POTCAR ASE reads for ``element`` (its folder rule: ``potpaw_PBE.64/Fe_pv/POTCAR``,
    ``.Z`` if compressed)."""
    version = settings.potcar_version
    folder = {"lda": "potpaw_LDA" if version else "potpaw", "pbe": "potpaw_PBE"}.get(
        settings.potcar_functional.lower(), settings.potcar_functional
    )
    if version and settings.potcar_functional.lower() in ("lda", "pbe"):
        folder = f"{folder}.{version}"
    path = pp_path / folder / settings.potcars[element] / "POTCAR"
    return (
        path if path.is_file() or not path.with_suffix(".Z").is_file() else path.with_suffix(".Z")
    )


class VaspOracle(Oracle):
    """VASP single point: energy, forces and stress of one structure."""

    code = "vasp"
    Settings = VaspSettings
    quacc_module = "quacc.calculators.vasp"
    per_element_setting = "potcars"
    input_files = ("INCAR", "KPOINTS", "POSCAR", "POTCAR", "POTCAR.spec")
    settings: VaspSettings

    program = "VASP"
    file_hint = "put the POTCAR there, or fix potcars, potcar_functional or potcar_version"

    folder_setting = ("pp_path", "VASP_PP_PATH", "the folder that holds potpaw_PBE.64/")

    def physics_file(self, element: str) -> Path:
        return potcar_file(self.settings, self.files_folder(), element)

    @classmethod
    def classify_run(cls, directory: Path, returncode: int | None) -> tuple[str, str]:
        """(status, reason) of the VASP run whose files are in ``directory``."""
        return classify(directory, returncode)

    @classmethod
    def read_inputs(cls, directory: Path) -> Atoms:
        """POSCAR, put back in the input's atom order (VASP groups species)."""
        from ase.io import read

        atoms = read(Path(directory) / "POSCAR", format="vasp")
        return atoms[resort_order(Path(directory) / "ase-sort.dat", len(atoms))]

    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        last, retries = self.climb_retries(workdir, lambda s, folder: self._run(atoms, folder, s))
        if last.status != "ok":
            return self.result(last.status, error=last.reason, retries=retries)
        directory = last.directory
        results = read_results(directory)
        mismatch = _mismatch(atoms, results)
        if mismatch:
            return self.result("crashed", error=mismatch, retries=retries)
        return self.ok_result(
            results,
            pseudopotentials={el: self.settings.potcars[el] for el in _species(atoms)},
            kpoints=list(kpoints(atoms, self.settings.kspacing_A)),
            retries=retries,
            extra={
                "attempts": len(retries),
                "vasp_dir": str(directory),
                "energy_sigma0_eV": results["energy_sigma0"],
                "potcar_titles": potcar_titles(directory / "POTCAR"),
            },
        )

    def _run(self, atoms: Atoms, directory: Path, s: VaspSettings) -> Attempt:
        """One VASP run in ``directory`` (quacc's ``failed-quacc-*`` inside it when it fails);
        custodian's corrections go into the attempt's record."""
        from quacc import JobFailure, change_settings
        from quacc.runners.ase import Runner

        directory.mkdir(parents=True, exist_ok=True)
        returncode: int | None = 0
        with change_settings(self._quacc_settings(directory, s)):
            calc = make_calculator(atoms, s)
            try:
                Runner(calc.input_atoms, calc).run_calc()
            except JobFailure as exc:
                returncode = _returncode(exc.parent_error)
                directory = Path(exc.directory)
                log_error = f"{type(exc.parent_error).__name__}: {exc.parent_error}"
            else:
                log_error = ""
        write_potcar_spec(directory)
        self._program_version = vasp_version(directory) or self._program_version
        status, reason = classify(directory, returncode)
        first = log_error.splitlines()[0] if log_error else ""
        if status == "input_error" and "did not start" in reason and first:
            reason = f"{reason} ({first})"
        elif status == "ok" and first:  # quacc or custodian failed the run: never a label
            status, reason = "crashed", f"VASP finished but the run failed: {first}"
        changed = physics_changes(directory)
        if status == "ok" and changed:
            status, reason = "crashed", f"custodian changed the level of theory: {changed}"
        return Attempt(
            status, reason, directory, record={"custodian_corrections": _corrections(directory)}
        )

    def write_inputs(self, atoms: Atoms, directory: Path) -> Path:
        """Write INCAR, KPOINTS, POSCAR, POTCAR and POTCAR.spec for ``atoms`` as the run
        writes them, without running VASP; the POTCAR folder comes from ``pp_path``."""
        from quacc import change_settings

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with change_settings(self._quacc_settings(directory, self.settings)):
            calc = make_calculator(atoms, self.settings)
            calc.directory = str(directory)
            calc.write_input(calc.input_atoms)
        write_potcar_spec(directory)
        return directory

    def _quacc_settings(self, directory: Path, s: VaspSettings) -> dict[str, Any]:
        return {
            "VASP_PP_PATH": self.files_folder(),
            "VASP_CMD": s.vasp_cmd,
            "VASP_GAMMA_CMD": s.vasp_gamma_cmd,
            "VASP_PARALLEL_CMD": launch_prefix(s.wall_time_s, s.parallel_cmd),
            "VASP_USE_CUSTODIAN": s.use_custodian,
            "VASP_CUSTODIAN_HANDLERS": list(s.custodian_handlers),
            "VASP_CUSTODIAN_MAX_ERRORS": s.custodian_max_errors,
            "VASP_INCAR_COPILOT_MODE": "off",
            "RESULTS_DIR": directory,
            "SCRATCH_DIR": None,  # a user's QUACC_SCRATCH_DIR would put files elsewhere
            "NESTED_RESULTS": False,
            "CREATE_UNIQUE_DIR": False,
            "GZIP_FILES": False,
        }


def make_calculator(atoms: Atoms, settings: VaspSettings) -> Any:
    """quacc's ``Vasp`` calculator for one single point with these resolved settings (call it
    inside ``quacc.change_settings`` that sets ``VASP_PP_PATH`` and the commands)."""
    from quacc.calculators.vasp import Vasp

    spin = settings.spin_polarized
    atoms = with_moments(atoms, spin, settings.magmoms)
    incar = {tag.lower(): value for tag, value in settings.incar.items()}
    missing = sorted(set(atoms.get_chemical_symbols()) - set(settings.potcars))
    if missing:  # ASE would silently take the plain POTCAR of the element
        raise ValueError(f"no POTCAR for {missing} in the oracle's potcars setting")
    setups = {el: name[len(el) :] for el, name in settings.potcars.items()}
    return Vasp(
        atoms,
        preset=None,
        use_custodian=settings.use_custodian,
        incar_copilot_mode="off",
        copy_magmoms=False,
        mag_cutoff=0.0,
        pp=settings.potcar_functional,
        pp_version=settings.potcar_version,
        setups=setups,
        kpts=kpoints(atoms, settings.kspacing_A),
        gamma=True,
        **incar,
        nsw=0,
        ibrion=-1,
        isif=2,
        ispin=2 if spin else 1,
    )


def write_potcar_spec(directory: Path) -> None:
    """``POTCAR.spec``: the POTCAR name of each species in POSCAR order, one per line (a record
    that can be kept where the licensed POTCAR cannot)."""
    titles = potcar_titles(directory / "POTCAR")
    if titles:
        names = [title["title"].split()[1] for title in titles]
        (directory / "POTCAR.spec").write_text("\n".join(names) + "\n")


def potcar_titles(path: Path) -> list[dict[str, str]]:
    """Each dataset of a POTCAR: its TITEL (``PAW_PBE Fe_pv 02Aug2007``) and SHA-256."""
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    out = []
    for block in re.split(r"(?<=End of Dataset)\s*\n", text):
        title = re.search(r"TITEL\s*=\s*(.+)", block)
        if title:
            digest = hashlib.sha256(block.strip().encode()).hexdigest()
            out.append({"title": title.group(1).strip(), "sha256": digest})
    return out


def physics_changes(directory: Path) -> dict[str, list[Any]]:
    """Physics tags (any tag but EXECUTION_TAGS) that custodian changed: its backup of the
    INCAR written (``INCAR.orig``) against the INCAR that ran, as {tag: [written, ran]}; empty
    without custodian."""
    from pymatgen.io.vasp.inputs import Incar

    if not (directory / "INCAR.orig").is_file() or not (directory / "INCAR").is_file():
        return {}
    written = Incar.from_file(directory / "INCAR.orig")
    ran = Incar.from_file(directory / "INCAR")
    out = {}
    for tag in sorted((set(ran) | set(written)) - EXECUTION_TAGS):
        before, after = written.get(tag), ran.get(tag)
        if isinstance(before, str) and isinstance(after, str):
            same = before.lower() == after.lower()
        elif isinstance(before, (int, float)) and isinstance(after, (int, float)):
            same = math.isclose(float(before), float(after), rel_tol=1e-9, abs_tol=1e-12)
        else:
            same = before == after
        if not same:
            out[tag] = [before, after]
    return out


@functools.cache
def _known_tags() -> frozenset[str]:
    """Every INCAR tag ASE's Vasp calculator writes (lower case)."""
    from ase.calculators.vasp import create_input

    lists = [getattr(create_input, name) for name in dir(create_input) if name.endswith("_keys")]
    return frozenset(key for keys in lists for key in keys)


def _species(atoms: Atoms) -> list[str]:
    return sorted(set(atoms.get_chemical_symbols()))


def _mismatch(atoms: Atoms, results: dict[str, Any], tol_A: float = 1e-3) -> str | None:
    """Why the structure in vasprun.xml is not the input (a stale or mixed-up folder), if so:
    cell vectors, or positions through the cell's periodicity, more than ``tol_A`` apart."""
    cell_shift = float(np.abs(results["cell"] - atoms.cell.array).max())
    if cell_shift > tol_A:
        return f"the cell in vasprun.xml differs from the input by {cell_shift:.3g} Å"
    delta = atoms.cell.scaled_positions(results["positions"]) - atoms.get_scaled_positions()
    delta -= np.round(delta)
    moved = float(np.max(np.linalg.norm(delta @ atoms.cell.array, axis=1), initial=0.0))
    if moved > tol_A:
        return f"the positions in vasprun.xml differ from the input by {moved:.3g} Å"
    return None


def _returncode(error: BaseException | None) -> int | None:
    """VASP's exit code from ASE's or custodian's error message (None: unknown)."""
    found = re.search(r"returned an error: (-?\d+)|return code is (-?\d+)", str(error or ""))
    if not found:
        return None
    return int(found.group(1) or found.group(2))


def _corrections(directory: Path) -> list[dict[str, Any]]:
    """custodian's corrections (handler, errors, actions) from ``custodian.json``."""
    import json

    path = directory / "custodian.json"
    if not path.is_file():
        return []
    try:
        log = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    out = []
    for run in log:
        for c in run.get("corrections") or []:
            handler = c.get("handler")
            out.append(
                {
                    "handler": str(handler.get("@class") if isinstance(handler, dict) else handler),
                    "errors": [str(error) for error in c.get("errors") or []],
                    # None: the handler could not fix it; an action can hold a whole structure
                    # (a POSCAR swap): keep its start
                    "actions": [json.dumps(a, default=str)[:300] for a in c.get("actions") or []],
                }
            )
    return out
