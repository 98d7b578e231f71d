"""Liquid properties from MD in LAMMPS: self-diffusion coefficients from the mean square
displacement, and radial distribution functions.

One run: the cell is melted at twice the target temperature under the target pressure (NPT),
brought to the target (NPT), then sampled at constant volume (Nosé-Hoover NVT with 0.5 ps
damping). The MSD of each element (the centre of mass's drift removed) is read every
``sample_every`` steps; D is the slope of MSD(t)/6 over the second half of the sampled run, its
error the standard error of the slopes of that half's four quarters. The RDF (all pairs) is
LAMMPS's ``compute rdf`` averaged over the sampled run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers
from pymatgen.core import Composition

from al_loop.phase.candidates import atomic_volume
from calculators.models.student.lammps_run import create_cell, lammps_instance

#: Å²/ps -> m²/s.
A2_PER_PS = 1e-8
#: Below this D (m²/s) a run is called solid: liquid metals diffuse at ~1e-9, crystals at
#: < 1e-12 on MD time scales.
LIQUID_D_M2_S = 1e-10


def start_lammps(lmp: Any, atoms: Atoms, elements: Sequence[str]) -> None:
    """``atoms`` in ``lmp`` (types 1..n for ``elements``) with the elements' real masses."""
    create_cell(lmp, atoms, elements)
    for k, element in enumerate(elements):
        lmp.command(f"mass {k + 1} {float(atomic_masses[atomic_numbers[element]])!r}")


def start_cell(formula: str, n_atoms: int, seed: int = 0) -> Atoms:
    """A random alloy of ``formula`` (``Fe``, ``FeNi3``) on an fcc lattice of at least
    ``n_atoms`` sites (cubic cells repeated evenly), at its elements' average atomic volume;
    the MD melts it."""
    composition = Composition(formula)
    repeat = max(1, math.ceil((n_atoms / 4) ** (1 / 3) - 1e-9))
    atoms = bulk("Cu", "fcc", a=1.0, cubic=True) * repeat
    fractions = {str(e): composition.get_atomic_fraction(e) for e in composition.elements}
    counts = {e: round(f * len(atoms)) for e, f in fractions.items()}
    first = next(iter(counts))
    counts[first] += len(atoms) - sum(counts.values())
    symbols = [e for e, n in counts.items() for _ in range(n)]
    np.random.default_rng(seed).shuffle(symbols)
    atoms.set_chemical_symbols(symbols)
    volume = sum(f * atomic_volume(e) for e, f in fractions.items())
    atoms.set_cell(atoms.cell * (volume * len(atoms) / atoms.get_volume()) ** (1 / 3), True)
    return atoms


@dataclass(frozen=True)
class LiquidSettings:
    temperature_K: float
    pressure_GPa: float = 0.0
    timestep_fs: float = 1.0
    melt_steps: int = 2000
    equilibration_steps: int = 2000
    steps: int = 10000
    sample_every: int = 50
    rdf_bins: int = 200
    rdf_cutoff_A: float = 6.0


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(t, y, 1)[0]) if len(t) >= 2 else float("nan")


def diffusion(times_ps: np.ndarray, msd_A2: np.ndarray) -> tuple[float, float]:
    """D (m²/s) from the slope of ``msd_A2``/6 over the second half of the run, and its
    standard error from the slopes of that half's four quarters."""
    half = times_ps >= times_ps[-1] / 2
    t, y = times_ps[half], msd_A2[half]
    slopes = [
        _slope(tt, yy) for tt, yy in zip(np.array_split(t, 4), np.array_split(y, 4), strict=True)
    ]
    error = float(np.std(slopes, ddof=1) / 2) if len(t) >= 8 else float("nan")
    return _slope(t, y) / 6 * A2_PER_PS, error / 6 * A2_PER_PS


