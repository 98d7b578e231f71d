"""The active-learning loop: explore → select → label → train → evaluate, until converged.

Iteration 0 labels the seed structures and trains the first committee. Iteration k >= 1
explores with committee k-1, checks convergence, selects, labels, trains committee k and
evaluates it. Every stage is recorded in ``metrics`` (campaign, iteration, stage) with what it
produced before the next one starts, so ``al-loop run`` resumes where it stopped.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read, write

from al_loop import plots
from al_loop.campaign import (
    CampaignSession,
    Progress,
    _quiet,
    label_stage,
    open_campaign,
    record_stage,
    seed_stage,
    stage_record,
)
from al_loop.config import CampaignConfig
from al_loop.evaluation import errors, rank_correlation, summary
from al_loop.exploration import MDSettings, explore, frame_table
from al_loop.selection import classify, fractions, select
from al_loop.training import labelled_structures, load_committee, train_stage

log = logging.getLogger(__name__)


def conditions(config: CampaignConfig) -> list[tuple[str, float, float]]:
    """Every (ensemble, T, P) of the campaign, repeated per trajectory."""
    sysc, exp = config.system, config.exploration
    grid = itertools.product(exp.ensembles, sysc.temperatures_K, sysc.pressures_GPa)
    return [c for c in grid for _ in range(exp.trajectories_per_condition)]


def _frames_bytes(frames: list[Atoms]) -> bytes:
    bare = [Atoms(f.numbers, f.positions, cell=f.cell, pbc=f.pbc) for f in frames]
    out = io.StringIO()
    write(out, bare, format="extxyz")
    return out.getvalue().encode()


def _frames_from_bytes(data: bytes) -> list[Atoms]:
    return read(io.StringIO(data.decode()), index=":", format="extxyz")


def explore_stage(
    session: CampaignSession, iteration: int, progress: Progress = _quiet
) -> dict[str, Any]:
    """Committee MD from labelled structures (the seeds by default); the frames go to GridFS,
    their table to metrics."""
    done = stage_record(session.store, session.name, iteration, "explore")
    if done:
        return done["result"]
    cfg = session.config
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
    settings = MDSettings(
        steps=exp.steps,
        timestep_fs=exp.timestep_fs,
        frame_interval=exp.frame_interval,
        max_spread_eV_A=exp.max_spread_eV_A,
        heat_factor=exp.heat_factor,
    )
    progress("explore", {"iteration": iteration, "trajectories": len(todo)})

    def report(trajectory: list[Atoms]) -> None:
        last = trajectory[-1].info
        progress(
            "trajectory",
            {
                "iteration": iteration,
                "trajectory": last["trajectory"],
                "frames": len(trajectory),
                "max_spread": max(f.info["force_spread"] for f in trajectory),
                "P_GPa": last["P_GPa"],
                "stop_reason": last["stop_reason"],
            },
        )

    driver = calc.first_member() if exp.driver == "first" else calc
    frames = explore(starts, calc, todo, settings, cfg.seed * 1000 + iteration, report, driver)
    table = frame_table(frames)
    sel = cfg.selection
    classes = classify(table["force_spread"], sel.trust_lo_eV_A, sel.trust_hi_eV_A)
    file_id = session.store.put_file(
        _frames_bytes(frames),
        f"{session.name}-{iteration:03d}-frames.extxyz",
        campaign=session.name,
        iteration=iteration,
    )
    result = {
        "trajectories": len(todo),
        "frames": len(frames),
        "frames_file": file_id,
        "table": {k: v.tolist() for k, v in table.items()},
        "fractions": fractions(classes),
        "stopped_early": int(sum(bool(r) for r in table["stop_reason"])),
        "max_pressure_GPa": float(np.nanmax(table["P_GPa"])) if len(frames) else None,
    }
    record_stage(session.store, session.name, iteration, "explore", result)
    progress("explored", {"iteration": iteration, **_short(result)})
    return result


def _short(result: dict[str, Any]) -> dict[str, Any]:
    spreads = np.asarray(result["table"]["force_spread"], dtype=float)
    finite = spreads[np.isfinite(spreads)]
    return {
        "frames": result["frames"],
        "fractions": result["fractions"],
        "median_spread": float(np.median(finite)) if finite.size else None,
        "stopped_early": result["stopped_early"],
    }


def converged(session: CampaignSession, iteration: int) -> bool:
    """Whether the accurate fraction reached the threshold in the last
    ``converged_iterations`` explorations up to ``iteration``."""
    sel = session.config.selection
    last = range(iteration, iteration - sel.converged_iterations, -1)
    for k in last:
        rec = stage_record(session.store, session.name, k, "explore") if k >= 1 else None
        if rec is None or rec["result"]["fractions"]["accurate"] < sel.converged_fraction:
            return False
    return True


def select_stage(
    session: CampaignSession, iteration: int, progress: Progress = _quiet
) -> dict[str, Any]:
    """Choose frames to label (trust window, FPS on MACE descriptors, cap) and store them."""
    done = stage_record(session.store, session.name, iteration, "select")
    if done:
        return done["result"]
    cfg, store = session.config, session.store
    explored = stage_record(store, session.name, iteration, "explore")["result"]
    frames = _frames_from_bytes(store.read_file(explored["frames_file"]))
    table = explored["table"]
    spreads = np.asarray(table["force_spread"], dtype=float)
    calc = load_committee(session, iteration - 1, cfg.exploration.dtype)
    sel = cfg.selection
    lo, hi = sel.trust_lo_eV_A, sel.trust_hi_eV_A
    # frames that can be picked (with an adaptive window, any finite spread below hi) need a
    # descriptor; the others get a zero row that selection never reads
    pickable = np.isfinite(spreads) & (spreads < hi)
    if sel.adaptive_percentile is None:
        pickable &= spreads >= lo
    computed = {int(i): calc.descriptor(frames[i]) for i in np.flatnonzero(pickable)}
    reference = None
    descriptors = np.zeros((len(frames), 1))
    if computed:
        descriptors = np.zeros((len(frames), len(next(iter(computed.values())))))
        for i, row in computed.items():
            descriptors[i] = row
        train, held_out = labelled_structures(session)
        reference = np.array([calc.descriptor(a) for a in train + held_out])
    choice = select(
        spreads,
        descriptors,
        lo,
        hi,
        sel.max_per_iteration,
        adaptive_percentile=sel.adaptive_percentile,
        reference=reference,
        seed=cfg.seed * 1000 + iteration,
    )
    ids = []
    for i in choice.indices:
        source = {
            "kind": "md",
            **{k: table[k][i] for k in ("trajectory", "step", "target_T_K", "target_P_GPa")},
            "force_spread": float(spreads[i]),
        }
        ids.append(store.add_structure(frames[i], session.name, iteration, source))
    result = {**choice.report(), "structure_ids": ids}
    record_stage(store, session.name, iteration, "select", result)
    progress(
        "selected",
        {"iteration": iteration, **{k: result[k] for k in ("n_candidates", "n_selected")}},
    )
    return result


def evaluate_stage(
    session: CampaignSession, iteration: int, progress: Progress = _quiet
) -> dict[str, Any]:
    """Calibration of committee k-1's spread on the frames labelled in k, the held-out error of
    committee k, and the iteration's plots."""
    done = stage_record(session.store, session.name, iteration, "evaluate")
    if done:
        return done["result"]
    store, cfg = session.store, session.config
    plot_dir = session.workdir / "plots"
    result: dict[str, Any] = {}
    trained = stage_record(store, session.name, iteration, "train")["result"]
    train, held_out = labelled_structures(session)
    committee = load_committee(session, iteration)
    held = errors(committee, held_out)
    if held["n"]:
        plots.parity(
            held["forces_reference"],
            held["forces_predicted"],
            plot_dir / f"parity_{iteration:03d}.png",
        )
    if iteration >= 1:
        explored = stage_record(store, session.name, iteration, "explore")["result"]
        spreads = np.asarray(explored["table"]["force_spread"], dtype=float)
        sel = cfg.selection
        plots.spread_histogram(
            spreads,
            (sel.trust_lo_eV_A, sel.trust_hi_eV_A),
            plot_dir / f"spread_{iteration:03d}.png",
            title=f"iteration {iteration}",
        )
        selected = set(
            stage_record(store, session.name, iteration, "select")["result"]["structure_ids"]
        )
        new = [a for a in train + held_out if a.info["structure_id"] in selected]
        if new:
            previous = errors(load_committee(session, iteration - 1), new)
            rho = rank_correlation(previous["force_spread_eV_A"], previous["max_force_error_eV_A"])
            plots.calibration(
                np.array(previous["force_spread_eV_A"]),
                np.array(previous["max_force_error_eV_A"]),
                rho,
                plot_dir / f"calibration_{iteration:03d}.png",
            )
            result["calibration"] = {
                "n": len(new),
                "spearman": rho,
                "spread_eV_A": previous["force_spread_eV_A"],
                "max_force_error_eV_A": previous["max_force_error_eV_A"],
                "force_rmse_eV_A": previous["force_rmse_eV_A"],
            }
    curve = learning_curve(session, iteration, trained)
    plots.learning_curve(
        curve["iterations"],
        curve["n_labels"],
        curve["force_rmse_eV_A"],
        curve["energy_rmse_meV_atom"],
        plot_dir / "learning_curve.png",
    )
    result["held_out"] = summary(held)
    record_stage(store, session.name, iteration, "evaluate", result)
    progress(
        "evaluated",
        {
            "iteration": iteration,
            "held_out_force_rmse": held.get("force_rmse_eV_A"),
            "spearman": result.get("calibration", {}).get("spearman"),
        },
    )
    return result


