"""Two phase maps compared (al_loop/phase/compare.py): ΔH(P) RMS over the cells both relaxed,
the distrusted ones counted, and transitions matched, missed and spurious."""

from __future__ import annotations

import pytest

from al_loop.phase.compare import delta_h_rms, transitions_against


def result(enthalpies: dict[tuple[str, float], float], distrusted=(), transitions=()) -> dict:
    rows = [
        {
            "name": name,
            "formula": name.split(":")[0],
            "pressure_GPa": p,
            "enthalpy_eV_atom": h,
            "trusted": (name, p) not in distrusted,
        }
        for (name, p), h in enthalpies.items()
    ]
    return {
        "converged_enthalpies": rows,
        "hull": [r for r in rows if r["trusted"]],
        "transitions": list(transitions),
    }


ORACLE = {
    ("Ca:fcc", 0.0): -2.00,
    ("Ca:bcc", 0.0): -1.99,
    ("Ca:fcc", 10.0): -1.0,
    ("Ca:bcc", 10.0): -1.02,
}


def test_delta_h_is_measured_on_every_converged_cell_and_counts_the_distrusted() -> None:
    # the model shifts every phase alike (no error in ΔH) except bcc at 10 GPa, 30 meV too high
    model = {k: h + 0.5 for k, h in ORACLE.items()}
    model[("Ca:bcc", 10.0)] += 0.030
    got = delta_h_rms(result(model, distrusted={("Ca:bcc", 10.0)}), result(ORACLE))
    assert got["Ca"]["against"] == "Ca:fcc" and got["Ca"]["n"] == 2
    assert got["Ca"]["distrusted"] == 1
    assert got["Ca"]["rms_meV_atom"] == pytest.approx(1000 * (0.03**2 / 2) ** 0.5, abs=0.01)
    assert got["Ca"]["max_meV_atom"] == pytest.approx(30.0, abs=0.01)


def test_a_cell_only_one_map_relaxed_does_not_count() -> None:
    model = {k: h for k, h in ORACLE.items() if k != ("Ca:bcc", 10.0)}
    got = delta_h_rms(result(model), result(ORACLE))
    assert got["Ca"]["n"] == 1 and got["Ca"]["rms_meV_atom"] == pytest.approx(0.0, abs=1e-9)


def test_transitions_are_matched_missed_and_spurious() -> None:
    t = lambda f, a, b, p: {"formula": f, "from": a, "to": b, "pressure_GPa": p}  # noqa: E731
    reference = result(
        ORACLE, transitions=[t("Ca", "Ca:fcc", "Ca:bcc", 5.0), t("Fe", "Fe:bcc", "Fe:hcp", 12.0)]
    )
    student = result(
        ORACLE, transitions=[t("Ca", "Ca:fcc", "Ca:bcc", 6.5), t("Ni", "Ni:fcc", "Ni:hcp", 3.0)]
    )
    rows = transitions_against({"student": student}, reference, target_GPa=2.0)
    ca, fe, ni = rows
    assert (
        ca["student_GPa"] == 6.5 and ca["student_minus_reference_GPa"] == 1.5 and ca["student_met"]
    )
    assert fe["student_GPa"] is None and not fe["student_met"]
    assert ni["spurious"] == "student" and ni["reference_GPa"] is None


def test_a_transition_from_a_phase_the_reference_puts_level_is_the_same_transition() -> None:
    """The oracle's Ca fcc and hcp within 0.1 meV/atom at 0 GPa: its hcp -> bcc and the
    model's fcc -> bcc at a nearby pressure are one transition; 30 meV/atom apart they are not."""
    t = lambda a, p: {  # noqa: E731
        "formula": "Ca",
        "from": a,
        "to": "Ca:bcc",
        "pressure_GPa": p,
        "bracket_GPa": [0.0, 5.0],
    }
    level = {("Ca:fcc", 0.0): -2.0000, ("Ca:hcp", 0.0): -2.0001, ("Ca:bcc", 0.0): -1.999}
    reference = result(level, transitions=[t("Ca:hcp", 0.39)])
    model = result(level, transitions=[t("Ca:fcc", 1.45)])
    (row,) = transitions_against({"teacher": model}, reference, target_GPa=2.0)
    assert row["teacher_met"] and row["teacher_from"] == "Ca:fcc"
    assert row["teacher_minus_reference_GPa"] == pytest.approx(1.06)
    apart = {**level, ("Ca:fcc", 0.0): -1.97}
    rows = transitions_against(
        {"teacher": model}, result(apart, transitions=[t("Ca:hcp", 0.39)]), 2.0
    )
    assert not rows[0]["teacher_met"] and rows[1]["spurious"] == "teacher"
