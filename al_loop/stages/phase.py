"""Phase: candidate structures relaxed on a pressure grid with the student (or, for checks,
the teacher or the oracle), enthalpy hulls per pressure, the stable phases' pressure ranges,
and transition pressures (:mod:`al_loop.phase`).

The stage is keyed by the teacher's iteration. Each candidate's enthalpy curve goes to the
database (``phases``) as soon as it is relaxed, under a key made of the model and the
relaxation settings: a stopped run, or a run with more candidates, relaxes only what is
missing. Tables (CSV, JSON) and plots are in ``<workdir>/phase``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from pymatgen.core import Composition

from al_loop import plots
from al_loop.committee import labelled_structures, load_committee
from al_loop.evaluation import predict
from al_loop.phase.candidates import (
    Candidate,
    candidates_sha256,
    file_candidates,
    prototype_candidates,
    structure_sha256,
)
from al_loop.phase.ledger import DatasetLedger
from al_loop.phase.relax import RelaxSettings, enthalpy_curve
from al_loop.phase.stability import (
    hull_table,
    merge_same_phases,
    pressures_of,
    stability_ranges,
    transitions,
)
from al_loop.stages.base import Stage
from al_loop.stages.distil import teacher_iteration_of
from calculators.models.student import routes
from calculators.oracles.ase_calculator import OracleCalculator
from database.documents import software_versions

log = logging.getLogger(__name__)


#: The analysis' version: a recorded result of another is analysed again from the stored
#: curves (nothing is relaxed again).
ANALYSIS = 6


def pressure_grid(config: Any) -> list[float]:
    """The ``phase.pressures_GPa`` of ``config``, or 11 pressures from 0 to its highest."""
    given = config.phase.pressures_GPa
    if given:
        return sorted(float(p) for p in given)
    top = max(config.system.pressures_GPa)
    return [round(float(p), 6) for p in np.linspace(0.0, top, 11)] if top > 0 else [0.0, 1.0]


def campaign_candidates(session: Any, per_composition: int) -> list[Candidate]:
    """Per composition, the ``per_composition`` labelled structures of lowest E + PV per
    atom, each at the pressure it was labelled at."""
    if per_composition == 0:
        return []
    train, held_out = labelled_structures(session)
    by_formula: dict[str, list[tuple[float, Atoms]]] = {}
    for atoms in train + held_out:
        try:
            pressure = -np.trace(atoms.get_stress(voigt=False)) / 3
        except Exception:  # a label without stress: not comparable under pressure
            continue
        h = (atoms.get_potential_energy() + pressure * atoms.get_volume()) / len(atoms)
        formula = atoms.get_chemical_formula(mode="metal", empirical=True)
        by_formula.setdefault(formula, []).append((h, atoms))
    out = []
    for formula, found in sorted(by_formula.items()):
        for _, atoms in sorted(found, key=lambda pair: pair[0])[:per_composition]:
            cell = Atoms(atoms.symbols, atoms.positions, cell=atoms.cell, pbc=True)
            sid = str(atoms.info.get("structure_id", ""))[:8]
            out.append(Candidate(f"{formula}:campaign-{sid}", "campaign", cell))
    return out


def cell_of(stored: dict[str, Any]) -> Atoms:
    """A relaxed cell as stored in a curve's document."""
    return Atoms(stored["numbers"], stored["positions"], cell=stored["cell"], pbc=True)


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)
    return path


