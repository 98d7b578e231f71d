"""What a VASP run ended as, read from its folder (``vasprun.xml``, ``OUTCAR``, ``vasp.out``).

The same statuses as every oracle (:mod:`calculators.oracles.base`); only ``ok`` trains a model:

- ``ok``: a complete ``vasprun.xml`` whose last SCF converged (fewer steps than NELM, the test
  custodian's ``UnconvergedErrorHandler`` makes), with forces and stress;
- ``unconverged``: the last SCF ran NELM steps (or OUTCAR says ``EDIFF was not reached``);
- ``input_error``: VASP never started (its input could not be written), or ``vasp.out`` names
  an input problem (:data:`INPUT_ERRORS`); warnings VASP goes on after (:data:`WARNINGS`)
  are not failures;
- ``crashed``: ``vasp.out`` names another error of custodian's ``VaspErrorHandler`` table, or
  the run finished without usable results;
- ``killed``: a signal or ``timeout``'s 124/137, or output that stops before VASP's timing
  summary with no error named.

Error texts come from custodian's ``VaspErrorHandler.error_msgs`` (the field's catalogue of
VASP failures), so a message custodian knows is named the way custodian names it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: custodian error keys that mean the input is wrong rather than the run unlucky.
INPUT_ERRORS = frozenset(
    {"read_error", "triple_product", "incorrect_shift", "elf_kpar", "dfpt_ncore"}
)
#: custodian keys of messages VASP prints and carries on after (warnings): never a failure.
WARNINGS = frozenset({"subspacematrix", "eddrmm", "auto_nbands", "symprec_noise", "elf_ncl"})
#: Exit codes of a process stopped from outside: timeout's 124 and 137 (signals are negative).
KILLED_CODES = (124, 137)
FINISHED = "General timing and accounting"
OUTPUT_FILES = ("vasp.out", "std_err.txt", "vasp.err")


def vasp_errors(text: str) -> list[str]:
    """custodian's names of the VASP errors and warnings found in ``text``, in table order."""
    from custodian.vasp.handlers import VaspErrorHandler

    return [
        name
        for name, messages in VaspErrorHandler.error_msgs.items()
        if any(message in text for message in messages)
    ]


def classify(directory: str | Path, returncode: int | None = None) -> tuple[str, str]:
    """(status, reason) of the VASP run in ``directory``; ``returncode`` None: unknown."""
    directory = Path(directory)
    log = "\n".join(_read(directory / name) or "" for name in OUTPUT_FILES)
    outcar = _read(directory / "OUTCAR")
    vasprun, problem = _vasprun(directory / "vasprun.xml")
    errors = [name for name in vasp_errors(log) if name not in WARNINGS]
    if vasprun is not None:
        if not vasprun.converged_electronic:
            steps = len(vasprun.ionic_steps[-1]["electronic_steps"])
            return "unconverged", f"SCF not converged after {steps} steps (NELM)"
        if returncode not in (0, None):
            return "crashed", f"VASP finished but exited {returncode}"
        last = vasprun.ionic_steps[-1]
        if last.get("forces") is None or last.get("stress") is None:
            return "crashed", "vasprun.xml has no forces or no stress (ISIF=0?)"
        return "ok", ""
    if outcar and "EDIFF was not reached (unconverged)" in outcar.rsplit("aborting loop", 1)[-1]:
        return "unconverged", "OUTCAR: EDIFF was not reached (unconverged)"
    if returncode is not None and (returncode < 0 or returncode in KILLED_CODES):
        return "killed", f"stopped by a signal or a time limit (exit {returncode})"
    if errors:
        name = errors[0]
        kind = "input_error" if name in INPUT_ERRORS else "crashed"
        return kind, f"VASP error {name!r} (custodian's name): {_first_line(log, name)}"
    if not log.strip() and outcar is None and problem == "missing":
        if not (directory / "INCAR").is_file():
            return "input_error", "VASP did not start: its input could not be written"
        return "crashed", f"VASP wrote no output (exit {returncode})"
    if outcar is None or FINISHED not in outcar:
        return "killed", f"the output ends before VASP's timing summary (vasprun.xml {problem})"
    return "crashed", f"VASP finished but vasprun.xml is {problem}"


def read_results(directory: str | Path) -> dict[str, Any]:
    """Energy (the free energy, consistent with the forces), forces and stress of the last ionic
    step, read by ASE (which handles VASP's PSTRESS and vdW quirks), in ASE units and in the
    input's atom order (ASE's ``ase-sort.dat``, written with the inputs, undoes VASP's sort)."""
    from ase.io import read

    directory = Path(directory)
    atoms = read(directory / "vasprun.xml", index=-1, format="vasp-xml")
    results = atoms.calc.results
    order = resort_order(directory / "ase-sort.dat", len(atoms))
    return {
        "energy": float(results["free_energy"]),
        "energy_sigma0": float(results["energy"]),
        "forces": np.asarray(results["forces"], dtype=float)[order],
        "stress": np.asarray(results["stress"], dtype=float),
        "positions": atoms.positions[order],
        "cell": atoms.cell.array,
    }


def resort_order(path: Path, n_atoms: int) -> np.ndarray:
    """ASE's resort list (second column of ``ase-sort.dat``): output row of each input atom."""
    if not path.is_file():
        return np.arange(n_atoms)
    order = np.array(
        [int(line.split()[1]) for line in path.read_text().split("\n") if line.strip()]
    )
    if sorted(order) != list(range(n_atoms)):
        raise ValueError(f"{path} does not describe {n_atoms} atoms")
    return order


def vasp_version(directory: str | Path) -> str | None:
    """The VASP version written in ``vasprun.xml`` (``6.3.0``), if any."""
    text = _read(Path(directory) / "vasprun.xml") or ""
    found = re.search(r'<i name="version" type="string">\s*([^<\s]+)', text)
    return found.group(1) if found else None


def _vasprun(path: Path) -> tuple[Any, str]:
    """(pymatgen Vasprun, "") or (None, what is wrong with the file)."""
    if not path.is_file():
        return None, "missing"
    from pymatgen.io.vasp.outputs import Vasprun

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns of unconverged runs: classified here
            run = Vasprun(
                str(path),
                parse_dos=False,
                parse_eigen=False,
                parse_projected_eigen=False,
                parse_potcar_file=False,
                exception_on_bad_xml=True,
            )
    except Exception as exc:  # a truncated file, the usual case: an XML syntax error
        return None, f"unreadable ({type(exc).__name__})"
    if not run.ionic_steps:
        return None, "without an ionic step"
    return run, ""


def _first_line(text: str, name: str) -> str:
    from custodian.vasp.handlers import VaspErrorHandler

    for line in text.splitlines():
        if any(message in line for message in VaspErrorHandler.error_msgs[name]):
            return line.strip()
    return ""


def _read(path: Path) -> str | None:
    return path.read_text(errors="replace") if path.is_file() else None
