"""Which phases are stable at which pressure: convex hulls of formation enthalpy (pymatgen's
PhaseDiagram, one per pressure), the pressure ranges each phase is on the hull, and transition
pressures from enthalpy crossings.

A crossing between two grid pressures is found on the cubic Hermite interpolant of the enthalpy
difference, whose derivative is known exactly: dH/dP = V (per atom), so the relaxed volumes
give the slopes. Its error falls as the fourth power of the grid step (a straight line through
the two enthalpy differences: the square).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms, units
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

#: A phase counts as on the hull when it is less than this above it (eV/atom).
ON_HULL_EV_ATOM = 1e-6

#: eV per (GPa Å^3): the PV term's unit.
GPA_A3 = units.GPa


@dataclass(frozen=True)
class Transition:
    """Between the grid pressures ``bracket_GPa`` the lowest-enthalpy phase of ``formula``
    changes from ``low`` (below) to ``high`` (above), at ``pressure_GPa`` (None when one of
    the two has no converged relaxation at an end of the bracket: no crossing to interpolate)."""

    formula: str
    low: str
    high: str
    pressure_GPa: float | None
    bracket_GPa: tuple[float, float]

    def row(self) -> dict[str, Any]:
        return {
            "formula": self.formula,
            "from": self.low,
            "to": self.high,
            "pressure_GPa": self.pressure_GPa,
            "bracket_GPa": list(self.bracket_GPa),
        }


def _at(rows: Sequence[dict[str, Any]], pressure: float) -> list[dict[str, Any]]:
    return [r for r in rows if float(r["pressure_GPa"]) == pressure]


def pressures_of(rows: Sequence[dict[str, Any]]) -> list[float]:
    return sorted({float(r["pressure_GPa"]) for r in rows})


#: Two candidates of one composition at one pressure are one phase when their enthalpies are
#: this close (eV/atom) and their relaxed cells match (pymatgen's StructureMatcher).
SAME_PHASE_EV_ATOM = 1e-3


def merge_same_phases(
    rows: Sequence[dict[str, Any]], structure: Callable[[str, float], Atoms]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rows`` less those that relaxed into a phase an earlier row of the same composition and
    pressure already is (a labelled cell that became hcp, an L1_0 cell that became B2), and
    the list of those left out (``name``, ``pressure_GPa``, ``same_as``). ``structure(name,
    pressure)`` gives a row's relaxed cell."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = StructureMatcher()
    kept: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    for row in rows:
        pressure = float(row["pressure_GPa"])
        formula = Composition(row["formula"]).reduced_formula
        twin = next(
            (
                k
                for k in kept
                if float(k["pressure_GPa"]) == pressure
                and Composition(k["formula"]).reduced_formula == formula
                and abs(k["enthalpy_eV_atom"] - row["enthalpy_eV_atom"]) < SAME_PHASE_EV_ATOM
                and matcher.fit(
                    AseAtomsAdaptor.get_structure(structure(k["name"], pressure)),
                    AseAtomsAdaptor.get_structure(structure(row["name"], pressure)),
                )
            ),
            None,
        )
        if twin is None:
            kept.append(row)
        else:
            merged.append({"name": row["name"], "pressure_GPa": pressure, "same_as": twin["name"]})
    return kept, merged


def entries(rows: Sequence[dict[str, Any]]) -> list[PDEntry]:
    """One pymatgen entry per row (``name``, ``formula``, ``enthalpy_eV_atom``): its enthalpy
    stands in the energy's place."""
    return [
        PDEntry(
            Composition(r["formula"]),
            r["enthalpy_eV_atom"] * Composition(r["formula"]).num_atoms,
            name=r["name"],
        )
        for r in rows
    ]