class PhaseStage(Stage):
    name = "phase"

    def __init__(self, *args: Any, threads: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads = threads

    @property
    def label_campaign(self) -> str:
        """The campaign name the oracle's runs are labels of: the committee's training set
        (labels of the campaign itself) is left as it is."""
        return f"{self.session.name}/phase"

    def settings(self) -> tuple[RelaxSettings, list[float]]:
        """The relaxation's settings and the pressure grid."""
        ph = self.session.config.phase
        return RelaxSettings(ph.fmax_eV_A, ph.max_steps, ph.keep_symmetry), pressure_grid(
            self.session.config
        )

    def model(self, iteration: int) -> dict[str, Any]:
        """What identifies the model that relaxes: the student distilled from the teacher of
        ``iteration``, that teacher, or the campaign's oracle (its physics hash)."""
        session = self.session
        if session.config.phase.model == "oracle":
            return {
                "model": "oracle",
                "code": session.config.oracle.code,
                "physics_hash": session.physics_hash,
                "teacher_iteration": iteration,
            }
        if session.config.phase.model == "teacher":
            docs = session.store.models(session.name, teacher_iteration_of(session, iteration))
            return {
                "model": "teacher",
                "teacher_iteration": iteration,
                "sha256": [d.get("sha256") for d in docs],
            }
        distilled = session.log.result(iteration, "distil")
        if distilled is None:
            raise ValueError(
                f"campaign {session.name!r} has no student of iteration {iteration}: run "
                "`al-loop distil` first, or set phase.model: teacher"
            )
        return {
            "model": "student",
            "route": distilled["route"],
            "teacher_iteration": iteration,
            "student_key": distilled["key"],
            "sha256": distilled["sha256"],
        }

    def calculator(self, model: dict[str, Any]) -> Any:
        """The ASE calculator of :meth:`model`'s model."""
        session = self.session
        if model["model"] == "teacher":
            return load_committee(session, model["teacher_iteration"], "float64")
        if model["model"] == "oracle":  # each run a label in the dataset (DatasetLedger)
            ledger = DatasetLedger(
                session.store, session.oracle, self.label_campaign, model["teacher_iteration"]
            )
            return OracleCalculator(session.oracle, session.workdir / "phase" / "runs", ledger)
        files = stored_student_files(session, model["student_key"])
        return routes.calculator(model["route"], files, list(session.config.system.elements))

    def calculator_of_teacher(self, iteration: int) -> Any:
        """The teacher committee of ``iteration``, which checks the student's relaxed cells."""
        return load_committee(self.session, iteration, self.session.config.exploration.dtype)

    @staticmethod
    def check_with_teacher(teacher: Any, cells: list[Atoms], rows: list[dict[str, Any]]) -> None:
        """Add to each row the teacher's force spread on its relaxed cell and its enthalpy
        there (eV/atom): where the teacher is unsure, the student is outside its data."""
        for atoms, row, got in zip(cells, rows, predict(teacher, cells), strict=True):
            row["teacher_spread_eV_A"] = got["force_spread"]
            row["teacher_enthalpy_eV_atom"] = (
                got["energy"] + row["pressure_GPa"] * units.GPa * atoms.get_volume()
            ) / len(atoms)

    def candidates(self) -> list[Candidate]:
        cfg = self.session.config
        ph = cfg.phase
        elements = list(cfg.system.elements)
        found = prototype_candidates(elements, ph.prototypes)
        found += file_candidates(ph.files, elements)
        found += campaign_candidates(self.session, ph.from_campaign)
        missing = [e for e in elements if not any(c.name.startswith(f"{e}:") for c in found)]
        if missing:
            raise ValueError(
                f"{cfg.source_file or cfg.name}: phase.prototypes: no elemental phase for "
                f"{', '.join(missing)}; the hulls need one (add fcc, bcc, ... or a file)"
            )
        return found

    def compute(self, iteration: int) -> dict[str, Any]:
        session = self.session
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        relax_settings, pressures = self.settings()
        model = self.model(iteration)
        calc = self.calculator(model)
        teacher = calc if model["model"] == "teacher" else self.calculator_of_teacher(iteration)
        key = phase_key(model, relax_settings, pressures)
        candidates = self.candidates()
        stored = {d["name"]: d for d in session.store.phase_curves(session.name, key)}
        rows: list[dict[str, Any]] = []
        structures: dict[str, list[dict[str, Any]]] = {}
        relaxed_now = 0
        for k, candidate in enumerate(candidates):
            start = structure_sha256(candidate.atoms)
            doc = stored.get(candidate.name)
            if doc is None or doc.get("start_sha256") != start:
                curve = enthalpy_curve(
                    candidate.atoms, calc, pressures, candidate.name, relax_settings
                )
                rows_now = [r.row() for r in curve]
                self.check_with_teacher(teacher, [r.atoms for r in curve], rows_now)
                doc = {
                    "campaign": session.name,
                    "key": key,
                    "name": candidate.name,
                    "prototype": candidate.prototype,
                    "start_sha256": start,
                    "model": model,
                    "settings": vars(relax_settings),
                    "rows": rows_now,
                    "structures": [
                        {
                            "pressure_GPa": r.pressure_GPa,
                            "cell": r.atoms.cell[:].tolist(),
                            "positions": r.atoms.positions.tolist(),
                            "numbers": r.atoms.numbers.tolist(),
                        }
                        for r in curve
                    ],
                    "software": software_versions(),
                }
                session.store.add_phase_curve(doc)  # stored before the next candidate
                relaxed_now += 1
                self.emit(
                    iteration,
                    "step",
                    candidate=candidate.name,
                    done=f"{k + 1}/{len(candidates)}",
                    unconverged=sum(not r["converged"] for r in doc["rows"]),
                )
            structures[candidate.name] = doc["structures"]
            rows += doc["rows"]

        def structure(name: str, pressure: float) -> Atoms:
            return cell_of(next(c for c in structures[name] if c["pressure_GPa"] == pressure))

        extra: dict[str, Any] = {"candidates_sha256": candidates_sha256(candidates)}
        if isinstance(calc, OracleCalculator):
            extra["oracle_runs"] = {
                "run": calc.runs,
                "recalled": calc.recalled,
                "campaign": self.label_campaign,
            }
        return self.analyse(
            iteration, key, model, rows, structure, len(candidates), relaxed_now, extra
        )

    def analyse(
        self,
        iteration: int,
        key: str,
        model: dict[str, Any],
        rows: list[dict[str, Any]],
        structure: Callable[[str, float], Atoms],
        n_candidates: int,
        relaxed_now: int,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        """Hulls, ranges and transitions of ``rows``; tables and plots to ``<workdir>/phase``;
        ``extra`` joins the result."""
        elements = list(self.session.config.system.elements)
        unconverged = [
            {"name": r["name"], "pressure_GPa": r["pressure_GPa"]}
            for r in rows
            if not r["converged"]
        ]
        changed = [
            {"name": r["name"], "pressure_GPa": r["pressure_GPa"], "to": r["spacegroup_end"]}
            for r in rows
            if r["converged"] and r["spacegroup_end"] != r["spacegroup_start"]
        ]
        ph = self.session.config.phase
        converged = [r for r in rows if r["converged"]]
        gaps = [1000 * (r["enthalpy_eV_atom"] - r["teacher_enthalpy_eV_atom"]) for r in converged]
        untrusted = [
            {
                "name": r["name"],
                "pressure_GPa": r["pressure_GPa"],
                "teacher_spread_eV_A": r["teacher_spread_eV_A"],
                "enthalpy_gap_meV_atom": gap,
            }
            for r, gap in zip(converged, gaps, strict=True)
            if r["teacher_spread_eV_A"] > ph.max_teacher_spread_eV_A
            or abs(gap) > ph.max_teacher_gap_meV_atom
        ]
        if model["model"] == "oracle":  # the reference itself: the teacher's gap is its error
            untrusted = []
        unsure = {(u["name"], u["pressure_GPa"]) for u in untrusted}
        trusted = [r for r in converged if (r["name"], r["pressure_GPa"]) not in unsure]
        usable, merged = merge_same_phases(trusted, structure)
        complete = [p for p in pressures_of(usable) if _has_elements(usable, p, elements)]
        usable = [r for r in usable if float(r["pressure_GPa"]) in complete]
        table = hull_table(usable)
        found = [t.row() for t in transitions(usable)]
        ranges = {
            name: [list(run) for run in runs] for name, runs in stability_ranges(table).items()
        }
        folder = self.session.workdir / "phase"
        files = {
            "enthalpies_csv": write_csv(
                sorted(rows, key=lambda r: (r["name"], r["pressure_GPa"])),
                folder / "enthalpies.csv",
            ),
            "hull_csv": write_csv(table, folder / "hull.csv"),
            "transitions_csv": write_csv(found, folder / "transitions.csv"),
        }
        # the elements first, then compositions with a transition, then the rest: 9 a page
        names: dict[str, set[str]] = {}
        for r in usable:
            names.setdefault(r["formula"], set()).add(r["name"])
        moving = {t["from"].split(":")[0] for t in found}
        formulas = sorted(
            (f for f, n in names.items() if len(n) > 1),
            key=lambda f: (f not in elements, f not in moving, f),
        )
        for page in range(max(1, -(-len(formulas) // 9))):
            files[f"enthalpy_plot_{page + 1}"] = plots.enthalpy_differences(
                usable,
                found,
                folder / f"enthalpy-differences-{page + 1}.png",
                formulas[9 * page : 9 * page + 9],
            )
        files["map_plot"] = plots.stability_map(table, elements, folder / "stability-map.png")
        for pressure in hull_pressures(complete):
            files[f"hull_{pressure:g}GPa_plot"] = plots.hull_at(
                table, pressure, elements, folder / f"hull-{pressure:g}GPa.png"
            )
        stable = {
            f"{p:g}": sorted(r["name"] for r in table if r["stable"] and r["pressure_GPa"] == p)
            for p in complete
        }
        result = {
            "key": key,
            "analysis": ANALYSIS,
            "model": model,
            "pressures_GPa": pressures_of(rows),
            "pressures_with_hull_GPa": complete,
            "candidates": n_candidates,
            "relaxed_now": relaxed_now,
            "unconverged": unconverged,
            "space_group_changed": changed,
            "same_phase": merged,
            "teacher_unsure": untrusted,
            "teacher_limits": {
                "force_spread_eV_A": ph.max_teacher_spread_eV_A,
                "enthalpy_gap_meV_atom": ph.max_teacher_gap_meV_atom,
            },
            "model_vs_teacher_enthalpy_meV_atom": {
                "n": len(gaps),
                "median_abs": float(np.median(np.abs(gaps))) if gaps else None,
                "max_abs": float(np.max(np.abs(gaps))) if gaps else None,
            },
            "stable": stable,
            "stability_ranges_GPa": ranges,
            "transitions": found,
            "hull": table,
            # every converged cell, trusted or not: what a check against the oracle compares
            "converged_enthalpies": [
                {
                    "name": r["name"],
                    "formula": r["formula"],
                    "pressure_GPa": r["pressure_GPa"],
                    "enthalpy_eV_atom": r["enthalpy_eV_atom"],
                    "trusted": (r["name"], r["pressure_GPa"]) not in unsure,
                }
                for r in converged
            ],
            "files": {k: str(v) for k, v in files.items()},
            "software": software_versions(),
            **extra,
        }
        (folder / "phase.json").write_text(
            json.dumps(
                {k: v for k, v in result.items() if k not in ("hull", "converged_enthalpies")},
                indent=1,
            )
            + "\n"
        )
        return result

    def current(self, result: dict[str, Any]) -> bool:
        """A recorded result holds while the model, the relaxation settings, the pressures
        and the candidates (names and starting cells: a changed file counts) are the same."""
        relax_settings, pressures = self.settings()
        model = result.get("model", {})
        iteration = model.get("teacher_iteration")
        if iteration is None or self.session.config.phase.model != model.get("model"):
            return False
        try:
            now = self.model(iteration)
        except ValueError:
            return False
        return (
            result.get("key") == phase_key(now, relax_settings, pressures)
            and result.get("analysis") == ANALYSIS
            and result.get("candidates_sha256") == candidates_sha256(self.candidates())
        )

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "candidates": result["candidates"],
            "pressures": len(result["pressures_GPa"]),
            "transitions": len(result["transitions"]),
            "unconverged": len(result["unconverged"]),
            "teacher_unsure": len(result["teacher_unsure"]),
        }


def _has_elements(rows: list[dict[str, Any]], pressure: float, elements: list[str]) -> bool:
    here = {
        Composition(r["formula"]).reduced_formula
        for r in rows
        if float(r["pressure_GPa"]) == pressure
    }
    return all(e in here for e in elements)


def hull_pressures(pressures: list[float]) -> list[float]:
    """The pressures whose hull is drawn: the lowest, the middle one and the highest."""
    if not pressures:
        return []
    return sorted({pressures[0], pressures[len(pressures) // 2], pressures[-1]})


def phase_key(model: dict[str, Any], settings: RelaxSettings, pressures: list[float]) -> str:
    """What identifies a set of enthalpy curves: the model, the relaxation, the pressures."""
    text = json.dumps([model, vars(settings), pressures], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stored_student_files(session: Any, key: str) -> list[Path]:
    """The files of the stored student ``key``, from GridFS (the model) and the document (its
    companion files), checked against their signature every time (database/model_signing.py);
    written only where the local copy differs."""
    folder = session.workdir / "student" / "stored" / key
    stored = session.store.distillations(session.name, "student", key)
    if not stored:
        raise ValueError(
            f"campaign {session.name!r}: the student {key} is not in the database; "
            "run `al-loop distil` again"
        )
    document = stored[0]
    suffix = ".student" if document["route"] == "pair" else ".mliap.model"
    model = folder / f"student{suffix}"
    data = session.store.read_model_file(document)  # the file, its companions, its key
    if not model.is_file() or model.read_bytes() != data:
        folder.mkdir(parents=True, exist_ok=True)
        model.write_bytes(data)
    companions = []
    for name, text in (document.get("companion_files") or {}).items():
        if Path(name).name != name or name in (".", ".."):  # signed, but never a path
            raise ValueError(f"student {key}: companion file name {name!r} is not a file name")
        path = folder / name
        path.write_text(text)
        companions.append(path)
    return [model, *companions]