def liquid_md(
    pair: Sequence[str],
    elements: Sequence[str],
    atoms: Atoms,
    settings: LiquidSettings,
    seed: int = 0,
) -> dict[str, Any]:
    """MD of ``atoms`` with the LAMMPS pair style ``pair`` (commands, types 1..n holding
    ``elements``): the MSD per element over time, the RDF, the mean temperature, pressure
    and volume of the sampled run, and D per element with its error (m²/s)."""
    s = settings
    lmp = lammps_instance()
    try:
        start_lammps(lmp, atoms, elements)
        present = [e for e in elements if e in set(atoms.get_chemical_symbols())]
        bar = s.pressure_GPa * 1e4
        n_repeat = s.steps // 10
        for command in (
            *pair,
            f"timestep {s.timestep_fs / 1000!r}",
            f"velocity all create {2 * s.temperature_K!r} {seed + 1} mom yes rot yes dist gaussian",
            "thermo_style custom step temp press vol pe",
            f"fix integrate all npt temp {2 * s.temperature_K!r} {s.temperature_K!r} "
            f"{100 * s.timestep_fs / 1000!r} iso {bar!r} {bar!r} {1000 * s.timestep_fs / 1000!r}",
            f"run {s.melt_steps}",
            "unfix integrate",
            f"fix integrate all npt temp {s.temperature_K!r} {s.temperature_K!r} "
            f"{100 * s.timestep_fs / 1000!r} iso {bar!r} {bar!r} {1000 * s.timestep_fs / 1000!r}",
            f"run {s.equilibration_steps}",
            "unfix integrate",
            "reset_timestep 0",  # the RDF's average ends on step ``steps``
            f"comm_modify cutoff {s.rdf_cutoff_A + 3.0!r}",
            f"fix integrate all nvt temp {s.temperature_K!r} {s.temperature_K!r} 0.5",
            *(f"group g{e} type {elements.index(e) + 1}" for e in present),
            *(f"compute msd{e} g{e} msd com yes" for e in present),
            f"compute rdf all rdf {s.rdf_bins} cutoff {s.rdf_cutoff_A!r}",
            f"fix rdf all ave/time 10 {n_repeat} {n_repeat * 10} c_rdf[*] mode vector",
        ):
            lmp.command(command)
        times, msd, thermo = [0.0], {e: [0.0] for e in present}, []
        for done in range(s.sample_every, s.steps + 1, s.sample_every):
            lmp.command(f"run {s.sample_every}")
            times.append(done * s.timestep_fs / 1000)
            for e in present:
                msd[e].append(float(lmp.extract_compute(f"msd{e}", 0, 1)[3]))
            thermo.append([lmp.get_thermo(k) for k in ("temp", "press", "vol")])
        rows = s.rdf_bins
        r = np.array([lmp.extract_fix("rdf", 0, 2, i, 0) for i in range(rows)])
        g = np.array([lmp.extract_fix("rdf", 0, 2, i, 1) for i in range(rows)])
    finally:
        lmp.close()
    t = np.asarray(times)
    thermo_mean = np.mean(np.asarray(thermo), axis=0)
    coefficients = {}
    for e in present:
        d, err = diffusion(t, np.asarray(msd[e]))
        coefficients[e] = {"D_m2_s": d, "D_error_m2_s": err}
    return {
        "settings": asdict(s),
        "n_atoms": len(atoms),
        "formula": atoms.get_chemical_formula(),
        "temperature_K": float(thermo_mean[0]),
        "pressure_GPa": float(thermo_mean[1]) / 1e4,
        "volume_A3_atom": float(thermo_mean[2]) / len(atoms),
        "diffusion": coefficients,
        "times_ps": t.tolist(),
        "msd_A2": {e: msd[e] for e in present},
        "rdf": {"r_A": r.tolist(), "g": g.tolist()},
        "rdf_first_peak_A": float(r[int(np.argmax(g))]),
        "liquid": all(c["D_m2_s"] > LIQUID_D_M2_S for c in coefficients.values()),
    }
