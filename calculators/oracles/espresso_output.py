"""What a pw.x run ended as, read from its exit code and its output (``pw.out``).

Peer tools accept an unconverged SCF as a result; here every run gets one status (the label
statuses of :mod:`calculators.oracles.base`), and only ``ok`` can become a training label:

- ``ok``: exit 0, ``JOB DONE.`` printed, a total energy printed;
- ``unconverged``: ``convergence NOT achieved`` (pw.x exits 2);
- ``input_error``: an ``Error in routine`` block from a routine that reads the input or the
  pseudopotentials (exit 1), or no output at all because the input could not be written;
- ``crashed``: an ``Error in routine`` block from any other routine, or another non-zero exit
  with an error block;
- ``killed``: a signal, ``timeout``'s 124/137, or no ``JOB DONE.`` and no error block.

ASE's reader checks none of this (docs/notes/quacc-espresso-vasp.md), so it is done here.
"""

from __future__ import annotations

import re

#: Routines whose errors mean the input (or a pseudopotential file) is wrong.
INPUT_ROUTINES = re.compile(
    r"^(readpp|read_pseudo.*|read_namelists|read_cards|iosys|card_.*|read_upf.*|import_upf|"
    r"upf_.*|cell_base_init|input_.*|set_.*cutoff.*)$"
)
ERROR_BLOCK = re.compile(r"Error in routine\s+(\S+)\s*\(\s*-?\d+\s*\):\s*\n\s*(.+)")
#: Exit codes of a process stopped from outside: negative (a signal), timeout's 124 and 137.
KILLED_CODES = (124, 137)


def classify(output: str | None, returncode: int | None) -> tuple[str, str]:
    """(status, reason) of a pw.x run from its ``pw.out`` text (None: none was written) and its
    exit code (None: it never started)."""
    if output is None or not output.strip():
        if returncode is None:
            return "input_error", "pw.x did not start: its input could not be written"
        if returncode < 0 or returncode in KILLED_CODES:
            return "killed", f"stopped by a signal before writing any output (exit {returncode})"
        return "crashed", f"pw.x exited {returncode} without any output"
    if "convergence NOT achieved" in output:
        steps = re.findall(r"convergence NOT achieved after\s+(\d+)\s+iterations", output)
        after = f" after {steps[-1]} iterations" if steps else ""
        return "unconverged", f"SCF convergence NOT achieved{after}"
    error = ERROR_BLOCK.search(output)
    if error:
        routine, message = error.group(1), error.group(2).strip()
        kind = "input_error" if INPUT_ROUTINES.match(routine) else "crashed"
        return kind, f"Error in routine {routine}: {message}"
    if returncode is not None and (returncode < 0 or returncode in KILLED_CODES):
        return "killed", f"stopped by a signal or a time limit (exit {returncode})"
    if "JOB DONE." not in output:
        return "killed", "the output ends before JOB DONE: the run was stopped"
    if returncode not in (0, None):
        return "crashed", f"pw.x printed JOB DONE but exited {returncode}"
    if not re.search(r"^!\s+total energy\s+=", output, re.MULTILINE):
        return "crashed", "JOB DONE without a converged total energy"
    return "ok", ""
