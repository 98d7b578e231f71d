"""How good the committee is: errors against labels, and how well its spread predicts them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from scipy.stats import spearmanr


def predict(calc: Any, structures: Sequence[Atoms]) -> list[dict[str, Any]]:
    """The committee's mean energy, forces and force spread for each structure."""
    out = []
    for reference in structures:
        atoms = Atoms(
            reference.numbers, reference.positions, cell=reference.cell, pbc=reference.pbc
        )
        atoms.calc = calc
        forces = atoms.get_forces()
        out.append(
            {
                "energy": atoms.get_potential_energy(),
                "forces": np.array(forces),
                "force_spread": float(calc.results.get("force_spread", np.nan)),
            }
        )
    return out


def errors(calc: Any, labelled: Sequence[Atoms]) -> dict[str, Any]:
    """Errors of ``calc`` on ``labelled`` (atoms with reference results attached): RMSE of
    forces (eV/Å) and energies (meV/atom), and per structure the max atomic force error and
    the committee's force spread."""
    if not labelled:
        return {"n": 0}
    predicted = predict(calc, labelled)
    f_ref = np.concatenate([a.get_forces() for a in labelled])
    f_pred = np.concatenate([p["forces"] for p in predicted])
    e_err = np.array(
        [
            (p["energy"] - a.get_potential_energy()) / len(a)
            for p, a in zip(predicted, labelled, strict=True)
        ]
    )
    max_force_error = [
        float(np.linalg.norm(p["forces"] - a.get_forces(), axis=1).max())
        for p, a in zip(predicted, labelled, strict=True)
    ]
    return {
        "n": len(labelled),
        "force_rmse_eV_A": float(np.sqrt(((f_pred - f_ref) ** 2).mean())),
        "force_mae_eV_A": float(np.abs(f_pred - f_ref).mean()),
        "energy_rmse_meV_atom": float(1000 * np.sqrt((e_err**2).mean())),
        "max_force_error_eV_A": max_force_error,
        "force_spread_eV_A": [p["force_spread"] for p in predicted],
        "forces_reference": f_ref,
        "forces_predicted": f_pred,
    }


def rank_correlation(spread: Sequence[float], error: Sequence[float]) -> float | None:
    """Spearman's rank correlation of spread and true error (None below 3 finite pairs or when
    either is constant)."""
    s, e = np.asarray(spread, dtype=float), np.asarray(error, dtype=float)
    keep = np.isfinite(s) & np.isfinite(e)
    if keep.sum() < 3 or np.ptp(s[keep]) == 0 or np.ptp(e[keep]) == 0:
        return None
    return float(spearmanr(s[keep], e[keep]).statistic)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of :func:`errors` (no per-atom arrays)."""
    return {k: v for k, v in result.items() if k not in ("forces_reference", "forces_predicted")}