def learning_curve(
    session: CampaignSession, iteration: int, latest: dict[str, Any]
) -> dict[str, list]:
    curve: dict[str, list] = {
        "iterations": [],
        "n_labels": [],
        "force_rmse_eV_A": [],
        "energy_rmse_meV_atom": [],
    }
    for k in range(iteration + 1):
        rec = stage_record(session.store, session.name, k, "train")
        result = latest if k == iteration else (rec["result"] if rec else None)
        if not result or not result["held_out"].get("n"):
            continue
        curve["iterations"].append(k)
        curve["n_labels"].append(result["n_train"])
        curve["force_rmse_eV_A"].append(result["held_out"]["force_rmse_eV_A"])
        curve["energy_rmse_meV_atom"].append(result["held_out"]["energy_rmse_meV_atom"])
    return curve


def run_campaign(
    config: CampaignConfig, workers: int | None = None, progress: Progress = _quiet
) -> dict[str, Any]:
    """Run (or resume) the whole loop; returns the dataset summary and how it ended."""
    os.environ.pop("QUACC_WORKFLOW_ENGINE", None)
    with open_campaign(config) as session:
        ids = seed_stage(session)
        progress("seed", {"structures": len(ids)})
        label = label_stage(session, 0, ids, workers, progress)
        if not _labelled(session, 0):
            return _summary(session, label, None)
        _train(session, 0, progress)
        evaluate_stage(session, 0, progress)
        finished = None
        for k in range(1, config.selection.max_iterations + 1):
            explore_stage(session, k, progress)
            if converged(session, k):
                finished = _finish_once(session, k, "converged")
                break
            chosen = select_stage(session, k, progress)
            if not chosen["structure_ids"]:  # nothing to learn: committee k is committee k-1
                log.warning("iteration %d selected nothing; the committee is kept", k)
                _keep_committee(session, k)
                continue
            label = label_stage(session, k, chosen["structure_ids"], workers, progress)
            if not _labelled(session, k):
                return _summary(session, label, None)
            _train(session, k, progress)
            evaluate_stage(session, k, progress)
        else:
            finished = _finish_once(session, config.selection.max_iterations, "max_iterations")
        return _summary(session, label, finished)


