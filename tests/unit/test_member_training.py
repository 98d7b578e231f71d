"""A member's training job travels in a Firework: signed by the campaign machine's key, and
refused by a worker when anything in it was changed (its foundation file and mace options are
loaded and run)."""

from __future__ import annotations

import dataclasses

import pytest

from calculators.models.member_training import MemberJob
from database.model_signing import UntrustedModel


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
    job = _job().signed()
    assert job.signature is not None
    assert MemberJob.from_dict(job.to_dict()).check() == job


@pytest.mark.parametrize(
    "change",
    [
        {"foundation": "/tmp/evil.model"},
        {"settings": {"max_epochs": 2, "device": "auto", "extra_args": {"x": 1}}},
        {"member": 1},
        {"signature": None},
    ],
)
def test_a_changed_or_unsigned_job_is_refused(change: dict) -> None:
    forged = dataclasses.replace(_job().signed(), **change)
    with pytest.raises(UntrustedModel, match="training job of demo iteration 1"):
        forged.check()