def hull_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row's formation enthalpy and distance above the hull of its own pressure (eV/atom),
    and whether it is on it."""
    out = []
    for pressure in pressures_of(rows):
        here = _at(rows, pressure)
        mine = entries(here)
        diagram = PhaseDiagram(mine)
        for entry, r in zip(mine, here, strict=True):
            above = float(diagram.get_e_above_hull(entry, allow_negative=True))
            out.append(
                {
                    "name": r["name"],
                    "formula": r["formula"],
                    "pressure_GPa": pressure,
                    "enthalpy_eV_atom": r["enthalpy_eV_atom"],
                    "formation_enthalpy_eV_atom": float(diagram.get_form_energy_per_atom(entry)),
                    "above_hull_eV_atom": above,
                    "stable": above < ON_HULL_EV_ATOM,
                }
            )
    return out


def stability_ranges(table: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """For each phase on the hull at some grid pressure, the runs of consecutive grid pressures
    where it is (first, last)."""
    pressures = pressures_of(table)
    stable = {(r["name"], float(r["pressure_GPa"])) for r in table if r["stable"]}
    ranges: dict[str, list[tuple[float, float]]] = {}
    for name in dict.fromkeys(r["name"] for r in table):
        runs: list[tuple[float, float]] = []
        for p in pressures:
            if (name, p) not in stable:
                continue
            if runs and runs[-1][1] == pressures[pressures.index(p) - 1]:
                runs[-1] = (runs[-1][0], p)
            else:
                runs.append((p, p))
        if runs:
            ranges[name] = runs
    return ranges


def crossing(
    p: tuple[float, float], dh: tuple[float, float], dv: tuple[float, float]
) -> float | None:
    """Where an enthalpy difference ``dh`` (eV/atom at pressures ``p``) changes sign, on its
    cubic Hermite interpolant with slopes ``dv`` (the volume difference, Å^3/atom); None if it
    does not in ``p``."""
    from scipy.interpolate import CubicHermiteSpline

    if np.sign(dh[0]) == np.sign(dh[1]) and dh[0] != 0:
        return None
    spline = CubicHermiteSpline(list(p), list(dh), [v * GPA_A3 for v in dv])
    roots = [float(r) for r in spline.roots(extrapolate=False) if p[0] <= r <= p[1]]
    if not roots:  # the interpolant's root sits on an end within rounding
        return float(p[0] if abs(dh[0]) <= abs(dh[1]) else p[1])
    return roots[0]


def transitions(rows: Sequence[dict[str, Any]]) -> list[Transition]:
    """For each formula with more than one candidate, each change of its lowest-enthalpy phase
    between consecutive grid pressures, at the crossing of the two phases' enthalpies (rows need
    ``volume_A3_atom`` for the slopes)."""
    out: list[Transition] = []
    pressures = pressures_of(rows)
    for formula in dict.fromkeys(Composition(r["formula"]).reduced_formula for r in rows):
        mine = [r for r in rows if Composition(r["formula"]).reduced_formula == formula]
        if len({r["name"] for r in mine}) < 2:
            continue
        at = [{r["name"]: r for r in _at(mine, p)} for p in pressures]
        best = [
            min(here.values(), key=lambda r: r["enthalpy_eV_atom"]) if here else None for here in at
        ]
        for k in range(len(pressures) - 1):
            a, b = best[k], best[k + 1]
            if a is None or b is None or a["name"] == b["name"]:
                continue
            bracket = (pressures[k], pressures[k + 1])
            ends = [at[j].get(name) for j in (k, k + 1) for name in (a["name"], b["name"])]
            crossed = None
            if all(e is not None for e in ends):
                dh = tuple(
                    ends[i]["enthalpy_eV_atom"] - ends[i + 1]["enthalpy_eV_atom"] for i in (0, 2)
                )
                dv = tuple(
                    ends[i]["volume_A3_atom"] - ends[i + 1]["volume_A3_atom"] for i in (0, 2)
                )
                crossed = crossing(bracket, dh, dv)  # type: ignore[arg-type]
            out.append(Transition(formula, a["name"], b["name"], crossed, bracket))
    return out
