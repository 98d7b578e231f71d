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

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_masses, atomic_numbers
from pymatgen.core import Composition

from al_loop.phase.candidates import atomic_volume
from calculators.models.student.lammps_run import create_cell, lammps_instance

log = logging.getLogger(__name__)

#: Å²/ps -> m²/s.
A2_PER_PS = 1e-8
#: Below this D (m²/s) a run is called solid: liquid metals diffuse at ~1e-9, crystals at
#: < 1e-12 on MD time scales.
LIQUID_D_M2_S = 1e-10


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
        create_cell(lmp, atoms, elements)
        for k, element in enumerate(elements):
            lmp.command(f"mass {k + 1} {float(atomic_masses[atomic_numbers[element]])!r}")
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
        create_cell(lmp, atoms, elements)
        for k, e in enumerate(elements):
            lmp.command(f"mass {k + 1} {float(atomic_masses[atomic_numbers[e]])!r}")
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


def _student_runs(
    config: Any,
    kind: str,
    plan: Sequence[tuple[dict[str, Any], Any]],
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Each ``(identity, run)`` of ``plan`` with the campaign's student (its last
    ``al-loop distil``): ``run(pair, elements)`` returns a result, stored in the database
    (``dynamics``, ``kind``) as soon as it ends with the student's hash and the software; a
    run whose identity (with the student's hash) is stored already is not repeated."""
    import hashlib
    import json

    from al_loop.campaign import open_campaign
    from al_loop.stages.phase import stored_student_files
    from calculators.models.student import routes
    from database.documents import software_versions

    elements = list(config.system.elements)
    with open_campaign(config, create=False) as session:
        distilled = session.log.records("distil")
        if not distilled:
            raise ValueError(f"campaign {session.name!r} has no student: run `al-loop distil`")
        student = distilled[-1]["result"]
        files = stored_student_files(session, student["key"])
        pair = routes.pair_lines(student["route"], files, elements)
        done = {d["key"]: d["result"] for d in session.store.dynamics(session.name, kind)}
        results = []
        for identity, run in plan:
            text = json.dumps([student["sha256"], identity, config.seed], sort_keys=True)
            key = hashlib.sha256(text.encode()).hexdigest()[:16]
            if key not in done:
                done[key] = run(pair, elements)
                session.store.add_dynamics(
                    {
                        "campaign": session.name,
                        "kind": kind,
                        "key": key,
                        "student": {k: student[k] for k in ("key", "sha256", "route")},
                        "teacher_iteration": student["teacher_iteration"],
                        "result": done[key],
                        "software": software_versions(),
                    }
                )
                if progress is not None:
                    progress(kind, done[key])
            results.append({**done[key], "student_sha256": student["sha256"]})
        return results


def _check_formula(config: Any, formula: str) -> None:
    elements = list(config.system.elements)
    unknown = sorted({str(e) for e in Composition(formula).elements} - set(elements))
    if unknown:
        raise ValueError(
            f"{formula}: {', '.join(unknown)} not among the campaign's elements {elements}"
        )


def liquid_campaign(
    config: Any,
    formula: str,
    temperatures_K: Sequence[float],
    pressures_GPa: Sequence[float],
    n_atoms: int = 256,
    settings: dict[str, Any] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Liquid runs of ``formula`` with the campaign's student at every (T, P), each stored as
    it ends (kind ``liquid``) and never repeated; a table and plots in
    ``<workdir>/dynamics``."""
    import json

    from al_loop import plots

    _check_formula(config, formula)
    atoms = start_cell(formula, n_atoms, config.seed)
    plan = []
    for pressure in pressures_GPa:
        for temperature in temperatures_K:
            run = LiquidSettings(float(temperature), float(pressure), **(settings or {}))
            identity = {"formula": formula, "n_atoms": len(atoms), **asdict(run)}
            plan.append(
                (identity, lambda pair, el, run=run: liquid_md(pair, el, atoms, run, config.seed))
            )
    results = _student_runs(config, "liquid", plan, progress)
    folder = config.resolved_workdir() / "dynamics"
    stem = f"liquid-{formula}"
    table = [
        {
            "formula": r["formula"],
            "T_target_K": r["settings"]["temperature_K"],
            "P_target_GPa": r["settings"]["pressure_GPa"],
            "T_K": r["temperature_K"],
            "P_GPa": r["pressure_GPa"],
            "volume_A3_atom": r["volume_A3_atom"],
            "liquid": r["liquid"],
            "rdf_first_peak_A": r["rdf_first_peak_A"],
            "diffusion": r["diffusion"],
        }
        for r in results
    ]
    files = {
        "rdf_plot": plots.liquid_rdfs(results, folder / f"{stem}-rdf.png"),
        "diffusion_plot": plots.diffusion_coefficients(results, folder / f"{stem}-D.png"),
        "json": folder / f"{stem}.json",
    }
    files["json"].write_text(json.dumps({"runs": table}, indent=1))
    return {"runs": table, "files": {k: str(v) for k, v in files.items()}}


def melting_campaign(
    config: Any,
    element: str,
    pressures_GPa: Sequence[float],
    guess_K: float,
    settings: dict[str, Any] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """The melting line of ``element`` with the campaign's student: T_m by coexistence at each
    pressure (the guess of each pressure: the last melting point found, else ``guess_K``),
    each stored as it ends (kind ``melting``) and never repeated; a table and a plot in
    ``<workdir>/dynamics``."""
    import json

    from al_loop import plots

    _check_formula(config, element)
    results = []
    guess = float(guess_K)
    for pressure in sorted(float(p) for p in pressures_GPa):
        run = MeltingSettings(pressure, guess, **(settings or {}))
        identity = {"element": element, **asdict(run)}
        plan = [(identity, lambda pair, el, run=run: melting_with_retries(pair, el, element, run))]
        (result,) = _student_runs(config, "melting", plan, progress)
        results.append(result)
        guess = result["T_m_K"] or guess
    folder = config.resolved_workdir() / "dynamics"
    table = [
        {
            "element": r["element"],
            "P_target_GPa": r["settings"]["pressure_GPa"],
            "P_GPa": r["pressure_GPa"],
            "T_m_K": r["T_m_K"],
            "T_m_error_K": r["T_m_error_K"],
            "verdict": r["verdict"],
            "attempts": r["attempts"],
            "n_atoms": r["n_atoms"],
        }
        for r in results
    ]
    files = {
        "plot": plots.melting_line(table, folder / f"melting-{element}.png"),
        "json": folder / f"melting-{element}.json",
    }
    files["json"].write_text(json.dumps({"runs": table}, indent=1))
    return {"runs": table, "files": {k: str(v) for k, v in files.items()}}