def _train(session: CampaignSession, iteration: int, progress: Progress) -> dict[str, Any]:
    done = stage_record(session.store, session.name, iteration, "train")
    if done:
        return done["result"]
    result = train_stage(session, iteration, progress)
    record_stage(session.store, session.name, iteration, "train", result)
    progress(
        "trained",
        {
            "iteration": iteration,
            "n_train": result["n_train"],
            "held_out_force_rmse": result["held_out"].get("force_rmse_eV_A"),
        },
    )
    return result


def _keep_committee(session: CampaignSession, iteration: int) -> None:
    """Record that iteration ``iteration`` trains nothing and reuses the previous committee."""
    if stage_record(session.store, session.name, iteration, "train") is None:
        previous = stage_record(session.store, session.name, iteration - 1, "train")["result"]
        reused = previous.get("reused_from", iteration - 1)
        record_stage(
            session.store, session.name, iteration, "train", {**previous, "reused_from": reused}
        )


def _labelled(session: CampaignSession, iteration: int) -> bool:
    """Whether the label stage of ``iteration`` finished (its Fireworks all ended)."""
    return stage_record(session.store, session.name, iteration, "label") is not None


def _finish_once(session: CampaignSession, iteration: int, reason: str) -> dict[str, Any]:
    done = stage_record(session.store, session.name, iteration, "finished")
    if done:
        return done["result"]
    result = {"reason": reason, "iteration": iteration}
    record_stage(session.store, session.name, iteration, "finished", result)
    session.store.db.campaigns.update_one({"_id": session.name}, {"$set": {"finished": result}})
    return result


def _summary(
    session: CampaignSession, label: dict[str, Any], finished: dict[str, Any] | None
) -> dict[str, Any]:
    stats = session.store.stats(session.name)
    stats["label_stage"] = label
    stats["workdir"] = str(session.workdir)
    stats["finished"] = finished
    stats["plots"] = str(session.workdir / "plots")
    trained = [
        r
        for r in session.store.db.metrics.find(
            {"campaign": session.name, "stage": "train", "status": "done"}
        )
    ]
    stats["learning_curve"] = [
        {
            "iteration": r["iteration"],
            "n_train": r["result"]["n_train"],
            "held_out_force_rmse_eV_A": r["result"]["held_out"].get("force_rmse_eV_A"),
        }
        for r in sorted(trained, key=lambda r: r["iteration"])
    ]
    return stats
