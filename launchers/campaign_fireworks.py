"""A campaign's Fireworks: the one door from the campaign to FireWorks.

:class:`CampaignFireworks` writes the files FireWorks' own tools read (``my_launchpad.yaml``,
``my_fworker.yaml``), submits labelling workflows, counts Fireworks by state, repairs what a
stopped local launcher left behind, reruns FIZZLED Fireworks and runs local rockets. The
campaign (:mod:`al_loop`) never imports FireWorks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fireworks import LaunchPad

from calculators.oracles import Oracle
from launchers.launchpad import (
    make_fworker,
    make_launchpad,
    write_fworker_file,
    write_launchpad_file,
)
from launchers.rockets import rerun_lost_local_runs, run_workers
from launchers.workflows import label_workflows, submit_label_workflows, workflow_states

#: FireWorks states after which a Firework needs nothing more from a worker.
TERMINAL_STATES = ("COMPLETED", "FIZZLED", "DEFUSED", "PAUSED")


@dataclass
class CampaignFireworks:
    """The Fireworks of campaign ``campaign`` on the LaunchPad database ``launchpad_database``
    of the server at ``uri``; local launchers work under ``workdir/launches``."""

    campaign: str
    uri: str
    launchpad_database: str
    workdir: Path
    store_spec: dict[str, str]
    fworker_name: str = "al-loop-local"
    category: str | None = None
    fworker_env: dict[str, Any] = field(default_factory=dict)
    #: Variables of local launcher processes (the URI when it comes from a variable).
    process_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.launchpad_file = write_launchpad_file(
            self.workdir / "my_launchpad.yaml", self.uri, self.launchpad_database
        )
        fworker = make_fworker(
            self.fworker_name, self.category, self.fworker_env, campaign=self.campaign
        )
        self.fworker_file = write_fworker_file(self.workdir / "my_fworker.yaml", fworker)

    @property
    def launch_dir(self) -> Path:
        return self.workdir / "launches"

    @functools.cached_property
    def launchpad(self) -> LaunchPad:
        return make_launchpad(self.uri, self.launchpad_database)

    def submit_labels(
        self,
        structure_ids: list[str],
        iteration: int,
        oracle: Oracle,
        elements: list[str],
        batch_size: int,
    ) -> bool:
        """Add the labelling workflows of ``iteration`` unless they exist; returns whether
        anything was added."""
        workflows = label_workflows(
            structure_ids,
            self.campaign,
            iteration,
            oracle,
            self.store_spec,
            batch_size,
            self.category,
            elements,
        )
        return submit_label_workflows(self.launchpad, workflows)[1]

    def states(self, iteration: int | None = None) -> dict[str, int]:
        """The campaign's Fireworks (of one iteration) counted by FireWorks state."""
        return workflow_states(self.launchpad, self.campaign, iteration)

    @staticmethod
    def pending(states: dict[str, int]) -> int:
        """How many of ``states`` still need a worker."""
        return sum(n for state, n in states.items() if state not in TERMINAL_STATES)

    def rerun_lost(self) -> list[int]:
        """Repair the Fireworks a stopped local launcher left RUNNING; returns their ids."""
        return rerun_lost_local_runs(self.launchpad, self.campaign, self.launch_dir)

    def rerun_fizzled(self) -> list[int]:
        """Rerun the campaign's FIZZLED Fireworks (a rerun labels only what is not ``ok``)."""
        fizzled = [
            d["fw_id"]
            for d in self.launchpad.fireworks.find(
                {"spec.al_loop.campaign": self.campaign, "state": "FIZZLED"}, {"fw_id": 1}
            )
        ]
        for fw_id in fizzled:
            self.launchpad.rerun_fw(fw_id)
        return fizzled

    def run_local(self, workers: int) -> list[int]:
        """Run ``workers`` local rocket launchers until no Firework is ready; their exit codes."""
        return run_workers(
            self.launchpad_file,
            self.fworker_file,
            self.launch_dir,
            workers,
            env=self.process_env,
        )
