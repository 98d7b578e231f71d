"""The base every stage stands on: the done-check, the record, the timing, the progress events.

A stage is keyed by (campaign, iteration, name). :meth:`Stage.run` returns the stored result
when the stage is recorded as done (a campaign resumes where it stopped, and running a stage
twice does nothing twice); otherwise it computes, records the result with a short summary and
its wall time in the campaign's log before anything else starts, and reports progress events.
A new stage is one module in this package with a subclass that sets ``name`` and ``compute``.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from al_loop.campaign import CampaignSession

log = logging.getLogger(__name__)

EventKind = Literal["start", "step", "done", "warning"]


@dataclass(frozen=True)
class ProgressEvent:
    """Something a stage reports while it runs: its ``figures`` are numbers and short texts
    with units in their names (``median_spread_eV_A``), rendered as they come."""

    stage: str
    iteration: int
    kind: EventKind
    figures: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[ProgressEvent], None]


def log_progress(event: ProgressEvent) -> None:
    """The default :data:`Progress`: a log line (library code never prints)."""
    level = logging.WARNING if event.kind == "warning" else logging.INFO
    log.log(
        level, "iteration %d %s %s: %s", event.iteration, event.stage, event.kind, event.figures
    )


@dataclass
class Outcome:
    """What :meth:`Stage.run` gives: the result, and whether the stage is done (recorded)."""

    result: dict[str, Any]
    done: bool = True
    reused: bool = False


class Stage(ABC):
    """One step of a campaign, run once per (campaign, iteration)."""

    #: The stage's name, its key in the campaign's log.
    name: ClassVar[str]

    def __init__(self, session: CampaignSession, progress: Progress = log_progress) -> None:
        self.session = session
        self.progress = progress

    def emit(self, iteration: int, kind: EventKind, **figures: Any) -> None:
        self.progress(ProgressEvent(self.name, iteration, kind, figures))

    def wanted(self, iteration: int) -> bool:
        """Whether the stage has anything to do in ``iteration`` (default: always)."""
        return True

    def run(self, iteration: int) -> Outcome:
        """The stage's result: the recorded one, or computed and recorded now."""
        record = self.session.log.stage(iteration, self.name)
        if record is not None and self.current(record["result"]):
            return Outcome(self.reuse(iteration, record["result"]), reused=True)
        self.emit(iteration, "start", **self.start_figures(iteration))
        started = time.perf_counter()
        result = self.compute(iteration)
        wall_s = time.perf_counter() - started
        summary = self.summarize(result)
        if not self.complete(result):
            self.emit(iteration, "warning", **summary, wall_s=wall_s)
            return Outcome(result, done=False)
        self.session.log.record(iteration, self.name, result, summary, wall_s)
        self.emit(iteration, "done", **summary, wall_s=wall_s)
        return Outcome(result)

    def start_figures(self, iteration: int) -> dict[str, Any]:
        """What the start event says (default: nothing more than the stage's name)."""
        return {}

    @abstractmethod
    def compute(self, iteration: int) -> dict[str, Any]:
        """Do the work; the returned result (JSON-able) is recorded."""

    def current(self, result: dict[str, Any]) -> bool:
        """Whether a recorded result still holds (default: always; labels made with physics
        the campaign no longer uses do not)."""
        return True

    def complete(self, result: dict[str, Any]) -> bool:
        """Whether ``result`` finishes the stage (a label stage waiting on Fireworks does not:
        it is not recorded, and the next run tries again)."""
        return True

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        """The few figures ``al-loop status`` and the done event show (default: none)."""
        return {}

    def reuse(self, iteration: int, result: dict[str, Any]) -> dict[str, Any]:
        """The result of a stage found done (default: as recorded)."""
        return result
