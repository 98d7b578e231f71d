"""The foundation builder's pieces that need no training: the trusted-range rule, the
structure generator, the source's surrogates and identity."""

from __future__ import annotations

import numpy as np
import pytest

from al_loop.foundation.source import Source
from al_loop.foundation.structures import KINDS, Generator, generate, kind_counts
from al_loop.foundation.trust import judge, measure_trust


def _scan(pressures: list[float]) -> tuple[np.ndarray, np.ndarray]:
    volumes = np.linspace(20.0, 10.0, len(pressures))
    return volumes, np.array(pressures, dtype=float)


def test_a_monotonic_scan_is_trusted_to_its_end() -> None:
    v, p = _scan([-5, 0.5, 6, 12, 20, 30, 42, 56])
    v0, b0, trusted, smallest, reason = judge(v, p)
    assert trusted == 56 and smallest == v[-1] and reason == "end of the scan"
    assert v[1] < v0 < v[0] and b0 > 0


def test_a_scan_whose_pressure_falls_is_trusted_only_before() -> None:
    v, p = _scan([-5, 1, 6, 12, 20, 18, 30, 45])  # P drops below 20 at the 5th point
    _, _, trusted, smallest, reason = judge(v, p)
    assert (trusted, smallest) == (20, v[4]) and "stops rising" in reason


def test_a_collapsing_bulk_modulus_ends_the_trusted_range() -> None:
    v, p = _scan([-5, 1, 10, 20, 30, 30.5, 31, 40])  # B falls to ~1/20 of its best
    _, _, trusted, _, reason = judge(v, p)
    assert trusted == 30 and reason.startswith("B falls")


def test_a_scan_without_positive_pressure_is_not_trusted() -> None:
    v, p = _scan([-9, -7, -5, -3])
    v0, _, trusted, _, reason = judge(v, p)
    assert v0 is None and trusted == 0 and "never" in reason


def test_emt_measures_its_own_range_and_cells_follow_it() -> None:
    source = Source.make("emt", "default", ["Cu", "Ni"])
    trust = measure_trust(source, ["Cu", "Ni"], progress=lambda line: None)
    assert trust.trusted_max_GPa > 100  # EMT Cu and Ni keep a rising P(V) far up
    fcc = next(s for s in trust.scans if (s.element, s.lattice) == ("Cu", "fcc"))
    assert 11.0 < fcc.v0_A3 < 12.5  # EMT copper: a = 3.59 Å
    assert trust.volume_at("Cu", 50.0) < trust.volume_at("Cu", 0.0)
    gen = Generator(("Cu", "Ni"), 50.0, 40, max_atoms=8, temperatures_K=(300.0,), seed=1)
    made = list(generate(gen, source, trust))
    assert len(made) == 40 and all(len(a) <= 8 for _, _, a in made)
    counts = kind_counts([kind for kind, _, _ in made])
    assert set(counts) == set(KINDS) and counts["md"] == 8
    assert all(0 <= p <= 50 for _, p, _ in made)
    again = [a for _, _, a in generate(gen, source, trust)]
    assert all(
        np.allclose(a.positions, b.positions) for (_, _, a), b in zip(made, again, strict=True)
    )


def test_cells_are_sized_to_their_pressure_by_the_source_itself() -> None:
    """Al-Ni compounds are denser than the mix of the elements' volumes: with the mix alone
    the median pressure error of these 40 cells was 3.8 GPa, biased +2.4 (62 % within 5 GPa);
    the Newton step on the source's pressure: 1.9, +0.5 (90 %; the rattle's share stays)."""
    from al_loop.evaluation import pressure_GPa

    source = Source.make("emt", "default", ["Al", "Ni"])
    trust = measure_trust(source, ["Al", "Ni"], progress=lambda line: None)
    kinds = (("prototype", 0.5), ("alloy", 0.5))
    gen = Generator(("Al", "Ni"), 50.0, 40, max_atoms=8, seed=1, kinds=kinds)
    errors = []
    for _, target, atoms in generate(gen, source, trust):
        atoms.calc = source.calculator()
        errors.append(pressure_GPa(atoms.get_stress()) - target)
    assert np.median(np.abs(errors)) < 3.0 and abs(np.mean(errors)) < 2.0


def test_surrogates_label_in_place_of_elements_emt_does_not_know() -> None:
    with pytest.raises(ValueError, match="cannot label"):
        Source.make("emt", "default", ["Ca", "Ni"])
    with pytest.raises(ValueError, match="one for each"):
        Source.make("emt", "default", ["Ca", "Ni"], ["Al"])
    source = Source.make("emt", "default", ["Ca", "Ni"], ["Al", "Ni"])
    from ase.build import bulk

    cell = bulk("Ca", "fcc", a=4.05)  # Al's lattice, named Ca
    labelled, result = source.label(cell)
    assert result.status == "ok" and labelled.get_chemical_symbols() == ["Ca"]
    al = bulk("Al", "fcc", a=4.05)
    al.calc = __import__("ase.calculators.emt", fromlist=["EMT"]).EMT()
    assert labelled.get_potential_energy() == pytest.approx(al.get_potential_energy())
    assert source.identity()["surrogates"] == {"Ca": "Al", "Ni": "Ni"}
