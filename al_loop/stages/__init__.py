"""The stages of a campaign, one module each, on one base (:mod:`al_loop.stages.base`) that
owns the done-check, the record of the result, timing and progress events.

A new stage is a new module here and a place in :func:`al_loop.loop.campaign_stages` (or,
for a stage after the loop, like distil, its own entry point in :mod:`al_loop.loop`).
"""

from al_loop.stages.base import Outcome, ProgressEvent, Stage
from al_loop.stages.distil import DistilStage
from al_loop.stages.evaluate import EvaluateStage
from al_loop.stages.explore import ExploreStage
from al_loop.stages.label import LabelStage
from al_loop.stages.seed import SeedStage
from al_loop.stages.select import SelectStage
from al_loop.stages.train import TrainStage

__all__ = [
    "DistilStage",
    "EvaluateStage",
    "ExploreStage",
    "LabelStage",
    "Outcome",
    "ProgressEvent",
    "SeedStage",
    "SelectStage",
    "Stage",
    "TrainStage",
]
