"""Phase stability: candidate structures, relaxation under pressure, hulls and crossings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import write
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition
from scipy.optimize import brentq

from al_loop.phase.candidates import (
    PROTOTYPES,
    build,
    file_candidates,
    prototype_candidates,
)
from al_loop.phase.relax import enthalpy_curve, relax, spacegroup
from al_loop.phase.stability import (
    GPA_A3,
    crossing,
    hull_table,
    stability_ranges,
    transitions,
)

#: Composition of each prototype's cell: (A, B, C) atoms.
COUNTS = {
    "fcc": (1,),
    "bcc": (1,),
    "sc": (1,),
    "hcp": (2,),
    "dhcp": (4,),
    "beta-Sn": (2,),
    "B2": (1, 1),
    "L1_0": (1, 1),
    "L1_2": (3, 1),
    "C15": (2, 4),
    "C14": (4, 8),
    "C36": (8, 16),
    "CaCu5": (1, 5),
    "L2_1": (2, 1, 1),
}


@pytest.mark.parametrize("prototype", list(PROTOTYPES))
def test_each_prototype_has_its_space_group_and_composition(prototype: str) -> None:
    species = ["Ca", "Ni", "Fe"][: len(PROTOTYPES[prototype].species)]
    candidate = build(prototype, species)
    symbols = candidate.atoms.get_chemical_symbols()
    assert tuple(symbols.count(s) for s in species) == COUNTS[prototype]
    assert spacegroup(candidate.atoms) == PROTOTYPES[prototype].spacegroup
    assert candidate.name.endswith(f":{prototype}")
    distances = candidate.atoms.get_all_distances(mic=True)
    assert len(candidate.atoms) == 1 or distances[distances > 0].min() > 2.0


def test_candidates_cover_every_ordering_once() -> None:
    names = [c.name for c in prototype_candidates(["Cu", "Ni"])]
    assert len(names) == len(set(names))
    assert {"Cu:fcc", "Ni:dhcp", "CuNi:B2", "CuNi3:L1_2", "Cu3Ni:L1_2", "CuNi5:CaCu5"} <= set(names)
    assert sum(n.endswith(":B2") for n in names) == 1  # B2 on (Cu, Ni) is B2 on (Ni, Cu)
    assert not any(n.endswith(":L2_1") for n in names)  # ternary: three elements


def test_user_files_become_candidates_and_foreign_elements_are_refused(tmp_path: Path) -> None:
    mine = tmp_path / "my-phase.cif"
    write(mine, build("B2", ["Cu", "Ni"]).atoms)
    (candidate,) = file_candidates([mine], ["Cu", "Ni"])
    assert candidate.name == "CuNi:my-phase"
    with pytest.raises(ValueError, match=r"my-phase.cif: holds Ni, not among .* Cu, Al"):
        file_candidates([mine], ["Cu", "Al"])


def rows_at(pressure: float, enthalpies: dict[str, float]) -> list[dict]:
    return [
        {
            "name": f"{Composition(n.split(':')[0]).reduced_formula}:{n.split(':')[1]}",
            "formula": n.split(":")[0],
            "pressure_GPa": pressure,
            "enthalpy_eV_atom": h,
        }
        for n, h in enthalpies.items()
    ]


def test_the_hull_of_hand_set_enthalpies() -> None:
    # A-B line: AB 0.1 eV/atom below the elements; A3B at -0.02, 0.03 above the hull
    # (the hull at x = 0.25 is halfway to AB's -0.1); A's second phase 0.05 above its first
    rows = rows_at(0.0, {"Cu:fcc": 0.0, "Cu:bcc": 0.05, "Ni:fcc": 0.0, "CuNi:B2": -0.1})
    rows += rows_at(0.0, {"Cu3Ni:L1_2": -0.02})
    table = {r["name"]: r for r in hull_table(rows)}
    assert table["CuNi:B2"]["stable"] and table["CuNi:B2"]["formation_enthalpy_eV_atom"] == (
        pytest.approx(-0.1)
    )
    assert table["Cu3Ni:L1_2"]["above_hull_eV_atom"] == pytest.approx(0.03)
    assert table["Cu:bcc"]["above_hull_eV_atom"] == pytest.approx(0.05)
    assert {n for n, r in table.items() if r["stable"]} == {"Cu:fcc", "Ni:fcc", "CuNi:B2"}


def test_stability_ranges_follow_the_hull_over_pressure() -> None:
    rows = []
    for p, b2 in [(0, -0.1), (10, -0.05), (20, 0.02), (30, -0.01)]:
        rows += rows_at(p, {"Cu:fcc": 0.0, "Ni:fcc": 0.0, "CuNi:B2": b2})
    ranges = stability_ranges(hull_table(rows))
    assert ranges["CuNi:B2"] == [(0, 10), (30, 30)]
    assert ranges["Cu:fcc"] == [(0, 30)]


def linear_crossing(p: tuple[float, float], dh: tuple[float, float]) -> float:
    """Where a straight line through the two enthalpy differences crosses zero."""
    return float(p[0] + (p[1] - p[0]) * dh[0] / (dh[0] - dh[1]))


def murnaghan(e0: float, v0: float, b0: float, b1: float):  # type: ignore[no-untyped-def]
    """H(P) and V(P) per atom of a Murnaghan solid (eV, Å^3, GPa): dH/dP = V exactly."""

    def enthalpy(p: float) -> float:
        return e0 + v0 * b0 / (b1 - 1) * ((1 + b1 * p / b0) ** (1 - 1 / b1) - 1) * GPA_A3

    def volume(p: float) -> float:
        return v0 * (1 + b1 * p / b0) ** (-1 / b1)

    return enthalpy, volume


def test_a_two_phase_crossing_is_found_to_the_grids_interpolation_error() -> None:
    ha, va = murnaghan(0.0, 12.0, 150.0, 4.5)
    hb, vb = murnaghan(0.15, 11.0, 180.0, 4.2)
    exact = brentq(lambda p: ha(p) - hb(p), 0, 500)  # 29.1 GPa
    errors = {}
    for step in (50.0, 25.0):
        grid = np.arange(0, 501, step)
        k = int(exact // step)
        p = (grid[k], grid[k + 1])
        dh = (ha(p[0]) - hb(p[0]), ha(p[1]) - hb(p[1]))
        dv = (va(p[0]) - vb(p[0]), va(p[1]) - vb(p[1]))
        found = crossing(p, dh, dv)
        assert found is not None
        errors[step] = abs(found - exact)
        assert errors[step] < abs(linear_crossing(p, dh) - exact)
    assert errors[50.0] < 0.5  # measured 0.31 GPa; the straight line: 2.4 GPa
    assert errors[25.0] < errors[50.0] / 8  # fourth order in the step (measured 1/120)
    assert crossing((0.0, 50.0), (0.1, 0.2), (1.0, 1.0)) is None


def test_transitions_of_phases_with_constant_volumes_are_exact() -> None:
    # H = E + PV with V constant: the Hermite interpolant is the exact line
    rows = []
    for p in (0.0, 20.0, 40.0, 60.0):
        for name, e, v in (("Fe:bcc", 0.0, 11.8), ("Fe:hcp", 0.06, 11.3)):
            rows.append(
                {
                    "name": name,
                    "formula": "Fe",
                    "pressure_GPa": p,
                    "enthalpy_eV_atom": e + p * v * GPA_A3,
                    "volume_A3_atom": v,
                }
            )
    (found,) = transitions(rows)
    assert (found.low, found.high) == ("Fe:bcc", "Fe:hcp")
    assert found.pressure_GPa == pytest.approx(0.06 / (0.5 * GPA_A3), rel=1e-9)  # 19.2 GPa
    assert found.bracket_GPa == (0.0, 20.0)
    # bcc did not converge at 20 GPa: the change is bracketed, not interpolated
    holed = [r for r in rows if (r["name"], r["pressure_GPa"]) != ("Fe:bcc", 20.0)]
    (bracketed,) = transitions(holed)
    assert bracketed.pressure_GPa is None and bracketed.bracket_GPa == (0.0, 20.0)


def test_relaxation_under_pressure_reaches_the_pressure_and_keeps_the_phase() -> None:
    relaxed = relax(build("hcp", ["Cu"]).atoms, EMT(), 50.0, "Cu:hcp")
    assert relaxed.converged and relaxed.spacegroup_end == 194
    atoms = relaxed.atoms.copy()
    atoms.calc = EMT()
    pressure = -np.trace(atoms.get_stress(voigt=False)) / 3 / GPA_A3
    assert pressure == pytest.approx(50.0, abs=0.5)
    energy = atoms.get_potential_energy()
    assert relaxed.enthalpy_eV_atom == pytest.approx(
        (energy + 50.0 * GPA_A3 * atoms.get_volume()) / len(atoms), abs=1e-9
    )


def test_emt_hull_matches_pymatgen_and_the_cu_crossing_matches_a_fine_grid() -> None:
    """EMT Cu-Ni-Al relaxed directly: the hull table equals pymatgen's own, built by hand from
    E + PV of the relaxed cells; EMT's hcp -> fcc crossing of Cu (34.3 GPa on a 1 GPa grid) is
    found from a 20 GPa grid within 0.5 GPa."""
    coarse, fine = [0.0, 20.0, 40.0, 60.0], [33.0, 34.0, 35.0, 36.0]
    phases = [
        ("fcc", ["Cu"]),
        ("hcp", ["Cu"]),
        ("fcc", ["Ni"]),
        ("fcc", ["Al"]),
        ("L1_2", ["Ni", "Al"]),
        ("B2", ["Cu", "Ni"]),
    ]
    rows, relaxed = [], []
    for prototype, species in phases:
        candidate = build(prototype, species)
        curve = enthalpy_curve(candidate.atoms, EMT(), coarse, candidate.name)
        relaxed += curve
        rows += [r.row() for r in curve]
    table = hull_table(rows)
    for pressure in coarse:
        by_hand = []
        for r in (r for r in relaxed if r.pressure_GPa == pressure):
            atoms = r.atoms.copy()
            atoms.calc = EMT()
            h = atoms.get_potential_energy() + pressure * GPA_A3 * atoms.get_volume()
            by_hand.append(PDEntry(atoms.get_chemical_formula(), h, name=r.name))
        diagram = PhaseDiagram(by_hand)
        ours = {r["name"]: r for r in table if r["pressure_GPa"] == pressure}
        for entry in by_hand:
            above = diagram.get_e_above_hull(entry, allow_negative=True)
            assert ours[entry.name]["above_hull_eV_atom"] == pytest.approx(above, abs=1e-9)
        assert {e.name for e in diagram.stable_entries} == {
            n for n, r in ours.items() if r["stable"]
        }
    (cu,) = [t for t in transitions(rows) if t.formula == "Cu"]
    assert (cu.low, cu.high) == ("Cu:hcp", "Cu:fcc")
    fine_rows = []
    for prototype in ("fcc", "hcp"):
        candidate = build(prototype, ["Cu"])
        fine_rows += [r.row() for r in enthalpy_curve(candidate.atoms, EMT(), fine, candidate.name)]
    (reference,) = transitions(fine_rows)
    assert cu.pressure_GPa == pytest.approx(reference.pressure_GPa, abs=0.5)


def test_a_collapsing_cell_stops_as_failed_and_is_recorded_so() -> None:
    from ase.calculators.morse import MorsePotential

    pulls_together = MorsePotential(epsilon=1.0, r0=0.6, rho0=3.0, rcut1=4.0, rcut2=5.0)
    start = build("fcc", ["Cu"]).atoms * (2, 1, 1)
    start.rattle(0.05, seed=1)
    curve = enthalpy_curve(start, pulls_together, [0.0, 10.0], "Cu:fcc")
    assert [r.converged for r in curve] == [False, False]
    assert all(r.failure.startswith("collapsed") for r in curve)
    assert curve[1].row()["failure"].startswith("collapsed")


def test_a_changed_candidate_file_changes_the_candidates_identity(tmp_path: Path) -> None:
    from al_loop.phase.candidates import candidates_sha256

    mine = tmp_path / "mine.cif"
    write(mine, build("B2", ["Cu", "Ni"]).atoms)
    before = candidates_sha256(file_candidates([mine], ["Cu", "Ni"]))
    assert candidates_sha256(file_candidates([mine], ["Cu", "Ni"])) == before
    write(mine, build("L1_0", ["Cu", "Ni"]).atoms)  # same name, another structure
    assert candidates_sha256(file_candidates([mine], ["Cu", "Ni"])) != before
