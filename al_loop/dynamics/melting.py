"""The melting point by solid-liquid coexistence in LAMMPS: half an elongated crystal melted,
then constant enthalpy and pressure (along z) until the temperature settles at T_m; the solid
fraction followed by common neighbour analysis, and the run repeated with another guess when
one phase takes the whole cell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk

from al_loop.dynamics.liquid import start_lammps
from al_loop.phase.candidates import atomic_volume
from calculators.models.student.lammps_run import lammps_instance

#: The CNA cutoff between the first and second neighbour shells, in lattice constants
#: (cubic a; hcp: its a).
CNA_CUTOFF = {"fcc": 0.854, "bcc": 1.207, "hcp": 1.207}


@dataclass(frozen=True)
class MeltingSettings:
    """Solid-liquid coexistence: ``guess_K`` near the melting point (the crystal is
    equilibrated there and the liquid half melted at twice it)."""

    pressure_GPa: float
    guess_K: float
    phase: str = "fcc"
    repeat: tuple[int, int, int] = (4, 4, 10)
    timestep_fs: float = 1.0
    solid_steps: int = 2000
    melt_steps: int = 2000
    steps: int = 20000
    sample_every: int = 100


def coexistence_cell(element: str, phase: str, repeat: Sequence[int]) -> Atoms:
    """A crystal of ``element`` (fcc, bcc: cubic cells; hcp: orthorhombic ones) elongated
    along z, at the element's reference volume per atom."""
    if phase not in CNA_CUTOFF:
        raise ValueError(f"melting: phase {phase!r} is not one of {', '.join(CNA_CUTOFF)}")
    if phase == "hcp":
        unit = bulk(element, "hcp", a=1.0, c=math.sqrt(8 / 3), orthorhombic=True)
    else:
        unit = bulk(element, phase, a=1.0, cubic=True)
    scale = (atomic_volume(element) * len(unit) / unit.get_volume()) ** (1 / 3)
    unit.set_cell(unit.cell * scale, scale_atoms=True)
    unit.info["lattice_A"] = float(scale)
    return unit * tuple(repeat)


def melting_point(
    pair: Sequence[str],
    elements: Sequence[str],
    element: str,
    settings: MeltingSettings,
    seed: int = 0,
) -> dict[str, Any]:
    """T_m of ``element`` at ``settings.pressure_GPa`` by solid-liquid coexistence: the crystal
    equilibrated at the guess (NPT), its upper half melted at twice the guess with the lower
    half held, then the whole cell at constant enthalpy and pressure along z (NPH): with both
    phases present the temperature settles at the melting point. T_m is the mean temperature
    of the second half, its error the standard error of that half's four quarters; the run
    counts only if both phases survive (solid fraction by common neighbour analysis)."""
    s = settings
    atoms = coexistence_cell(element, s.phase, s.repeat)
    cutoff = float(CNA_CUTOFF[s.phase] * atoms.info["lattice_A"])
    bar = s.pressure_GPa * 1e4
    damp_t, damp_p = 100 * s.timestep_fs / 1000, 1000 * s.timestep_fs / 1000
    lmp = lammps_instance()
    try:
        start_lammps(lmp, atoms, elements)
        for command in (
            *pair,
            f"timestep {s.timestep_fs / 1000!r}",
            f"velocity all create {s.guess_K!r} {seed + 1} mom yes rot yes dist gaussian",
            "thermo_style custom step temp press lz pe",
            f"fix integrate all npt temp {s.guess_K!r} {s.guess_K!r} {damp_t!r} "
            f"aniso {bar!r} {bar!r} {damp_p!r}",
            f"run {s.solid_steps}",
            "unfix integrate",
            "variable zmid equal zlo+0.5*lz",
            "region upper block INF INF INF INF ${zmid} INF units box",
            "group liquid region upper",
            f"fix melt liquid nvt temp {2 * s.guess_K!r} {2 * s.guess_K!r} {damp_t!r}",
            f"run {s.melt_steps}",
            "unfix melt",
            f"velocity liquid scale {s.guess_K!r}",
            f"fix integrate all nph z {bar!r} {bar!r} {damp_p!r}",
            f"compute cna all cna/atom {cutoff!r}",
            "variable crystal atom (c_cna>=1)*(c_cna<=3)",
            "compute solid all reduce sum v_crystal",
            "thermo_style custom step temp press lz pe c_solid",
        ):
            lmp.command(command)
        lmp.command("run 0")
        start_solid = float(lmp.extract_compute("solid", 0, 0)) / len(atoms)
        series = []
        for _ in range(s.steps // s.sample_every):
            lmp.command(f"run {s.sample_every}")
            series.append(
                [lmp.get_thermo(k) for k in ("temp", "press")]
                + [float(lmp.extract_compute("solid", 0, 0)) / len(atoms)]
            )
    finally:
        lmp.close()
    data = np.asarray(series)
    second = data[len(data) // 2 :]
    blocks = [b[:, 0].mean() for b in np.array_split(second, 4)]
    final_solid = float(second[-max(1, len(second) // 10) :, 2].mean())
    # CNA counts only part of a hot crystal as crystalline: judge against the start, when
    # half the cell was crystal
    verdict = "coexisting"
    if final_solid < 0.25 * start_solid:
        verdict = "melted"
    elif final_solid > 1.75 * start_solid:
        verdict = "solidified"
    both = verdict == "coexisting"
    return {
        "element": element,
        "settings": asdict(s),
        "n_atoms": len(atoms),
        "T_m_K": float(second[:, 0].mean()) if both else None,
        "T_m_error_K": float(np.std(blocks, ddof=1) / 2) if both else None,
        "T_final_K": float(second[:, 0].mean()),
        "pressure_GPa": float(second[:, 1].mean()) / 1e4,
        "solid_fraction_start": start_solid,
        "solid_fraction_end": final_solid,
        "verdict": verdict,
        "temperature_K_series": data[:, 0].tolist(),
        "solid_fraction_series": data[:, 2].tolist(),
    }


def melting_with_retries(
    pair: Sequence[str],
    elements: Sequence[str],
    element: str,
    settings: MeltingSettings,
    seed: int = 0,
    attempts: int = 4,
) -> dict[str, Any]:
    """:func:`melting_point`, its guess moved down 15 % after a run that melted whole and up
    15 % after one that solidified, until both phases coexist or ``attempts`` runs are spent;
    the last run's result, with every attempt's guess and verdict."""
    tried = []
    for _ in range(attempts):
        result = melting_point(pair, elements, element, settings, seed)
        tried.append({"guess_K": settings.guess_K, "verdict": result["verdict"]})
        if result["verdict"] == "coexisting":
            break
        factor = 0.85 if result["verdict"] == "melted" else 1.15
        settings = replace(settings, guess_K=settings.guess_K * factor)
    return {**result, "attempts": tried}
