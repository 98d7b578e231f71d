"""Evaluate: the iteration's committee against the held-out labels (energy, force and pressure
errors, overall and per pressure bin, on the fixed set and on each newer slice), the learning
curve on the fixed set, how well the previous committee's spread predicted the error on the
frames it selected (calibration), and the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from al_loop import plots
from al_loop.committee import FIXED, held_out_slices, labelled_structures, load_committee
from al_loop.evaluation import errors, rank_correlation, summary
from al_loop.stages.base import Stage

#: The learning curve's quantities: (key in the errors, label with unit).
CURVE = (
    ("force_rmse_eV_A", "force RMSE (eV/Å)"),
    ("energy_rmse_meV_atom", "energy RMSE (meV/atom)"),
    ("pressure_rmse_GPa", "pressure RMSE (GPa)"),
)


#: The parity panels: (quantity, unit, reference key, predicted key) in the errors.
PARITY = (
    ("energy", "eV/atom", "energy_reference_eV_atom", "energy_predicted_eV_atom"),
    ("force", "eV/Å", "forces_reference", "forces_predicted"),
    ("pressure", "GPa", "pressure_reference_GPa", "pressure_predicted_GPa"),
)


def parity(held: dict[str, dict[str, Any]], path: Path, iteration: int) -> None:
    """Energy, force and pressure parity over every held-out slice."""
    panels = [
        (
            q,
            unit,
            np.concatenate([h[ref] for h in held.values()]),
            np.concatenate([h[pred] for h in held.values()]),
        )
        for q, unit, ref, pred in PARITY
    ]
    n = sum(h["n"] for h in held.values())
    plots.parity_panels(panels, path, title=f"iteration {iteration}: {n} held-out labels")


def energy_after_reference_refit(
    structures: list, reference_eV_atom: np.ndarray, predicted_eV_atom: np.ndarray
) -> dict[str, float]:
    """Per-atom energy errors after one reference energy per element is fitted (least
    squares) to the differences: what is left once the energy zero is the labels'."""
    symbols = sorted({s for a in structures for s in a.get_chemical_symbols()})
    counts = np.array([[a.get_chemical_symbols().count(s) for s in symbols] for a in structures])
    n = counts.sum(axis=1)
    difference = (np.asarray(reference_eV_atom) - np.asarray(predicted_eV_atom)) * n
    shift, *_ = np.linalg.lstsq(counts.astype(float), difference, rcond=None)
    left = (difference - counts @ shift) / n
    return {
        "energy_refit_rmse_meV_atom": float(1000 * np.sqrt(np.mean(left**2))),
        "energy_refit_mae_meV_atom": float(1000 * np.mean(np.abs(left))),
    }


