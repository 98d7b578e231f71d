"""Dynamics with a campaign's student: liquid runs and melting lines, each stored in the
database (``dynamics``) as it ends with the student's hash, never repeated, and plotted in
``<workdir>/dynamics``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pymatgen.core import Composition

from al_loop.dynamics.liquid import LiquidSettings, liquid_md, start_cell
from al_loop.dynamics.melting import MeltingSettings, melting_with_retries


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
    with open_campaign(config, create=False, lock="dynamics") as session:
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
    if len(Composition(element).elements) != 1:
        raise ValueError(
            f"melting: {element!r} is not one element; only elements' melting lines are built "
            "(give --element Fe, Ni, ...)"
        )
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
