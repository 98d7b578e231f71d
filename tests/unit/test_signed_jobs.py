"""Jobs that travel in Fireworks (a member's training, a campaign command on a queue) are
signed by the campaign machine's key and refused by a worker when anything in them was changed:
what they name is loaded and run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from fireworks import Firework

from calculators.models.member_training import MemberJob
from database.model_signing import UntrustedModel
from launchers.campaign_commands import CommandJob, file_sha256


def _job() -> MemberJob:
    return MemberJob(
        campaign="demo",
        iteration=1,
        member=0,
        train_label_ids=["a", "b"],
        valid_label_ids=["c"],
        settings={"max_epochs": 2, "device": "auto"},
        seed=10,
        data_key="k",
        foundation="/models/foundation.model",
    )


def test_a_signed_job_survives_its_trip_through_a_firework() -> None:
    from launchers.workflows import train_workflows

    (workflow,) = train_workflows([_job()], {"database": "d"}, "gpu")
    firework = Firework.from_dict(json.loads(json.dumps(workflow.fws[0].to_dict())))
    (task,) = firework.tasks
    job = MemberJob.from_dict(dict(task["job"])).check()
    assert job.store == {"database": "d"}  # where it is stored is signed too
    assert dataclasses.replace(job, signature=None, store={}) == _job()
    assert firework.spec["_category"] == "gpu"


def test_workers_take_the_firetasks_al_loop_runs_and_no_other() -> None:
    from launchers.campaign_commands import CampaignCommandTask
    from launchers.launchpad import AL_LOOP_TASKS, make_fworker
    from launchers.tasks import LabelStructuresTask, TrainMemberTask

    names = {t._fw_name for t in (LabelStructuresTask, TrainMemberTask, CampaignCommandTask)}
    assert set(AL_LOOP_TASKS) == names
    query = make_fworker("w", "dft", {}, campaign="c").query
    allowed = query["spec._tasks"]["$not"]["$elemMatch"]["_fw_name"]["$nin"]
    assert set(allowed) == names


@pytest.mark.parametrize(
    "change",
    [
        {"foundation": "/tmp/evil.model"},
        {"settings": {"max_epochs": 2, "device": "auto", "extra_args": {"x": 1}}},
        {"member": 1},
        {"signature": None},
        {"store": {"database": "elsewhere"}},
    ],
)
def test_a_changed_or_unsigned_job_is_refused(change: dict) -> None:
    forged = dataclasses.replace(_job().signed(), **change)
    with pytest.raises(UntrustedModel, match="training job of demo iteration 1"):
        forged.check()


def test_a_campaign_command_runs_only_as_signed_and_on_the_file_signed(tmp_path: Path) -> None:
    campaign = tmp_path / "c.yaml"
    campaign.write_text("name: c\n")
    job = CommandJob(
        "c",
        ["liquid", str(campaign), "--temperatures", "900"],
        str(tmp_path),
        str(campaign),
        file_sha256(campaign),
    )
    signed = CommandJob(**dataclasses.asdict(job.signed()))
    assert signed.check() == signed
    forged = dataclasses.replace(signed, argv=["liquid", str(campaign), "--temperatures", "1"])
    with pytest.raises(UntrustedModel, match="queue job `al-loop liquid"):
        forged.check()
    campaign.write_text("name: c\nseed: 1\n")
    with pytest.raises(RuntimeError, match="changed since `al-loop liquid --queue`"):
        signed.check()
    with pytest.raises(ValueError, match="a queue job runs one of"):
        CommandJob("c", ["run", str(campaign)], str(tmp_path), str(campaign), "x")