class EvaluateStage(Stage):
    name = "evaluate"

    def wanted(self, iteration: int) -> bool:
        """Nothing new to evaluate when the iteration reused the previous committee."""
        trained = self.session.log.result(iteration, "train")
        return not (trained and trained.get("reused_from") is not None)

    def compute(self, iteration: int) -> dict[str, Any]:
        session = self.session
        c = session.config.committee
        plot_dir = session.workdir / "plots"
        train, held_out = labelled_structures(session)
        slices = held_out_slices(held_out, c.held_out_fixed_after)
        committee = load_committee(session, iteration)
        held = {
            name: errors(committee, atoms, c.error_pressure_bins_GPa)
            for name, atoms in slices.items()
            if atoms
        }
        if held:
            parity(held, plot_dir / f"parity_{iteration:03d}.png", iteration)
        result: dict[str, Any] = {
            "held_out": {name: summary(h) for name, h in held.items()},
            "fixed_structure_ids": sorted(a.info["structure_id"] for a in slices[FIXED]),
        }
        calibration = (
            self._spread_and_calibration(iteration, train + held_out) if iteration else None
        )
        if calibration:
            result["calibration"] = calibration
        zero_shot = self.zero_shot(result["fixed_structure_ids"], slices[FIXED])
        if zero_shot is not None:
            result["foundation_zero_shot"] = zero_shot
        result["learning_curve"] = curve = self.learning_curve(iteration, result, slices[FIXED])
        plots.learning_curve(
            [p["iteration"] for p in curve],
            [p["n_train"] for p in curve],
            {label: [p.get(key) for p in curve] for key, label in CURVE},
            plot_dir / "learning_curve.png",
            title=f"Learning curve on the fixed held-out set ({len(slices[FIXED])} labels)",
        )
        return result

    def _spread_and_calibration(self, iteration: int, labelled: list) -> dict[str, Any] | None:
        """The exploration's spread histogram (with the window selection used) and committee
        k-1's spread against its true error on the frames selected in k."""
        log, plot_dir = self.session.log, self.session.workdir / "plots"
        explored = log.result(iteration, "explore")
        selected = log.result(iteration, "select")
        spreads = np.asarray(explored["table"]["force_spread"], dtype=float)
        plots.spread_histogram(
            spreads,
            tuple(selected["window"]),
            plot_dir / f"spread_{iteration:03d}.png",
            title=f"iteration {iteration} ({selected['strategy']})",
        )
        chosen = set(selected["structure_ids"])
        new = [a for a in labelled if a.info["structure_id"] in chosen]
        if not new:
            return None
        previous = errors(load_committee(self.session, iteration - 1), new)
        rho = rank_correlation(previous["force_spread_eV_A"], previous["max_force_error_eV_A"])
        plots.calibration(
            np.array(previous["force_spread_eV_A"]),
            np.array(previous["max_force_error_eV_A"]),
            rho,
            plot_dir / f"calibration_{iteration:03d}.png",
        )
        return {
            "n": len(new),
            "spearman": rho,
            "spread_eV_A": previous["force_spread_eV_A"],
            "max_force_error_eV_A": previous["max_force_error_eV_A"],
            "force_rmse_eV_A": previous["force_rmse_eV_A"],
        }

    def zero_shot(self, ids: list[str], fixed: list) -> dict[str, Any] | None:
        """The foundation's own errors on the fixed held-out set, before any fine-tuning (a
        file foundation only): taken from an earlier evaluation of the same set, else
        measured. The energy is given as it comes and after refitting one reference energy
        per element (what fine-tuning's estimated E0s do: another level of theory has another
        energy zero)."""
        path = self.session.config.committee.foundation_model
        if not fixed or path is None or not Path(path).is_file():
            return None
        for record in self.session.log.records(self.name):
            known = record["result"]
            if known.get("fixed_structure_ids") == ids and "foundation_zero_shot" in known:
                return known["foundation_zero_shot"]
        from calculators.models.committee import mace_calculator

        c = self.session.config.committee
        measured = errors(
            mace_calculator([path], device=c.device), fixed, c.error_pressure_bins_GPa
        )
        return {
            **summary(measured),
            **energy_after_reference_refit(
                fixed, measured["energy_reference_eV_atom"], measured["energy_predicted_eV_atom"]
            ),
        }

    def learning_curve(
        self, iteration: int, current: dict[str, Any], fixed: list
    ) -> list[dict[str, Any]]:
        """Errors of every trained committee up to ``iteration`` on today's fixed set: taken
        from its evaluation when that used the same set, else measured again."""
        session = self.session
        ids = current["fixed_structure_ids"]
        evaluated = {r["iteration"]: r["result"] for r in session.log.records(self.name)}
        evaluated[iteration] = current
        points = []
        for record in session.log.records("train"):
            k, trained = record["iteration"], record["result"]
            if k > iteration or trained.get("reused_from") is not None:
                continue
            known = evaluated.get(k)
            if known is not None and known.get("fixed_structure_ids") == ids:
                figures = known["held_out"].get(FIXED, {"n": 0})
            elif fixed:
                figures = summary(
                    errors(
                        load_committee(session, k),
                        fixed,
                        session.config.committee.error_pressure_bins_GPa,
                    )
                )
            else:
                figures = {"n": 0}
            points.append(
                {
                    "iteration": k,
                    "n_train": trained["n_train"],
                    "n": figures.get("n", 0),
                    **{key: figures.get(key) for key, _ in CURVE},
                    "energy_mae_meV_atom": figures.get("energy_mae_meV_atom"),
                    "force_mae_eV_A": figures.get("force_mae_eV_A"),
                    "pressure_mae_GPa": figures.get("pressure_mae_GPa"),
                }
            )
        return points

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        fixed = result["held_out"].get(FIXED, {})
        calibration = result.get("calibration") or {}
        newest = [name for name in result["held_out"] if name != FIXED]
        out = {
            "fixed_held_out_labels": fixed.get("n", 0),
            **{f"fixed_{key}": fixed.get(key) for key, _ in CURVE},
            "spread_error_rank_correlation": calibration.get("spearman"),
        }
        zero_shot = result.get("foundation_zero_shot")
        if zero_shot:
            out["foundation_zero_shot"] = {
                k: zero_shot.get(k)
                for k in (
                    "energy_rmse_meV_atom",
                    "energy_refit_rmse_meV_atom",
                    "force_rmse_eV_A",
                    "pressure_rmse_GPa",
                )
            }
        if newest:
            out["newest_slice"] = newest[-1]
            out["newest_slice_force_rmse_eV_A"] = result["held_out"][newest[-1]].get(
                "force_rmse_eV_A"
            )
        return out
