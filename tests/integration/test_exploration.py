"""Committee MD: compression to 500 GPa, the MD ensembles, early stops, recorded frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from al_loop.exploration import FRAME_KEYS, MDSettings, explore, frame_table, run_trajectory
from calculators.models.committee import CommitteeCalculator

pytestmark = pytest.mark.integration


class EMTWithSpread(EMT):
    """EMT, a real potential that holds up at 500 GPa, reporting a fixed committee spread: it
    tests the MD machinery (compression, time step, barostat) apart from any model."""

    def calculate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().calculate(*args, **kwargs)
        self.results.update(force_spread=0.01, energy_spread=0.0, stress_spread=0.0)


def copper():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.02, seed=1)
    return atoms


def test_compression_and_npt_at_500_GPa_with_emt() -> None:
    settings = MDSettings(steps=200, frame_interval=20, timestep_fs=1.0, compression_steps=12)
    frames = run_trajectory(copper(), EMTWithSpread(), "npt", 2000.0, 500.0, settings, "t", 0)
    table = frame_table(frames)
    assert not any(table["stop_reason"]), table["stop_reason"]
    compressed = table["phase"] == "compress"
    md = table["phase"] == "md"
    assert md.sum() == 10  # every 20th of 200 steps
    v0 = copper().get_volume() / 32
    # the cell reached the target pressure before MD: volume roughly halved
    assert table["volume_A3_per_atom"][md][0] / v0 < 0.6
    assert abs(table["P_GPa"][compressed][-1] - 500) < 0.05 * 500
    # the barostat holds it there and the thermostat heats to the target
    assert abs(np.mean(table["P_GPa"][md][3:]) - 500) < 60
    assert 800 < np.mean(table["T_K"][md][3:]) < 3500
    assert np.isfinite(table["P_GPa"]).all() and np.isfinite(table["T_K"]).all()


def test_every_ensemble_records_frames_with_all_keys() -> None:
    settings = MDSettings(steps=40, frame_interval=10)
    conditions = [("nvt", 300.0, 0.0), ("npt", 1000.0, 50.0), ("heat", 1000.0, 0.0)]
    frames = explore([copper()], EMTWithSpread(), conditions, settings, seed=2)
    assert all(set(FRAME_KEYS) <= set(f.info) for f in frames)
    table = frame_table(frames)
    assert set(table["trajectory"]) == {
        "000-nvt-300K-0GPa",
        "001-npt-1000K-50GPa",
        "002-heat-1000K-0GPa",
    }
    heat = table["target_T_K"][
        (table["trajectory"] == "002-heat-1000K-0GPa") & (table["phase"] == "md")
    ]
    assert heat[0] < heat[-1] == pytest.approx(2000.0)  # ramped to heat_factor x T
    nvt = table["volume_A3_per_atom"][
        (table["trajectory"] == "000-nvt-300K-0GPa") & (table["phase"] == "md")
    ]
    assert len(nvt) == 4 and np.ptp(nvt) == 0  # NVT keeps the cell found at the target P


class CountingSpread(EMTWithSpread):
    """EMTWithSpread that counts its evaluations."""

    calls = 0

    def calculate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().calculate(*args, **kwargs)
        self.calls += 1


def test_a_driver_runs_the_dynamics_and_the_committee_only_scores_frames() -> None:
    settings = MDSettings(steps=40, frame_interval=10)
    committee = CountingSpread()
    frames = run_trajectory(copper(), committee, "nvt", 300.0, 0.0, settings, "t", 0, EMT())
    assert [f.info["phase"] for f in frames][-4:] == ["md"] * 4
    assert committee.calls == len(frames)  # once per recorded frame, not per step
    assert all(f.info["force_spread"] == 0.01 for f in frames)
    alone = CountingSpread()
    run_trajectory(copper(), alone, "nvt", 300.0, 0.0, settings, "t", 0)
    assert alone.calls > settings.steps  # driving itself: every step


class Failing(EMT):
    """EMT that raises from its ``after``-th evaluation on (a model that crashes)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def calculate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls >= self.after:
            raise RuntimeError("model crashed")
        super().calculate(*args, **kwargs)


def test_a_crashing_committee_or_driver_stops_the_trajectory_with_its_reason() -> None:
    settings = MDSettings(steps=40, frame_interval=10)
    frames = run_trajectory(copper(), Failing(1), "nvt", 300.0, 0.0, settings, "t", 0, EMT())
    assert len(frames) == 1 and frames[0].info["stop_reason"] == "committee failed: model crashed"
    assert frames[0].info["force_spread"] == np.inf  # counted failed
    # the driver crashes while compressing to 100 GPa (its 3rd evaluation)
    frames = run_trajectory(
        copper(), EMTWithSpread(), "npt", 300.0, 100.0, settings, "t", 0, Failing(3)
    )
    assert "model crashed" in frames[-1].info["stop_reason"]
    assert frames[-1].info["force_spread"] == np.inf
    assert all(not f.info["stop_reason"] for f in frames[:-1])


class RunawayStress(EMTWithSpread):
    """EMT whose stress says 8,000 GPa from its ``after``-th evaluation on (a model outside its
    data): the barostat expands the cell without end."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def calculate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        super().calculate(*args, **kwargs)
        if self.calls >= self.after:
            self.results["stress"] = np.array([-50.0, -50.0, -50.0, 0.0, 0.0, 0.0])


def test_a_cell_blown_up_by_the_barostat_stops_the_step_it_happens() -> None:
    settings = MDSettings(steps=40, frame_interval=10, compression_steps=0)
    driver = RunawayStress(after=15)  # within the second stride of 10 steps
    frames = run_trajectory(copper(), EMTWithSpread(), "npt", 300.0, 0.0, settings, "t", 0, driver)
    assert "MD failed" in frames[-1].info["stop_reason"]
    reason = frames[-1].info["stop_reason"]
    assert "the cell went to" in reason
    # stopped the step it passed 3x (the volume grows ~1.36x a step), not at the next frame
    assert 3.0 <= float(reason.split("went to ")[1].split("x")[0]) < 3.0 * 1.4


def test_trajectory_stops_when_the_spread_passes_the_bound(committee_models: list[Path]) -> None:
    calc = CommitteeCalculator(committee_models, device="cpu", dtype="float32")
    settings = MDSettings(steps=100, frame_interval=10, max_spread_eV_A=1e-6)
    frames = run_trajectory(copper(), calc, "nvt", 300.0, 0.0, settings, "t", 0)
    assert len(frames) == 1
    assert "force spread above" in frames[0].info["stop_reason"]


def test_mace_committee_at_500_GPa_ends_cleanly(committee_models: list[Path]) -> None:
    """A tiny committee far outside its training range: the trajectory either runs with
    finite numbers or stops with a reason; never a crash, never silent NaN."""
    calc = CommitteeCalculator(committee_models, device="cpu", dtype="float32")
    settings = MDSettings(steps=60, frame_interval=10, max_spread_eV_A=5.0)
    frames = run_trajectory(copper(), calc, "npt", 3000.0, 500.0, settings, "t", 0)
    table = frame_table(frames)
    for i, frame in enumerate(frames):
        spread = table["force_spread"][i]
        if table["stop_reason"][i]:
            assert i == len(frames) - 1
        else:
            assert np.isfinite(spread) and np.isfinite(table["P_GPa"][i])
            assert np.isfinite(frame.positions).all()
