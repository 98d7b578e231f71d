"""Quantum ESPRESSO (pw.x) through quacc's espresso ``static_job``, with quacc's workflow engine
off, inside the same Firetasks as every oracle.

Energy, forces and stress always (``tstress``, ``tprnfor``: quacc sets neither). Smearing for
metals; spin only when ``spin_polarized`` (the moments of ``magmoms``; ASE's ``bulk()`` sets
moments silently, so they are always overwritten). K-points from a spacing in Å⁻¹ (VASP's
KSPACING convention, 2π included) so that cells of any size get the same sampling. Each run is
classified (:mod:`calculators.oracles.espresso_output`); an unconverged SCF climbs the
``retries`` ladder (each rung's changes and outcome are kept in the label's ``retries``) and
never becomes ``ok``.
A run longer than ``wall_time_s`` is stopped by ``timeout`` and marked ``killed``; the files of
every attempt stay in the label's folder.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from calculators.oracles.base import Attempt, LabelResult, Oracle, launch_prefix, merge_settings
from calculators.oracles.espresso_output import classify

#: Settings keys and what they mean (the presets in configs/presets/espresso/ set them all).
SETTINGS = {
    "pseudo_dir": "folder of the UPF files (null: $AL_LOOP_PSEUDO_DIR)",
    "pseudopotentials": "UPF file name per element",
    "ecutwfc_Ry": "wave-function cut-off",
    "ecutrho_Ry": "charge-density cut-off",
    "kspacing_A": "k-point spacing in 1/Å, 2π included (VASP's KSPACING)",
    "smearing": "pw.x smearing (mv, gaussian, ...)",
    "degauss_Ry": "smearing width",
    "spin_polarized": "collinear spin with the starting moments of magmoms",
    "magmoms": "starting magnetisation per element, in [-1, 1] (pw.x's starting_magnetization)",
    "conv_thr_Ry": "SCF convergence threshold",
    "mixing_beta": "charge mixing",
    "electron_maxstep": "SCF iterations at most",
    "input_data": "any other pw.x namelist keys, nested by namelist",
    "parallel_cmd": "command before pw.x, e.g. 'mpirun -np 4'",
    "pw_args": "arguments after pw.x, e.g. '-nk 2'",
    "wall_time_s": "a run is stopped (and marked killed) after this long",
    "retries": "changes tried in turn after an unconverged SCF (keys of this table)",
}


class EspressoOracle(Oracle):
    """pw.x SCF: energy, forces and stress of one structure."""

    code = "espresso"
    quacc_module = "quacc.recipes.espresso.core"
    per_element_setting = "pseudopotentials"

    @classmethod
    def settings_problem(cls, settings: dict[str, Any]) -> tuple[str, str] | None:
        for key in settings:
            if key not in SETTINGS:
                hint = difflib.get_close_matches(key, list(SETTINGS), n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                return key, f"Quantum ESPRESSO has no setting {key!r}{suggestion}"
        for k, rung in enumerate(settings.get("retries") or []):
            unknown = sorted(set(rung) - set(SETTINGS) - {"mixing_mode", "diagonalization"})
            if unknown:
                return f"retries[{k}]", f"unknown keys {unknown} in a retry"
        if not settings.get("pseudopotentials"):
            return "pseudopotentials", "give a UPF file name per element"
        return None

    _pw_version = ""  # read from pw.out ("v.6.7MaX") once pw.x has run

    def _note_version(self, output: str | None) -> str | None:
        found = re.search(r"Program PWSCF (v\.\S+)", output or "")
        if found:
            self._pw_version = found.group(1)
        return output

    def version(self) -> str:
        from quacc import __version__

        return f"pw.x {self._pw_version or '(version not read yet)'} (quacc {__version__})"

    def pseudo_dir(self) -> Path:
        value = self.settings.get("pseudo_dir") or os.environ.get("AL_LOOP_PSEUDO_DIR")
        if not value:
            raise FileNotFoundError(
                "no pseudopotential folder: set oracle.overrides.pseudo_dir or "
                "$AL_LOOP_PSEUDO_DIR (`al-loop setup pseudos DIR` builds one)"
            )
        return Path(value).expanduser().resolve()

    def _compute(self, atoms: Atoms, workdir: Path) -> LabelResult:
        last, retries = self.climb_retries(workdir, lambda s, folder: self._run(atoms, folder, s))
        if last.status != "ok" or last.results is None:
            return self.result(last.status, error=last.reason, retries=retries)
        return self.ok_result(
            last.results,
            pseudopotentials=self._pseudos(atoms),
            kpoints=list(kpoints(atoms, self.settings["kspacing_A"])),
            retries=retries,
            extra={"attempts": len(retries), "pw_out": str(last.directory)},
        )

    def _pseudos(self, atoms: Atoms) -> dict[str, str]:
        table = self.settings["pseudopotentials"]
        missing = sorted(set(atoms.get_chemical_symbols()) - set(table))
        if missing:
            raise ValueError(f"no pseudopotential for {missing} in the oracle's settings")
        return {el: table[el] for el in sorted(set(atoms.get_chemical_symbols()))}

    def _run(self, atoms: Atoms, workdir: Path, s: dict[str, Any]) -> Attempt:
        """One pw.x run in ``workdir`` (quacc's ``failed-quacc-*`` inside it when it fails)."""
        from quacc import JobFailure, change_settings
        from quacc.recipes.espresso.core import static_job

        atoms = atoms.copy()
        spin = bool(s.get("spin_polarized"))
        moments = s.get("magmoms") or {}
        atoms.set_initial_magnetic_moments(
            [float(moments.get(el, 0.0)) if spin else 0.0 for el in atoms.get_chemical_symbols()]
        )
        input_data = merge_settings(
            {
                "control": {"tstress": True, "tprnfor": True},
                "system": {
                    "ecutwfc": s["ecutwfc_Ry"],
                    "ecutrho": s["ecutrho_Ry"],
                    "occupations": "smearing",
                    "smearing": s["smearing"],
                    "degauss": s["degauss_Ry"],
                },
                "electrons": {
                    "conv_thr": s["conv_thr_Ry"],
                    "mixing_beta": s["mixing_beta"],
                    "electron_maxstep": s["electron_maxstep"],
                    **{k: s[k] for k in ("mixing_mode", "diagonalization") if k in s},
                },
            },
            s.get("input_data") or {},
        )
        prefix = launch_prefix(s["wall_time_s"], s.get("parallel_cmd"))
        workdir.mkdir(parents=True, exist_ok=True)
        quacc_settings = {
            "ESPRESSO_PSEUDO": str(self.pseudo_dir()),
            "ESPRESSO_PARALLEL_CMD": (prefix, s.get("pw_args") or ""),
            "RESULTS_DIR": workdir,
            "SCRATCH_DIR": None,  # a user's QUACC_SCRATCH_DIR would put files elsewhere
            "NESTED_RESULTS": False,
            "CREATE_UNIQUE_DIR": False,
            "GZIP_FILES": False,
        }
        try:
            with change_settings(quacc_settings):
                out = static_job(
                    atoms,
                    preset=None,
                    input_data=input_data,
                    pseudopotentials=self._pseudos(atoms),
                    kpts=kpoints(atoms, s["kspacing_A"]),
                )
        except JobFailure as exc:
            error = exc.parent_error
            code = error.returncode if isinstance(error, subprocess.CalledProcessError) else None
            text = self._note_version(_read(Path(exc.directory) / "pw.out"))
            status, reason = classify(text, code)
            if code is None and text is None:
                reason = f"{reason} ({type(error).__name__}: {error})"
            return Attempt(status, reason, Path(exc.directory))
        directory = Path(out.get("dir_name") or workdir)
        status, reason = classify(self._note_version(_read(directory / "pw.out")), 0)
        return Attempt(status, reason, directory, results=out["results"])


def kpoints(atoms: Atoms, spacing_A: float) -> tuple[int, int, int]:
    """Monkhorst-Pack divisions n_i = max(1, ceil(|b_i| / spacing)), b_i with 2π (VASP's
    KSPACING): the same sampling density whatever the cell size."""
    lengths = 2 * math.pi * np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    return tuple(max(1, math.ceil(length / spacing_A)) for length in lengths)  # type: ignore[return-value]


def _read(path: Path) -> str | None:
    if not path.is_file():
        return None
    return path.read_text(errors="replace")
