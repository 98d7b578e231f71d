"""The active-learning loop: the ordered list of stages, run until the committee converges.

Iteration 0 seeds, labels, trains the first committee and evaluates it. Iteration k >= 1
explores with committee k-1, checks convergence, selects, labels, trains committee k and
evaluates it. Each stage records its result in the campaign's log before the next one starts
(al_loop/stages/base.py), so ``al-loop run`` resumes where it stopped.
"""

from __future__ import annotations

import os
from typing import Any

from al_loop.campaign import CampaignSession, open_campaign
from al_loop.config import CampaignConfig
from al_loop.stages import (
    EvaluateStage,
    ExploreStage,
    LabelStage,
    SeedStage,
    SelectStage,
    Stage,
    TrainStage,
)
from al_loop.stages.base import Progress, log_progress


def campaign_stages(
    session: CampaignSession, progress: Progress, workers: int | None = None
) -> tuple[list[Stage], list[Stage]]:
    """The stages of iteration 0, and of every later iteration, in order."""
    label = LabelStage(session, progress, workers=workers)
    train, evaluate = TrainStage(session, progress), EvaluateStage(session, progress)
    first = [SeedStage(session, progress), label, train, evaluate]
    later = [
        ExploreStage(session, progress),
        SelectStage(session, progress),
        label,
        train,
        evaluate,
    ]
    return first, later


def converged(session: CampaignSession, iteration: int) -> bool:
    """Whether the share of accurate frames (force spread, and energy spread if
    ``selection.converged_energy_spread_meV_atom`` is set) reached the threshold in the last
    ``converged_iterations`` explorations up to ``iteration``."""
    sel = session.config.selection
    for k in range(iteration, iteration - sel.converged_iterations, -1):
        explored = session.log.result(k, "explore") if k >= 1 else None
        if explored is None:
            return False
        share = explored.get("converged_share", explored["fractions"]["accurate"])
        if share < sel.converged_fraction:
            return False
    return True


def run_campaign(
    config: CampaignConfig,
    workers: int | None = None,
    progress: Progress = log_progress,
    accept_physics_change: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the whole loop; returns the dataset summary and how it ended
    (``finished`` is None when a stage could not finish: labelling still under way)."""
    os.environ.pop("QUACC_WORKFLOW_ENGINE", None)
    with open_campaign(config, accept_physics_change=accept_physics_change, lock="run") as session:
        first, later = campaign_stages(session, progress, workers)
        finished = None
        for iteration in range(config.selection.max_iterations + 1):
            for stage in first if iteration == 0 else later:
                if not stage.wanted(iteration):
                    continue
                assert session.lock is not None
                session.lock.check()
                if not stage.run(iteration).done:
                    return {**summary(session, None), "unfinished": (iteration, stage.name)}
                if stage.name == "explore" and converged(session, iteration):
                    finished = session.log.finish(iteration, "converged")
                    break
            if finished:
                break
        else:
            finished = session.log.finish(config.selection.max_iterations, "max_iterations")
        return summary(session, finished)


def distil_campaign(
    config: CampaignConfig,
    progress: Progress = log_progress,
    threads: int | None = None,
    allow_unconverged: bool = False,
) -> dict[str, Any]:
    """Distil the campaign's last committee into a student (al_loop/stages/distil.py); the
    campaign must have converged unless ``allow_unconverged``. Returns the stage's result."""
    from al_loop.stages.distil import DistilStage, teacher_iteration

    with open_campaign(config, lock="distil") as session:
        finished = session.log.document() or {}
        reason = (finished.get("finished") or {}).get("reason")
        if reason != "converged" and not allow_unconverged:
            raise ValueError(
                f"campaign {session.name!r} has not converged (finished: {reason or 'no'}); "
                "run `al-loop run` to the end, or distil anyway with --allow-unconverged"
            )
        iteration = teacher_iteration(session)
        return DistilStage(session, progress, threads=threads).run(iteration).result


def phase_campaign(
    config: CampaignConfig,
    progress: Progress = log_progress,
    threads: int | None = None,
    **phase: Any,
) -> dict[str, Any]:
    """Phase stability with the campaign's student (its last distillation) or, with
    ``phase.model: teacher``, its last committee (al_loop/stages/phase.py). ``phase`` keys
    override the campaign's phase section for this run only (``model="oracle"``): the
    campaign file recorded in its log stays the user's."""
    import dataclasses

    from al_loop.phase.compare import with_phase
    from al_loop.stages.distil import teacher_iteration
    from al_loop.stages.phase import PhaseStage

    with open_campaign(config, lock="phase") as opened:
        session = dataclasses.replace(opened, config=with_phase(config, **phase))
        if session.config.phase.model == "student":
            distilled = session.log.records("distil")
            if not distilled:
                raise ValueError(
                    f"campaign {session.name!r} has no student: run `al-loop distil` first, "
                    "or set phase.model: teacher"
                )
            iteration = int(distilled[-1]["iteration"])
        else:
            iteration = teacher_iteration(session)
        return PhaseStage(session, progress, threads=threads).run(iteration).result


def summary(session: CampaignSession, finished: dict[str, Any] | None) -> dict[str, Any]:
    """The dataset's counts, the last label stage, the learning curve (on the fixed held-out
    set, from the last evaluation) and how the loop ended."""
    stats = session.store.stats(session.name)
    labelled = session.log.records("label")
    stats["label_stage"] = labelled[-1]["result"] if labelled else None
    stats["workdir"] = str(session.workdir)
    stats["finished"] = finished
    stats["plots"] = str(session.workdir / "plots")
    evaluated = session.log.records("evaluate")
    last = evaluated[-1]["result"] if evaluated else {}
    stats["learning_curve"] = last.get("learning_curve", [])
    stats["foundation_zero_shot"] = last.get("foundation_zero_shot")
    return stats
