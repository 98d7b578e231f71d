"""Evaluate: the held-out error of the iteration's committee, how well the previous committee's
spread predicted the error on the frames it selected (calibration), and the plots."""

from __future__ import annotations

from typing import Any

import numpy as np

from al_loop import plots
from al_loop.committee import labelled_structures, load_committee
from al_loop.evaluation import errors, rank_correlation, summary
from al_loop.stages.base import Stage


class EvaluateStage(Stage):
    name = "evaluate"

    def wanted(self, iteration: int) -> bool:
        """Nothing new to evaluate when the iteration reused the previous committee."""
        trained = self.session.log.result(iteration, "train")
        return not (trained and trained.get("reused_from") is not None)

    def compute(self, iteration: int) -> dict[str, Any]:
        session = self.session
        plot_dir = session.workdir / "plots"
        result: dict[str, Any] = {}
        train, held_out = labelled_structures(session)
        held = errors(load_committee(session, iteration), held_out)
        if held["n"]:
            plots.parity(
                held["forces_reference"],
                held["forces_predicted"],
                plot_dir / f"parity_{iteration:03d}.png",
            )
        calibration = (
            self._spread_and_calibration(iteration, train + held_out) if iteration else None
        )
        if calibration:
            result["calibration"] = calibration
        curve = self.learning_curve(iteration)
        plots.learning_curve(
            curve["iterations"],
            curve["n_labels"],
            curve["force_rmse_eV_A"],
            curve["energy_rmse_meV_atom"],
            plot_dir / "learning_curve.png",
        )
        result["held_out"] = summary(held)
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

    def learning_curve(self, iteration: int) -> dict[str, list]:
        """Held-out errors of every trained committee up to ``iteration``."""
        curve: dict[str, list] = {
            "iterations": [],
            "n_labels": [],
            "force_rmse_eV_A": [],
            "energy_rmse_meV_atom": [],
        }
        for record in self.session.log.records("train"):
            result = record["result"]
            if record["iteration"] > iteration or not result["held_out"].get("n"):
                continue
            curve["iterations"].append(record["iteration"])
            curve["n_labels"].append(result["n_train"])
            curve["force_rmse_eV_A"].append(result["held_out"]["force_rmse_eV_A"])
            curve["energy_rmse_meV_atom"].append(result["held_out"]["energy_rmse_meV_atom"])
        return curve

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        held, calibration = result["held_out"], result.get("calibration") or {}
        return {
            "held_out_force_rmse_eV_A": held.get("force_rmse_eV_A"),
            "held_out_energy_rmse_meV_atom": held.get("energy_rmse_meV_atom"),
            "spread_error_rank_correlation": calibration.get("spearman"),
        }
