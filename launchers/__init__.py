"""FireWorks: the Firetasks and workflows that label structures, LaunchPads, rockets."""

from launchers.launchpad import (
    fworker_env,
    make_fworker,
    make_launchpad,
    write_fworker_file,
    write_launchpad_file,
)
from launchers.rockets import rerun_lost_local_runs, run_workers, start_workers
from launchers.tasks import LabellingFailed, LabelStructuresTask
from launchers.workflows import label_workflows, submit_label_workflow, workflow_states

__all__ = [
    "LabelStructuresTask",
    "LabellingFailed",
    "fworker_env",
    "label_workflows",
    "make_fworker",
    "make_launchpad",
    "rerun_lost_local_runs",
    "run_workers",
    "start_workers",
    "submit_label_workflow",
    "workflow_states",
    "write_fworker_file",
    "write_launchpad_file",
]
