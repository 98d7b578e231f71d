"""Quantum ESPRESSO labels for real: pw.x through quacc on 1-2 atom Ca, Fe, Ni cells, the retry
ladder, the wall-time guard, and a label through a real rocket into the database."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk

from al_loop.campaign import PhysicsChanged
from calculators.oracles.espresso import EspressoOracle
from calculators.oracles.registry import make_oracle
from calculators.oracles.sampling import kpoints

pytestmark = pytest.mark.integration


def oracle(pseudos: Path, **overrides: object) -> EspressoOracle:
    made = make_oracle("espresso", "fast", {"pseudo_dir": str(pseudos), **overrides})
    assert isinstance(made, EspressoOracle)
    return made


def printed_pressure_GPa(label_dir: Path) -> float:
    """The last ``P=`` pw.x printed (kbar), in GPa."""
    text = (label_dir / "pw.out").read_text()
    return float(re.findall(r"P=\s*(-?[\d.]+)", text)[-1]) / 10


def fe_ni_cscl(a: float) -> Atoms:
    return Atoms("FeNi", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5)], cell=[a] * 3, pbc=True)


@pytest.mark.parametrize(
    ("name", "atoms"),
    [
        ("Ca", bulk("Ca", "fcc", a=5.3)),
        ("Fe", bulk("Fe", "bcc", a=2.80)),
        ("Ni-compressed", bulk("Ni", "fcc", a=3.3)),
        ("FeNi-250GPa", fe_ni_cscl(2.42)),
    ],
)
def test_labels_of_small_cells(name: str, atoms: Atoms, fast_pseudos: Path, tmp_path: Path) -> None:
    result = oracle(fast_pseudos).label(atoms, tmp_path)
    assert result.status == "ok", result.error
    assert np.isfinite(result.energy_eV) and result.forces_eV_A.shape == (len(atoms), 3)
    assert np.abs(result.forces_eV_A).max() < 0.05  # symmetric cells: no net force per atom
    pressure = -result.stress_eV_A3[:3].mean() / units.GPa
    assert pressure == pytest.approx(printed_pressure_GPa(Path(result.extra["pw_out"])), abs=0.02)
    assert result.physics_hash and result.pseudopotentials == {
        el: oracle(fast_pseudos).settings.pseudopotentials[el] for el in set(atoms.symbols)
    }
    assert result.retries == [{**result.retries[0], "attempt": 0, "status": "ok"}]
    assert re.fullmatch(r"pw.x v\.6\.\S+ \(quacc [\d.]+\)", result.code_version)
    if name == "FeNi-250GPa":
        assert 150 < pressure < 400  # 7.1 Å^3/atom: near 250 GPa


def test_k_points_follow_the_density_whatever_the_cell() -> None:
    cell = bulk("Ni", "fcc", a=3.52, cubic=True)
    assert kpoints(cell, 0.5) == (4, 4, 4)
    assert kpoints(cell.repeat((2, 1, 1)), 0.5) == (2, 4, 4)  # twice as long: half the points


def test_an_unconverged_scf_climbs_the_ladder(fast_pseudos: Path, tmp_path: Path) -> None:
    ladder = [{"electron_maxstep": 2}, {"electron_maxstep": 100, "mixing_beta": 0.3}]
    result = oracle(fast_pseudos, electron_maxstep=1, retries=ladder).label(
        bulk("Ni", "fcc", a=3.52), tmp_path
    )
    assert result.status == "ok"
    assert [(r["attempt"], r["status"]) for r in result.retries] == [
        (0, "unconverged"),
        (1, "unconverged"),
        (2, "ok"),
    ]
    assert result.retries[2]["changes"] == ladder[1]
    assert all((tmp_path / f"attempt-{k}").is_dir() for k in range(3))  # every try kept


def test_after_the_ladder_the_label_is_unconverged_never_ok(
    fast_pseudos: Path, tmp_path: Path
) -> None:
    result = oracle(fast_pseudos, electron_maxstep=1, retries=[{"mixing_beta": 0.1}]).label(
        bulk("Ni", "fcc", a=3.52), tmp_path
    )
    assert result.status == "unconverged" and result.energy_eV is None
    assert "convergence NOT achieved" in result.error and len(result.retries) == 2


def test_a_missing_pseudopotential_file_is_an_input_error(
    fast_pseudos: Path, tmp_path: Path
) -> None:
    """Found before pw.x starts (the file's content is part of the label's identity)."""
    table = {"Ca": "x", "Fe": "x", "Ni": "Ni.nowhere.UPF"}
    result = oracle(fast_pseudos, pseudopotentials=table).label(bulk("Ni", "fcc", a=3.52), tmp_path)
    assert result.status == "input_error" and result.retries == []
    assert "pseudopotentials.Ni" in result.error and "Ni.nowhere.UPF not found" in result.error


def test_an_input_pw_x_refuses_is_an_input_error(fast_pseudos: Path, tmp_path: Path) -> None:
    bad = oracle(fast_pseudos, ecutrho_Ry=20.0, kspacing_A=1.0)  # below ecutwfc: pw.x stops
    result = bad.label(bulk("Ni", "fcc", a=3.52), tmp_path)
    assert result.status == "input_error" and "set_cutoff" in result.error
    assert len(result.retries) == 1  # no retry for an input error


def test_the_wall_time_guard_kills_and_keeps_the_files(fast_pseudos: Path, tmp_path: Path) -> None:
    big = bulk("Ni", "fcc", a=3.52, cubic=True)  # 4 atoms, 8x8x8 k-points: tens of seconds
    result = oracle(fast_pseudos, wall_time_s=1, kspacing_A=0.2).label(big, tmp_path)
    assert result.status == "killed", result.error
    kept = Path(result.retries[0]["directory"])
    assert (kept / "pw.in").is_file() and (kept / "pw.out").is_file()


def test_a_label_through_a_real_rocket(fast_pseudos: Path, label_through_a_rocket) -> None:
    done = label_through_a_rocket(
        {"code": "espresso", "preset": "fast", "overrides": {"pseudo_dir": str(fast_pseudos)}}
    )
    labels = done["labels"]
    assert len(labels) == 2 and {d["status"] for d in labels} == {"ok"}, [
        (d["status"], d.get("error")) for d in labels
    ]
    for doc in labels:
        assert doc["code"] == "espresso" and doc["settings"]["ecutwfc_Ry"] == 30
        assert doc["retries"][0]["status"] == "ok" and doc["kpoints"]
        assert np.isfinite(doc["energy_eV"]) and len(doc["stress_GPa"]) == 6
        # the identity: physics only, for the structure's own elements, each UPF by content
        assert doc["physics_hash"] == done["oracle"].physics_hash_for(doc["elements"])
        assert doc["physics_hash"] in done["label_hashes"]
        assert set(doc["physics"]["pseudopotentials"]) == set(doc["elements"])
        assert "pseudo_dir" not in doc["physics"] and "wall_time_s" not in doc["physics"]


def test_execution_changes_keep_every_label(fast_pseudos: Path, label_through_a_rocket) -> None:
    """Wall time, parallel command and pw.x arguments changed between two runs of a campaign:
    no label is made again, and every earlier label still trains."""
    database = f"exec_{uuid.uuid4().hex[:8]}"
    first = label_through_a_rocket(
        {"code": "espresso", "preset": "fast", "overrides": {"pseudo_dir": str(fast_pseudos)}},
        database,
    )
    assert first["training"] == 2
    overrides = {
        "pseudo_dir": str(fast_pseudos),
        "wall_time_s": 3600,
        "parallel_cmd": "nice -n 1",
        "pw_args": "-nk 1",
        "mixing_beta": 0.3,
    }
    second = label_through_a_rocket(
        {"code": "espresso", "preset": "fast", "overrides": overrides}, database
    )
    assert second["physics_hash"] == first["physics_hash"]
    assert second["training"] == 2
    assert [d["_id"] for d in second["labels"]] == [d["_id"] for d in first["labels"]]
    assert all(d["attempts"] == 1 for d in second["labels"])  # nothing computed again


def test_a_changed_pseudopotential_makes_new_labels(
    fast_pseudos: Path, label_through_a_rocket, tmp_path: Path
) -> None:
    """The same UPF path with other content is other physics: refused on resume unless
    accepted; then the campaign is labelled anew and the old labels are not reused."""
    pseudos = tmp_path / "pseudos"
    shutil.copytree(fast_pseudos, pseudos)
    oracle = {"code": "espresso", "preset": "fast", "overrides": {"pseudo_dir": str(pseudos)}}
    database = f"upf_{uuid.uuid4().hex[:8]}"
    first = label_through_a_rocket(oracle, database)
    fe = pseudos / "Fe.pbe-nd-rrkjus.UPF"
    text = fe.read_text()
    assert "<PP_INFO>" in text
    fe.write_text(text.replace("<PP_INFO>", "<PP_INFO>\n  edited by an al-loop test", 1))

    with pytest.raises(PhysicsChanged, match=r"pseudopotentials\.Fe"):
        label_through_a_rocket(oracle, database)
    second = label_through_a_rocket(oracle, database, accept_physics_change=True)
    assert second["physics_hash"] != first["physics_hash"]
    old = {d["_id"]: d for d in first["labels"]}
    kept = [d for d in second["labels"] if d["_id"] in old]
    assert kept == list(old.values())  # the old labels stay, untouched
    new = [d for d in second["labels"] if d["_id"] not in old]
    with_fe = [d for d in first["labels"] if "Fe" in d["elements"]]
    # a structure with Fe is labelled again; one without keeps its label (same physics)
    assert sorted(d["structure_id"] for d in new) == sorted(d["structure_id"] for d in with_fe)
    assert {d["status"] for d in new} <= {"ok"}
    assert all(d["physics_hash"] not in first["label_hashes"] for d in new)
    assert second["training"] == 2  # one label per structure, each with the current physics
