"""The loop's bookkeeping on the real server: convergence from recorded explorations."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from al_loop.config import load_campaign
from al_loop.loop import converged
from al_loop.stages.explore import conditions
from database import CampaignLog, Store

pytestmark = pytest.mark.integration


def session(tmp_path: Path, store: Store, **selection: object) -> SimpleNamespace:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "c",
                "system": {
                    "elements": ["Cu"],
                    "pressures_GPa": [0, 100],
                    "temperatures_K": [300, 900],
                },
                "exploration": {"ensembles": ["npt", "heat"], "trajectories_per_condition": 2},
                "selection": {"converged_fraction": 0.95, **selection},
            }
        )
    )
    return SimpleNamespace(
        store=store, name="c", config=load_campaign(path), log=CampaignLog(store, "c")
    )


def explored(store: Store, iteration: int, accurate: float) -> None:
    fractions = {"accurate": accurate, "candidate": 1 - accurate, "failed": 0.0}
    CampaignLog(store, "c").record(iteration, "explore", {"fractions": fractions})


def test_two_accurate_explorations_in_a_row_converge(tmp_path: Path, store: Store) -> None:
    s = session(tmp_path, store)
    explored(store, 1, 0.96)
    assert not converged(s, 1)  # one is not enough
    explored(store, 2, 0.80)
    assert not converged(s, 2)
    explored(store, 3, 0.97)
    assert not converged(s, 3)  # 0.80 broke the run
    explored(store, 4, 0.95)
    assert converged(s, 4)  # the threshold itself counts
    assert not converged(s, 5)  # not explored yet


def test_one_accurate_exploration_when_asked(tmp_path: Path, store: Store) -> None:
    s = session(tmp_path, store, converged_iterations=1)
    explored(store, 1, 0.94)
    assert not converged(s, 1)
    explored(store, 2, 0.99)
    assert converged(s, 2)


def test_conditions_cover_the_grid(tmp_path: Path, store: Store) -> None:
    grid = conditions(session(tmp_path, store).config)
    assert len(grid) == 2 * 2 * 2 * 2  # ensembles x T x P x trajectories per condition
    assert set(grid) == {
        (e, t, p) for e in ("npt", "heat") for t in (300.0, 900.0) for p in (0.0, 100.0)
    }


def test_an_iteration_without_selection_reuses_the_committee(tmp_path: Path, store: Store) -> None:
    from al_loop.committee import committee_files
    from al_loop.stages import TrainStage

    s = session(tmp_path, store)
    s.workdir = tmp_path / "run"
    for member in range(s.config.committee.n_models):
        doc = {"campaign": "c", "iteration": 1, "member": member}
        store.add_model(doc, f"model {member}".encode())
    s.log.record(1, "train", {"n_train": 5, "n_held_out": 0, "held_out": {"n": 0}})
    for iteration in (2, 3):  # twice in a row still points at the last trained one
        s.log.record(iteration, "select", {"structure_ids": []})
        TrainStage(s).run(iteration)
    result = s.log.result(3, "train")
    assert result["reused_from"] == 1 and result["n_train"] == 5
    assert s.log.stage(3, "train")["summary"]["reused_from"] == 1
    files = committee_files(s, 3)
    assert [f.read_bytes() for f in files] == [f"model {m}".encode() for m in range(4)]
