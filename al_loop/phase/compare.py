"""Two phase maps of the same candidates and pressures compared: a model's (the student's, the
teacher's) against a reference's (the oracle's own relaxations)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from al_loop.config import CampaignConfig


def with_phase(config: CampaignConfig, **values: Any) -> CampaignConfig:
    """``config`` with ``values`` set in its phase section (validated)."""
    from al_loop.config import PhaseConfig

    merged = {**config.phase.model_dump(), **values}
    return config.model_copy(update={"phase": PhaseConfig.model_validate(merged)})


def enthalpies(result: dict[str, Any]) -> dict[tuple[str, float], tuple[float, bool]]:
    """(name, pressure) -> (enthalpy per atom, trusted) of every converged cell of a phase
    result (those the teacher distrusts included: they are left out of the map, not of a
    check); a result of before that record: its hull's cells."""
    rows = result.get("converged_enthalpies") or result["hull"]
    return {
        (r["name"], float(r["pressure_GPa"])): (r["enthalpy_eV_atom"], r.get("trusted", True))
        for r in rows
    }


def delta_h_rms(model: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Per composition, the RMS and max (meV/atom) over phases and pressures of ΔH_model -
    ΔH_reference, each ΔH against the reference's lowest phase at the lowest pressure; a cell
    counts where both relaxed it to convergence (``distrusted``: how many of those the
    model's teacher left out of its map)."""
    mine, ref = enthalpies(model), enthalpies(reference)
    out: dict[str, Any] = {}
    formulas = {r["formula"] for r in reference.get("converged_enthalpies") or reference["hull"]}
    for formula in sorted(formulas):
        names = sorted({n for (n, _) in ref if n.split(":", 1)[0] == formula})
        low = min(p for (n, p) in ref if n in names)
        base = min(names, key=lambda n: ref.get((n, low), (np.inf,))[0])
        diffs, distrusted = [], 0
        for n, p in ref:
            if n not in names or n == base or not {(n, p), (base, p)} <= mine.keys() & ref.keys():
                continue
            diffs.append(
                (mine[(n, p)][0] - mine[(base, p)][0]) - (ref[(n, p)][0] - ref[(base, p)][0])
            )
            distrusted += not (mine[(n, p)][1] and mine[(base, p)][1])
        if diffs:
            out[formula] = {
                "against": base,
                "n": len(diffs),
                "distrusted": distrusted,
                "rms_meV_atom": round(1000 * float(np.sqrt(np.mean(np.square(diffs)))), 2),
                "max_meV_atom": round(1000 * float(np.max(np.abs(diffs))), 2),
            }
    return out


def _degenerate(
    reference: dict[tuple[str, float], tuple[float, bool]],
    a: str,
    b: str,
    pressure: float,
    tolerance_eV_atom: float,
) -> bool:
    """Whether the reference puts phases ``a`` and ``b`` within the tolerance of each other at
    ``pressure`` (both relaxed there)."""
    if (a, pressure) not in reference or (b, pressure) not in reference:
        return False
    return abs(reference[(a, pressure)][0] - reference[(b, pressure)][0]) < tolerance_eV_atom


def transitions_against(
    models: dict[str, dict[str, Any]],
    reference: dict[str, Any],
    target_GPa: float,
    degenerate_meV_atom: float = 2.0,
) -> list[dict[str, Any]]:
    """Every transition of ``reference``, with each model's pressure for the same transition
    (None: the model does not find it) and whether it is within ``target_GPa``; then each
    model's transitions that the reference does not have (``spurious``). A model's transition
    into the same phase from another one that the reference puts within
    ``degenerate_meV_atom`` of its own starting phase (Ca fcc and hcp) is the same transition
    (``<model>_from`` names the model's)."""
    key = lambda t: (t["formula"], t["from"], t["to"])  # noqa: E731
    ref_h = enthalpies(reference)
    used: dict[str, set[tuple[str, str, str]]] = {name: set() for name in models}
    rows = []
    for t in reference["transitions"]:
        row: dict[str, Any] = {
            "formula": t["formula"],
            "from": t["from"],
            "to": t["to"],
            "reference_GPa": t["pressure_GPa"],
        }
        low = float(t["bracket_GPa"][0]) if t.get("bracket_GPa") else None
        for name, result in models.items():
            same = [u for u in result["transitions"] if key(u) == key(t)]
            if not same and low is not None:
                same = [
                    u
                    for u in result["transitions"]
                    if (u["formula"], u["to"]) == (t["formula"], t["to"])
                    and _degenerate(ref_h, u["from"], t["from"], low, degenerate_meV_atom / 1000)
                ]
            at = same[0]["pressure_GPa"] if same else None
            if same:
                used[name].add(key(same[0]))
                if same[0]["from"] != t["from"]:
                    row[f"{name}_from"] = same[0]["from"]
            off = None if at is None or t["pressure_GPa"] is None else at - t["pressure_GPa"]
            row[f"{name}_GPa"] = at
            row[f"{name}_minus_reference_GPa"] = None if off is None else round(off, 2)
            row[f"{name}_met"] = off is not None and abs(off) <= target_GPa
        rows.append(row)
    for name, result in models.items():
        for u in result["transitions"]:
            if key(u) not in used[name]:
                rows.append(
                    {
                        "formula": u["formula"],
                        "from": u["from"],
                        "to": u["to"],
                        "reference_GPa": None,
                        f"{name}_GPa": u["pressure_GPa"],
                        "spurious": name,
                    }
                )
    return rows
