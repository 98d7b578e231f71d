"""FireWorks: the Firetasks and workflows of a campaign (labels, members' training, commands on
a queue), LaunchPads, rockets, queues.

:class:`CampaignFireworks` is what a campaign uses; the functions below it are its parts (and
what tests and benchmarks drive directly)."""

from launchers.campaign_fireworks import TERMINAL_STATES, CampaignFireworks
from launchers.launchpad import (
    make_fworker,
    make_launchpad,
    write_fworker_file,
    write_launchpad_file,
)
from launchers.queues import QueueSpec
from launchers.rockets import rerun_lost_local_runs, run_workers, start_workers
from launchers.tasks import LabellingFailed, LabelStructuresTask
from launchers.worker_env import fworker_env, process_env
from launchers.workflows import label_workflows, workflow_states

__all__ = [
    "TERMINAL_STATES",
    "CampaignFireworks",
    "LabelStructuresTask",
    "LabellingFailed",
    "QueueSpec",
    "fworker_env",
    "label_workflows",
    "make_fworker",
    "make_launchpad",
    "process_env",
    "rerun_lost_local_runs",
    "run_workers",
    "start_workers",
    "workflow_states",
    "write_fworker_file",
    "write_launchpad_file",
]
