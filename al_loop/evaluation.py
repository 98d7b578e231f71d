"""How good the committee is: energy, force and pressure errors against labels (overall and per
pressure bin), and how well its spread predicts them.

Pressure is P = -trace(stress)/3 in GPa; a structure's pressure bin is that of its reference
pressure. Labels without a stress count in the energy and force errors only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms, units

#: Default edges of the pressure bins errors are reported in (GPa); the last bin is open.
PRESSURE_BINS_GPA = (0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0)
#: Per-value arrays of :func:`errors` (for parity plots; left out of stored summaries).
ARRAYS = (
    "forces_reference",
    "forces_predicted",
    "energy_reference_eV_atom",
    "energy_predicted_eV_atom",
    "pressure_reference_GPa",
    "pressure_predicted_GPa",
)


def pressure_GPa(stress_voigt_eV_A3: np.ndarray) -> float:
    """P = -trace(stress)/3 in GPa, from a Voigt stress in eV/Å³ (ASE's sign: tension > 0)."""
    return float(-np.asarray(stress_voigt_eV_A3, dtype=float)[:3].mean() / units.GPa)


def reference_stress(atoms: Atoms) -> np.ndarray | None:
    """The label's stress (Voigt, eV/Å³) if it has one."""
    results = atoms.calc.results if atoms.calc is not None else {}
    stress = results.get("stress")
    return None if stress is None else np.asarray(stress, dtype=float)


def predict(calc: Any, structures: Sequence[Atoms]) -> list[dict[str, Any]]:
    """The calculator's energy, forces, stress and spreads (committees only) per structure;
    batched where the calculator can (``predict_many``: a committee)."""
    if hasattr(calc, "predict_many"):
        return [
            {
                **{key: got[key] for key in ("energy", "forces", "force_spread", "energy_spread")},
                "stress": got["stress"] if atoms.pbc.all() else None,
            }
            for atoms, got in zip(structures, calc.predict_many(list(structures)), strict=True)
        ]
    out = []
    for reference in structures:
        atoms = Atoms(
            reference.numbers, reference.positions, cell=reference.cell, pbc=reference.pbc
        )
        atoms.calc = calc
        forces = np.array(atoms.get_forces())
        stress = np.array(atoms.get_stress()) if atoms.pbc.all() else None
        out.append(
            {
                "energy": atoms.get_potential_energy(),
                "forces": forces,
                "stress": stress,
                "force_spread": float(calc.results.get("force_spread", np.nan)),
                "energy_spread": float(calc.results.get("energy_spread", np.nan)),
            }
        )
    return out


def _rmse(x: np.ndarray) -> float | None:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else None


def _mae(x: np.ndarray) -> float | None:
    return float(np.mean(np.abs(x))) if x.size else None


def pressure_bin(p: float, edges: Sequence[float]) -> str:
    """The name of the bin ``p`` (GPa) falls in: ``"10-25"``, ``">500"``; below the first edge
    (tension) counts in the first bin."""
    for lo, hi in itertools.pairwise(edges):
        if p < hi:
            return f"{lo:g}-{hi:g}"
    return f">{edges[-1]:g}"


def _figures(
    e_err: np.ndarray, f_err: np.ndarray, p_err: np.ndarray, f_ref: np.ndarray
) -> dict[str, Any]:
    """RMSE and MAE of per-atom energies (meV/atom), force components (eV/Å), pressures (GPa);
    the reference forces' RMS beside them (a force error means little without it)."""
    e_rmse, e_mae = _rmse(e_err), _mae(e_err)
    return {
        "force_rms_reference_eV_A": _rmse(f_ref),
        "energy_rmse_meV_atom": None if e_rmse is None else 1000 * e_rmse,
        "energy_mae_meV_atom": None if e_mae is None else 1000 * e_mae,
        "force_rmse_eV_A": _rmse(f_err),
        "force_mae_eV_A": _mae(f_err),
        "pressure_rmse_GPa": _rmse(p_err),
        "pressure_mae_GPa": _mae(p_err),
        "n_pressures": int(p_err.size),
    }


def errors(
    calc: Any, labelled: Sequence[Atoms], pressure_bins_GPa: Sequence[float] = PRESSURE_BINS_GPA
) -> dict[str, Any]:
    """Errors of ``calc`` on ``labelled`` (atoms with reference results attached).

    Overall and per pressure bin (``by_pressure``): RMSE and MAE of energies per atom, force
    components and pressures. Per structure: the max atomic force error, the committee's force
    and energy spreads, and the reference pressure. The per-value arrays of :data:`ARRAYS` are
    for parity plots (:func:`summary` drops them)."""
    if not labelled:
        return {"n": 0}
    predicted = predict(calc, labelled)
    e_ref = np.array([a.get_potential_energy() / len(a) for a in labelled])
    e_pred = np.array([p["energy"] / len(a) for p, a in zip(predicted, labelled, strict=True)])
    f_ref_each = [a.get_forces() for a in labelled]
    f_err_each = [p["forces"] - f for p, f in zip(predicted, f_ref_each, strict=True)]
    p_ref, p_pred = np.full(len(labelled), np.nan), np.full(len(labelled), np.nan)
    for k, (p, a) in enumerate(zip(predicted, labelled, strict=True)):
        stress = reference_stress(a)
        if stress is not None and p["stress"] is not None:
            p_ref[k], p_pred[k] = pressure_GPa(stress), pressure_GPa(p["stress"])
    has_p = np.isfinite(p_ref)
    bins = [pressure_bin(p, pressure_bins_GPa) if np.isfinite(p) else "no stress" for p in p_ref]
    by_pressure = {}
    for name in dict.fromkeys(sorted(bins, key=_bin_order)):
        pick = np.array([b == name for b in bins])
        by_pressure[name] = {
            "n": int(pick.sum()),
            **_figures(
                (e_pred - e_ref)[pick],
                np.concatenate([f for f, k in zip(f_err_each, pick, strict=True) if k]).ravel(),
                (p_pred - p_ref)[pick & has_p],
                np.concatenate([f for f, k in zip(f_ref_each, pick, strict=True) if k]).ravel(),
            ),
        }
    return {
        "n": len(labelled),
        **_figures(
            e_pred - e_ref,
            np.concatenate(f_err_each).ravel(),
            (p_pred - p_ref)[has_p],
            np.concatenate(f_ref_each).ravel(),
        ),
        "by_pressure": by_pressure,
        "max_force_error_eV_A": [float(np.linalg.norm(f, axis=1).max()) for f in f_err_each],
        "force_spread_eV_A": [p["force_spread"] for p in predicted],
        "energy_spread_meV_atom": [1000 * p["energy_spread"] for p in predicted],
        "reference_pressure_GPa": [None if not np.isfinite(p) else float(p) for p in p_ref],
        "forces_reference": np.concatenate(f_ref_each),
        "forces_predicted": np.concatenate([p["forces"] for p in predicted]),
        "energy_reference_eV_atom": e_ref,
        "energy_predicted_eV_atom": e_pred,
        "pressure_reference_GPa": p_ref[has_p],
        "pressure_predicted_GPa": p_pred[has_p],
    }


def _bin_order(name: str) -> float:
    if name == "no stress":
        return float("inf")
    return float(name.lstrip(">").split("-")[0])


def rank_correlation(spread: Sequence[float], error: Sequence[float]) -> float | None:
    """Spearman's rank correlation of spread and true error (None below 3 finite pairs or when
    either is constant)."""
    from scipy.stats import spearmanr  # here: scipy is slow to import, the CLI needs it rarely

    s, e = np.asarray(spread, dtype=float), np.asarray(error, dtype=float)
    keep = np.isfinite(s) & np.isfinite(e)
    if keep.sum() < 3 or np.ptp(s[keep]) == 0 or np.ptp(e[keep]) == 0:
        return None
    return float(spearmanr(s[keep], e[keep]).statistic)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of :func:`errors` (no per-value arrays)."""
    return {k: v for k, v in result.items() if k not in ARRAYS}
