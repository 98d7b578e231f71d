"""Explore: committee MD at every (ensemble, T, P) of the campaign, from labelled structures
(the seeds by default). The frames go to GridFS as one extxyz file, their table (trajectory,
step, T, P, volume, spreads, stop reason) into the stage's record."""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read, write

from al_loop.committee import labelled_structures, load_committee
from al_loop.config import CampaignConfig
from al_loop.exploration import MDSettings, explore, frame_table
from al_loop.selection import ACCURATE, classify, fractions
from al_loop.stages.base import Stage

log = logging.getLogger(__name__)


def conditions(config: CampaignConfig) -> list[tuple[str, float, float]]:
    """Every (ensemble, T, P) of the campaign, repeated per trajectory."""
    sysc, exp = config.system, config.exploration
    grid = itertools.product(exp.ensembles, sysc.temperatures_K, sysc.pressures_GPa)
    return [c for c in grid for _ in range(exp.trajectories_per_condition)]


def frames_to_bytes(frames: list[Atoms]) -> bytes:
    bare = [Atoms(f.numbers, f.positions, cell=f.cell, pbc=f.pbc) for f in frames]
    out = io.StringIO()
    write(out, bare, format="extxyz")
    return out.getvalue().encode()


def frames_from_bytes(data: bytes) -> list[Atoms]:
    return read(io.StringIO(data.decode()), index=":", format="extxyz")


def converged_share(
    classes: np.ndarray, table: dict[str, np.ndarray], energy_spread_meV_atom: float | None
) -> float:
    """The share of frames that count as accurate for convergence: force spread below the trust
    window and, if ``energy_spread_meV_atom`` is set, committee energy spread below it."""
    accurate = classes == ACCURATE
    if energy_spread_meV_atom is not None:
        spread = 1000 * np.asarray(table["energy_spread"], dtype=float)
        with np.errstate(invalid="ignore"):
            accurate &= np.isfinite(spread) & (spread < energy_spread_meV_atom)
    return float(accurate.mean()) if accurate.size else 0.0


class ExploreStage(Stage):
    name = "explore"

    def start_figures(self, iteration: int) -> dict[str, Any]:
        return {"trajectories": len(conditions(self.session.config))}

    def compute(self, iteration: int) -> dict[str, Any]:
        session, cfg = self.session, self.session.config
        exp = cfg.exploration
        train, held_out = labelled_structures(session)
        pool = train + held_out
        if exp.starts == "seeds":
            seeds = [a for a in pool if a.info["first_iteration"] == 0]
            if not seeds:
                log.warning(
                    "iteration %d: no seed structure is labelled ok; MD starts from any "
                    "labelled structure",
                    iteration,
                )
            pool = seeds or pool
        rng = np.random.default_rng([cfg.seed, iteration])
        todo = conditions(cfg)
        starts = [pool[int(i)] for i in rng.integers(len(pool), size=len(todo))]
        calc = load_committee(session, iteration - 1, exp.dtype)
        same = {f.name for f in dataclasses.fields(MDSettings)} & set(type(exp).model_fields)
        settings = MDSettings(**{name: getattr(exp, name) for name in same})

        def report(trajectory: list[Atoms]) -> None:
            last = trajectory[-1].info
            self.emit(
                iteration,
                "warning" if last["stop_reason"] else "step",
                trajectory=last["trajectory"],
                frames=len(trajectory),
                max_spread_eV_A=max(f.info["force_spread"] for f in trajectory),
                P_GPa=last["P_GPa"],
                **({"stopped": last["stop_reason"]} if last["stop_reason"] else {}),
            )

        driver = calc.first_member() if exp.driver == "first" else calc
        frames = explore(starts, calc, todo, settings, cfg.seed * 1000 + iteration, report, driver)
        table = frame_table(frames)
        sel = cfg.selection
        classes = classify(table["force_spread"], sel.trust_lo_eV_A, sel.trust_hi_eV_A)
        file_id = session.store.put_file(
            frames_to_bytes(frames),
            f"{session.name}-{iteration:03d}-frames.extxyz",
            campaign=session.name,
            iteration=iteration,
        )
        return {
            "trajectories": len(todo),
            "frames": len(frames),
            "frames_file": file_id,
            "table": {k: v.tolist() for k, v in table.items()},
            "fractions": fractions(classes),
            "converged_share": converged_share(
                classes, table, sel.converged_energy_spread_meV_atom
            ),
            "stopped_early": int(sum(bool(r) for r in table["stop_reason"])),
            "max_pressure_GPa": float(np.nanmax(table["P_GPa"])) if len(frames) else None,
        }

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        spreads = np.asarray(result["table"]["force_spread"], dtype=float)
        finite = spreads[np.isfinite(spreads)]
        return {
            "frames": result["frames"],
            **result["fractions"],
            "median_spread_eV_A": float(np.median(finite)) if finite.size else None,
            "stopped_early": result["stopped_early"],
        }
