"""Relaxations with the oracle itself (``phase.model: oracle``): EMT through al-loop's oracle
matches EMT called directly; every run is a label in a real dataset, a second relaxation
repeats none; a failed run is stored and ends the relaxation; real pw.x relaxes a cell to the
pressure asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT

from al_loop.phase.ledger import DatasetLedger
from al_loop.phase.relax import RelaxSettings, relax
from calculators.oracles.ase_calculator import OracleCalculator
from calculators.oracles.registry import make_oracle
from database import LabelQuery, Store

pytestmark = pytest.mark.integration

CAMPAIGN = "check/phase"


def test_the_oracle_relaxes_as_the_code_itself_and_repeats_no_run(
    store: Store, tmp_path: Path
) -> None:
    oracle = make_oracle("emt", "default")
    start = bulk("Cu", "fcc", a=3.7)
    settings = RelaxSettings(fmax_eV_A=1e-3, max_steps=100)
    direct = relax(start, EMT(), 10.0, "Cu:fcc", settings)
    calc = OracleCalculator(oracle, tmp_path / "runs", DatasetLedger(store, oracle, CAMPAIGN, 0))
    through = relax(start, calc, 10.0, "Cu:fcc", settings)
    assert through.converged and direct.converged
    assert through.enthalpy_eV_atom == pytest.approx(direct.enthalpy_eV_atom, abs=1e-9)
    assert through.volume_A3_atom == pytest.approx(direct.volume_A3_atom, abs=1e-9)
    assert calc.runs >= 3 and calc.recalled == 0
    labels = list(store.find_labels(LabelQuery(campaign=CAMPAIGN), with_arrays=False))
    assert len(labels) == calc.runs and {d["status"] for d in labels} == {"ok"}
    assert len(list((tmp_path / "runs").iterdir())) == calc.runs  # a folder per run

    again = OracleCalculator(oracle, tmp_path / "runs", DatasetLedger(store, oracle, CAMPAIGN, 0))
    second = relax(start, again, 10.0, "Cu:fcc", settings)
    assert again.runs == 0 and again.recalled == calc.runs
    assert second.enthalpy_eV_atom == pytest.approx(through.enthalpy_eV_atom, abs=1e-12)


def test_a_failed_run_is_stored_and_ends_the_relaxation(store: Store, tmp_path: Path) -> None:
    oracle = make_oracle("emt", "default")  # EMT has no Ca: the run crashes, as a status
    calc = OracleCalculator(oracle, tmp_path, DatasetLedger(store, oracle, CAMPAIGN, 0))
    relaxed = relax(bulk("Ca", "fcc", a=5.5), calc, 0.0, "Ca:fcc")
    assert not relaxed.converged and relaxed.failure.startswith("calculation failed: emt crashed")
    (label,) = store.find_labels(LabelQuery(campaign=CAMPAIGN), with_arrays=False)
    assert label["status"] == "crashed" and "Ca" in label["error"]


def test_pw_x_relaxes_a_cell_to_the_pressure_asked(
    store: Store, tmp_path: Path, fast_pseudos: Path
) -> None:
    oracle = make_oracle("espresso", "fast", {"pseudo_dir": str(fast_pseudos)})
    calc = OracleCalculator(oracle, tmp_path, DatasetLedger(store, oracle, CAMPAIGN, 0))
    relaxed = relax(bulk("Ca", "fcc", a=5.3), calc, 5.0, "Ca:fcc", RelaxSettings(fmax_eV_A=0.01))
    assert relaxed.converged, relaxed.failure
    assert relaxed.spacegroup_end == 225 and calc.runs == relaxed.steps + 1
    (last,) = store.find_labels(LabelQuery(campaign=CAMPAIGN, iteration=0), limit=1)
    assert last["code"] == "espresso" and last["status"] == "ok"
    # the last run's stress is pw.x's: its pressure is the one asked for, to the tolerance
    final = OracleCalculator(oracle, tmp_path, DatasetLedger(store, oracle, CAMPAIGN, 0))
    pressure = -final.get_stress(relaxed.atoms)[:3].mean() / units.GPa
    assert final.runs == 0 and pressure == pytest.approx(5.0, abs=0.1)
