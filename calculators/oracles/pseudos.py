"""Pseudopotentials for Quantum ESPRESSO: one checked file per element in one folder.

``al-loop setup pseudos`` installs Debian's Quantum ESPRESSO when ``pw.x``/``ld1.x`` are missing
(as root), then builds a folder for a family: Fe and Ni copied from Debian's
quantum-espresso-data, Ca generated with ``ld1.x`` from an input committed as text
(``configs/pseudos/``; no Ca pseudopotential ships with Debian or on PyPI). Every file is
checked before use: its valence against the family's, and a quick SCF of a one-atom cell
through quacc's espresso recipe. Users with SSSP or PSlibrary point the oracle at their own
folder instead.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ase.build import bulk

log = logging.getLogger(__name__)

DEBIAN_PACKAGES = ("quantum-espresso", "quantum-espresso-data", "libopenblas0-serial")
DEBIAN_PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
GENERATOR_INPUTS = Path(__file__).resolve().parents[2] / "configs" / "pseudos"


@dataclass(frozen=True)
class Pseudo:
    """One element's file: copied from Debian's folder, or generated from ``ld1_input``."""

    filename: str
    valence: float
    ld1_input: str | None = None


#: Families: ``fast`` (cheap, 25-30 Ry: tests) and ``semicore`` (production at 0-500 GPa;
#: Fe needs >= 65 Ry and Ni >= 75 Ry, ENVIRONMENT.md).
FAMILIES: dict[str, dict[str, Pseudo]] = {
    "fast": {
        "Ca": Pseudo("Ca.pbe-spn-rrkjus.UPF", 10, "Ca.pbe-spn-rrkjus.ld1.in"),
        "Fe": Pseudo("Fe.pbe-nd-rrkjus.UPF", 8),
        "Ni": Pseudo("Ni.pbe-nd-rrkjus.UPF", 10),
    },
    "semicore": {
        "Ca": Pseudo("Ca.pbe-spn-rrkjus.UPF", 10, "Ca.pbe-spn-rrkjus.ld1.in"),
        "Fe": Pseudo("Fe.pbe-spn-rrkjus_psl.0.2.1.UPF", 16),
        "Ni": Pseudo("Ni.pbe-spn-kjpaw_psl.1.0.0.UPF", 18),
    },
}

#: One-atom cells for the quick SCF (Å): fcc Ca, bcc Fe, fcc Ni near ambient volume.
CHECK_CELLS = {"Ca": ("fcc", 5.53), "Fe": ("bcc", 2.83), "Ni": ("fcc", 3.52)}


class PseudoError(RuntimeError):
    """A pseudopotential could not be installed, generated or checked; the message says why."""


def install_espresso() -> None:
    """Install Debian's Quantum ESPRESSO when ``pw.x`` or ``ld1.x`` is missing (root only)."""
    if shutil.which("pw.x") and shutil.which("ld1.x"):
        return
    command = ["apt-get", "install", "-y", *DEBIAN_PACKAGES]
    if os.geteuid() != 0:
        raise PseudoError(f"pw.x/ld1.x not found; as root run: {' '.join(command)}")
    log.info("installing %s", " ".join(DEBIAN_PACKAGES))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:  # a stale package index: refresh once
        subprocess.run(["apt-get", "update"], capture_output=True, env=env)
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not shutil.which("pw.x"):
        raise PseudoError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")


def upf_valence(path: Path) -> float:
    """The valence charge in a UPF file (v2 ``z_valence="..."``, or v1 ``Z valence``)."""
    text = path.read_text(errors="replace")
    match = re.search(r'z_valence\s*=\s*"\s*([-+0-9.eEdD]+)', text, re.IGNORECASE)
    if match is None:
        match = re.search(r"([-+0-9.eEdD]+)\s+Z valence", text)
    if match is None:
        raise PseudoError(f"{path}: no valence charge found; is it a UPF file?")
    return float(match.group(1).replace("d", "e").replace("D", "e"))


def generate(ld1_input: Path, out_dir: Path) -> Path:
    """Run ``ld1.x`` on ``ld1_input`` in a scratch folder; returns the UPF moved to ``out_dir``."""
    text = ld1_input.read_text()
    match = re.search(r"file_pseudopw\s*=\s*'([^']+)'", text)
    if match is None:
        raise PseudoError(f"{ld1_input}: no file_pseudopw = '...' in &inputp")
    work = out_dir / f".ld1-{ld1_input.stem}"
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["ld1.x"], input=text, capture_output=True, text=True, cwd=work)
    (work / "ld1.out").write_text(done.stdout + done.stderr)
    upf = work / match.group(1)
    if done.returncode != 0 or not upf.is_file():
        raise PseudoError(
            f"ld1.x failed on {ld1_input} (exit {done.returncode}); output in {work / 'ld1.out'}"
        )
    target = out_dir / upf.name
    shutil.move(upf, target)
    shutil.rmtree(work, ignore_errors=True)
    return target


def check_scf(element: str, pseudo_dir: Path, filename: str, workdir: Path) -> float:
    """Energy (eV) of a one-atom cell with this file, labelled by the Quantum ESPRESSO oracle
    (the ``fast`` preset, coarse k-points, no retries); raises :class:`PseudoError` unless ok."""
    from calculators.oracles.registry import make_oracle

    lattice, a = CHECK_CELLS[element]
    overrides = {
        "pseudo_dir": str(pseudo_dir),
        "pseudopotentials": {element: filename},
        "kspacing_A": 1.0,
        "retries": [],
        "wall_time_s": 600,
    }
    result = make_oracle("espresso", "fast", overrides).label(bulk(element, lattice, a=a), workdir)
    if result.status != "ok":
        where = result.retries[-1]["directory"] if result.retries else workdir
        raise PseudoError(
            f"quick SCF of {element} with {pseudo_dir / filename} failed ({result.status}: "
            f"{(result.error or '').strip().splitlines()[-1:]}); files in {where}"
        )
    return float(result.energy_eV)


def build_pseudo_dir(out_dir: Path, family: str = "fast", check: bool = True) -> dict[str, str]:
    """Fill ``out_dir`` with the family's files (generated or copied), each checked; returns
    {element: filename}. Files already there are checked again, not rebuilt."""
    if family not in FAMILIES:
        raise PseudoError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    install_espresso()
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = {}
    for element, pseudo in FAMILIES[family].items():
        path = out_dir / pseudo.filename
        if not path.is_file():
            if pseudo.ld1_input:
                path = generate(GENERATOR_INPUTS / pseudo.ld1_input, out_dir)
            else:
                source = DEBIAN_PSEUDO_DIR / pseudo.filename
                if not source.is_file():
                    raise PseudoError(f"{source} missing: is quantum-espresso-data installed?")
                shutil.copyfile(source, path)
        valence = upf_valence(path)
        if abs(valence - pseudo.valence) > 1e-6:
            raise PseudoError(
                f"{path}: valence {valence:g}, the {family} family needs {pseudo.valence:g}"
            )
        if check:
            energy = check_scf(element, out_dir, pseudo.filename, out_dir / ".checks" / element)
            log.info("%s: %s, valence %g, quick SCF %.3f eV", element, path.name, valence, energy)
        chosen[element] = pseudo.filename
    shutil.rmtree(out_dir / ".checks", ignore_errors=True)
    return chosen
