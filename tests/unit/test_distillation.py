"""The distillation's pieces that need no teacher: the sample's round trip, filter, split."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from al_loop.distillation import frames_bytes, frames_read, grown, split, usable


def frame(stop_reason: str = "", spread: float = 0.1):
    atoms = bulk("Cu", "fcc", a=3.6) * 2
    atoms.info.update(stop_reason=stop_reason, force_spread=spread, trajectory="000-npt")
    forces = np.arange(3 * len(atoms), dtype=float).reshape(-1, 3)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.5, forces=forces, stress=np.ones(6))
    return atoms


def test_the_stored_sample_reads_back_with_its_labels_and_reasons() -> None:
    frames = [frame(), frame("driver failed: x", float("inf")), frame(spread=0.5)]
    again = frames_read(frames_bytes(frames))
    assert [usable(f, 0.3) for f in again] == ["", "stopped trajectory", "teacher unsure"]
    assert again[0].info["force_spread"] == 0.1 and again[0].info["stop_reason"] == ""
    np.testing.assert_array_equal(again[0].get_forces(), frames[0].get_forces())
    assert again[0].get_potential_energy() == -1.5
    assert frames[0].info["stop_reason"] == ""  # the frames given are not changed


def test_split_and_growth() -> None:
    frames = [frame() for _ in range(20)]
    fit, test = split(frames, 0.1, seed=0)
    assert len(test) == 2 and len(fit) == 18
    assert {id(f) for f in fit} | {id(f) for f in test} == {id(f) for f in frames}
    assert len(grown(bulk("Cu"), 32)) == 64 and len(grown(bulk("Cu") * 4, 32)) == 64
