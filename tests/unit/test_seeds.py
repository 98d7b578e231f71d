"""Seed structures: counts, sizes, elements, volumes, reproducibility, user files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from al_loop.seeds import atomic_volume_A3, file_seeds, lattice_seeds, prototype

ELEMENTS = ["Cu", "Ni", "Al"]


def make(n: int = 30, seed: int = 0, **kw):
    args = {
        "prototypes": ["fcc", "bcc", "hcp"],
        "max_atoms": 8,
        "rattle_A": 0.05,
        "volume_scale_range": [0.75, 1.05],
    } | kw
    return lattice_seeds(ELEMENTS, n_structures=n, seed=seed, **args)


def test_counts_sizes_and_elements() -> None:
    seeds = make()
    assert len(seeds) == 30
    assert all(1 <= len(s.atoms) <= 8 for s in seeds)
    assert all(set(s.atoms.get_chemical_symbols()) <= set(ELEMENTS) for s in seeds)
    # the first ones are the pure elements on every prototype, then substitutions
    pure = seeds[:9]
    assert [s.source["kind"] for s in pure] == ["lattice"] * 9
    assert {(s.source["prototype"], s.atoms.get_chemical_symbols()[0]) for s in pure} == {
        (p, e) for p in ("fcc", "bcc", "hcp") for e in ELEMENTS
    }
    assert any(len(set(s.atoms.get_chemical_symbols())) > 1 for s in seeds[9:])


def test_reproducible_with_the_seed_and_different_without() -> None:
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    assert all(
        np.array_equal(x.atoms.positions, y.atoms.positions) for x, y in zip(a, b, strict=True)
    )
    assert any(
        x.atoms.positions.shape != y.atoms.positions.shape
        or not np.allclose(x.atoms.positions, y.atoms.positions)
        for x, y in zip(a, c, strict=True)
    )


def test_volumes_follow_the_scale_range() -> None:
    for s in make(rattle_A=0.0):
        symbols = s.atoms.get_chemical_symbols()
        reference = np.mean([atomic_volume_A3(x) for x in symbols])
        per_atom = s.atoms.get_volume() / len(s.atoms)
        assert per_atom / reference == pytest.approx(s.source["volume_scale"], rel=1e-9)
        assert 0.75 <= s.source["volume_scale"] <= 1.05


def test_prototype_volume_per_atom() -> None:
    for kind in ("fcc", "bcc", "hcp", "sc"):
        cell = prototype(kind, 11.8)
        assert cell.get_volume() / len(cell) == pytest.approx(11.8)
    assert atomic_volume_A3("Cu") == pytest.approx(bulk("Cu").get_volume())
    with pytest.raises(ValueError, match="unknown prototype"):
        prototype("diamond", 10.0)


def test_max_atoms_below_the_smallest_cell_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_atoms=2"):
        lattice_seeds(["Cu"], ["fcc"], 1, 2, 0.0, [1.0, 1.0], 0)


def test_file_seeds(tmp_path: Path) -> None:
    path = tmp_path / "mine.extxyz"
    write(str(path), [bulk("Cu") * 2, bulk("Ni", cubic=True)])
    seeds = file_seeds([path], ELEMENTS)
    assert [len(s.atoms) for s in seeds] == [8, 4]
    assert seeds[1].source == {"kind": "file", "path": str(path), "index": 1}
    with pytest.raises(ValueError, match=r"mine.extxyz: structure 0 contains Cu"):
        file_seeds([path], ["Ni"])
    broken = tmp_path / "broken.cif"
    broken.write_text("this is not a CIF file\n")
    with pytest.raises(ValueError, match=r"broken\.cif: cannot read structures"):
        file_seeds([broken], ELEMENTS)


def test_phase_candidates_are_seeded_at_volumes_spread_over_the_range() -> None:
    from al_loop.phase.candidates import prototype_candidates
    from al_loop.seeds import candidate_seeds

    found = prototype_candidates(["Cu", "Ni"], ["fcc", "L1_2"])
    seeds = candidate_seeds([(c.name, c.atoms) for c in found], 2, 0.0, (0.8, 1.0), seed=0)
    assert len(seeds) == 2 * len(found) == 8
    assert [s.source["candidate"] for s in seeds[:2]] == ["Cu:fcc", "Cu:fcc"]
    for s, scale in zip(seeds[:2], (0.8, 1.0), strict=True):
        volume = s.atoms.get_volume() / len(s.atoms)
        assert volume == pytest.approx(scale * atomic_volume_A3("Cu"), rel=1e-9)
    l12 = [s for s in seeds if s.source["candidate"].endswith(":L1_2")]
    assert {s.atoms.get_chemical_formula() for s in l12} == {"Cu3Ni", "CuNi3"}
    one = candidate_seeds([(found[0].name, found[0].atoms)], 1, 0.0, (0.8, 1.0), seed=0)
    assert one[0].source["volume_scale"] == pytest.approx(0.9)
