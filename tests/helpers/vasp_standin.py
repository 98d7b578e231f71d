"""A stand-in for the VASP binary (the one thing that cannot exist here): it checks that the
four input files VASP reads are present, then behaves as one VASP outcome, written into the
run folder from real VASP output stored with ASE (``ase/test/testdata/vasp``).

Usage: ``python vasp_standin.py MODE [MESSAGE]``, MODE one of

- ``finished``: the stored 2-atom diamond single point, plus the complete OUTCAR of another
  stored run (ASE reads only the SCF convergence, version and band count from it, for a
  non-spin run; every number of the label comes from vasprun.xml);
- ``unconverged``: the stored run with NELM lowered to the steps it took (the SCF ran out);
- ``error MESSAGE``: prints a VASP error message (e.g. from custodian's table), exits 1;
- ``sleep``: runs for 60 s (for the wall-time guard); ``silent``: exits 0, writing nothing.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import ase

TESTDATA = Path(ase.__file__).parent / "test" / "testdata" / "vasp"
STORED = TESTDATA / "vasprun_pstress.xml"


def unconverged_vasprun() -> str:
    """The stored run with NELM set to the SCF steps its single ionic step took."""
    text = STORED.read_text()
    steps = text.count("<scstep>")
    return re.sub(r'(<i type="int" name="NELM">)\s*\d+', rf"\g<1>    {steps}", text)


def main(mode: str, message: str = "") -> int:
    missing = [f for f in ("INCAR", "POSCAR", "KPOINTS", "POTCAR") if not Path(f).is_file()]
    if missing:
        print(f" ERROR: stand-in VASP: missing input files {missing}")
        return 1
    print(" running on    1 total cores (al-loop test stand-in for VASP)")
    if mode == "finished":
        shutil.copy(STORED, "vasprun.xml")
        shutil.copy(TESTDATA / "OUTCAR_example_1", "OUTCAR")
        return 0
    if mode == "unconverged":
        Path("vasprun.xml").write_text(unconverged_vasprun())
        return 0
    if mode == "error":
        print(f" {message}")
        return 1
    if mode == "sleep":
        time.sleep(60)
        return 0
    if mode == "silent":
        return 0
    print(f"unknown stand-in mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
