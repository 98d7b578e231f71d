"""Documents, URIs and label filters: pure functions, no server."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from database import LabelQuery, redact, resolve_uri
from database.documents import (
    EV_A3_TO_GPA,
    arrays_nbytes,
    atoms_from_arrays,
    composition_fields,
    decode_npz,
    encode_npz,
    stress_fields,
    structure_arrays,
    structure_id,
)

# -- structure_id ---------------------------------------------------------------------------------


def _bcc_fe() -> Atoms:
    """An unrattled supercell: many atoms sit exactly on cell faces (the hard case for wrapping)."""
    return bulk("Fe", "bcc", a=2.87, cubic=True) * (2, 2, 2)


def _rattled_cafeni() -> Atoms:
    atoms = bulk("Ni", "fcc", a=3.5, cubic=True) * (2, 2, 1)
    atoms.symbols[[0, 5]] = "Ca"
    atoms.symbols[[1, 6, 7]] = "Fe"
    shear = np.array([[0, 0, 0], [0.3, 0, 0], [0.2, -0.1, 0]])
    atoms.set_cell(atoms.cell[:] + shear, scale_atoms=True)
    atoms.rattle(0.05, seed=3)
    return atoms


@pytest.mark.parametrize("make", [_bcc_fe, _rattled_cafeni])
@pytest.mark.parametrize(
    "shift", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, -1), (0, -1, 0), (2, 3, -1), (-1, -1, -1)]
)
def test_structure_id_is_stable_under_lattice_translation(make, shift) -> None:
    atoms = make()
    moved = atoms.copy()
    moved.positions += np.asarray(shift) @ atoms.cell[:]
    assert structure_id(moved) == structure_id(atoms)


@pytest.mark.parametrize("make", [_bcc_fe, _rattled_cafeni])
def test_structure_id_is_stable_under_wrapping(make) -> None:
    atoms = make()
    # every atom moved into a different periodic image, then wrapped back
    rng = np.random.default_rng(0)
    images = rng.integers(-2, 3, size=(len(atoms), 3))
    scattered = atoms.copy()
    scattered.positions += images @ atoms.cell[:]
    wrapped = scattered.copy()
    wrapped.wrap()
    assert structure_id(scattered) == structure_id(atoms)
    assert structure_id(wrapped) == structure_id(atoms)
    assert structure_id(atoms.copy()) == structure_id(atoms)


def test_structure_id_changes_with_positions_species_and_cell() -> None:
    atoms = _rattled_cafeni()
    sid = structure_id(atoms)

    moved = atoms.copy()
    moved.positions[2, 0] += 0.01
    assert structure_id(moved) != sid

    swapped = atoms.copy()
    swapped.numbers[2] = 26 if swapped.numbers[2] != 26 else 28
    assert structure_id(swapped) != sid

    strained = atoms.copy()
    strained.set_cell(atoms.cell[:] * 1.01, scale_atoms=False)
    assert structure_id(strained) != sid

    scaled = atoms.copy()
    scaled.set_cell(atoms.cell[:] * 1.01, scale_atoms=True)
    assert structure_id(scaled) != sid

    slab = atoms.copy()
    slab.pbc = [True, True, False]
    assert structure_id(slab) != sid


def test_structure_id_depends_on_atom_order_as_documented() -> None:
    atoms = _rattled_cafeni()
    assert structure_id(atoms[::-1]) != structure_id(atoms)


def test_structure_id_of_a_molecule_is_not_wrapped() -> None:
    molecule = Atoms("FeNi", positions=[[0, 0, 0], [2.1, 0, 0]], cell=[5, 5, 5], pbc=False)
    moved = molecule.copy()
    moved.positions += [5, 0, 0]
    assert structure_id(moved) != structure_id(molecule)
    assert structure_id(molecule.copy()) == structure_id(molecule)


# -- composition and stress -----------------------------------------------------------------------


def test_composition_fields() -> None:
    atoms = Atoms(
        "Ni2CaFeNi", positions=np.arange(15).reshape(5, 3) * 0.5, cell=[2, 3, 4], pbc=True
    )
    fields = composition_fields(atoms)
    assert fields["formula"] == "CaFeNi3"
    assert fields["elements"] == ["Ca", "Fe", "Ni"]
    assert fields["chemsys"] == "Ca-Fe-Ni"
    assert fields["natoms"] == 5
    assert fields["composition"] == pytest.approx({"Ca": 0.2, "Fe": 0.2, "Ni": 0.6})
    assert fields["volume_per_atom_A3"] == pytest.approx(24.0 / 5)


def test_composition_fields_without_periodicity_has_no_volume() -> None:
    fields = composition_fields(Atoms("Fe2", positions=[[0, 0, 0], [2, 0, 0]]))
    assert fields["chemsys"] == "Fe"
    assert fields["composition"] == {"Fe": 1.0}
    assert "volume_per_atom_A3" not in fields


def test_stress_fields_none() -> None:
    assert stress_fields(None) == {"stress_GPa": None, "pressure_GPa": None}


def test_stress_fields_isotropic_compression() -> None:
    # ASE sign: tension positive, so a compressed cell has negative diagonal stress
    fields = stress_fields(np.array([-0.1, -0.1, -0.1, 0.0, 0.0, 0.0]))
    assert fields["pressure_GPa"] == pytest.approx(16.021766208)
    assert fields["stress_GPa"] == pytest.approx([-16.021766208] * 3 + [0.0] * 3)
    # 1 GPa of hydrostatic pressure
    one_gpa = stress_fields(np.array([-1.0, -1.0, -1.0, 0.0, 0.0, 0.0]) / EV_A3_TO_GPA)
    assert one_gpa["pressure_GPa"] == pytest.approx(1.0)


def test_stress_fields_voigt_and_3x3_agree() -> None:
    xx, yy, zz, yz, xz, xy = 0.01, -0.02, 0.03, 0.004, -0.005, 0.006
    voigt = stress_fields(np.array([xx, yy, zz, yz, xz, xy]))
    matrix = stress_fields(np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]))
    expected = np.array([xx, yy, zz, yz, xz, xy]) * EV_A3_TO_GPA
    assert voigt["stress_GPa"] == pytest.approx(expected.tolist())
    assert matrix["stress_GPa"] == pytest.approx(expected.tolist())
    assert voigt["pressure_GPa"] == pytest.approx(-(xx + yy + zz) / 3 * EV_A3_TO_GPA)
    assert matrix["pressure_GPa"] == voigt["pressure_GPa"]
    assert isinstance(voigt["pressure_GPa"], float)
    assert all(isinstance(v, float) for v in voigt["stress_GPa"])


# -- arrays ---------------------------------------------------------------------------------------


def test_npz_round_trip_is_bit_exact() -> None:
    atoms = _rattled_cafeni()
    arrays = structure_arrays(atoms)
    arrays["forces"] = np.random.default_rng(1).normal(size=(len(atoms), 3))
    decoded = decode_npz(encode_npz(arrays))
    assert set(decoded) == set(arrays)
    for key, value in arrays.items():
        assert decoded[key].dtype == value.dtype
        np.testing.assert_array_equal(decoded[key], value)
    assert arrays_nbytes(decoded) == arrays_nbytes(arrays)

    rebuilt = atoms_from_arrays(decoded)
    np.testing.assert_array_equal(rebuilt.numbers, atoms.numbers)
    np.testing.assert_array_equal(rebuilt.positions, atoms.positions)
    np.testing.assert_array_equal(rebuilt.cell[:], atoms.cell[:])
    np.testing.assert_array_equal(rebuilt.pbc, atoms.pbc)
    assert structure_id(rebuilt) == structure_id(atoms)


def test_atoms_from_lists() -> None:
    atoms = _rattled_cafeni()
    as_lists = {k: v.tolist() for k, v in structure_arrays(atoms).items()}
    assert structure_id(atoms_from_arrays(as_lists)) == structure_id(atoms)


# -- URIs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "mongodb://alice:s3cret@db.example.org:27017/al?authSource=admin",
            "mongodb://alice:***@db.example.org:27017/al?authSource=admin",
        ),
        (
            "mongodb+srv://bob:p%40ss%2Fw0rd@cluster0.example.net/",
            "mongodb+srv://bob:***@cluster0.example.net/",
        ),
        ("mongodb://u:pw@h1:1,h2:2/?replicaSet=rs", "mongodb://u:***@h1:1,h2:2/?replicaSet=rs"),
        ("mongodb://127.0.0.1:27017", "mongodb://127.0.0.1:27017"),
        ("mongodb://carol@host/db", "mongodb://carol@host/db"),
    ],
)
def test_redact_hides_passwords(uri: str, expected: str) -> None:
    assert redact(uri) == expected
    for secret in ("s3cret", "p%40ss", "pw@"):
        assert secret not in redact(uri)


def test_resolve_uri_order(tmp_path, monkeypatch) -> None:
    uri_file = tmp_path / "uri.txt"
    uri_file.write_text("  mongodb://from-file:27017\n\n")
    monkeypatch.setenv("AL_TEST_URI", " mongodb://from-env:27017 ")

    assert resolve_uri("mongodb://inline", uri_file, "AL_TEST_URI") == "mongodb://inline"
    assert resolve_uri(None, uri_file, "AL_TEST_URI") == "mongodb://from-file:27017"
    assert resolve_uri(None, str(uri_file), None) == "mongodb://from-file:27017"
    assert resolve_uri(None, None, "AL_TEST_URI") == "mongodb://from-env:27017"
    assert resolve_uri("", "", "AL_TEST_URI") == "mongodb://from-env:27017"
    assert resolve_uri() is None
    assert resolve_uri(None, None, None) is None


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_resolve_uri_empty_file_names_the_file(tmp_path, content: str) -> None:
    uri_file = tmp_path / "empty-uri.txt"
    uri_file.write_text(content)
    with pytest.raises(ValueError, match=r"empty-uri\.txt"):
        resolve_uri(None, uri_file, "ANY_VAR")


@pytest.mark.parametrize("value", [None, "", "   "])
def test_resolve_uri_unset_variable_names_it(monkeypatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("AL_LOOP_TEST_MISSING_URI", raising=False)
    else:
        monkeypatch.setenv("AL_LOOP_TEST_MISSING_URI", value)
    with pytest.raises(ValueError, match="AL_LOOP_TEST_MISSING_URI"):
        resolve_uri(None, None, "AL_LOOP_TEST_MISSING_URI")


# -- LabelQuery -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (LabelQuery(), {}),
        (LabelQuery(campaign="cafeni"), {"requests.campaign": "cafeni"}),
        (LabelQuery(iteration=2), {"requests": {"$elemMatch": {"iteration": 2}}}),
        (LabelQuery(iteration=0), {"requests": {"$elemMatch": {"iteration": 0}}}),
        (
            LabelQuery(campaign="cafeni", iteration=3),
            {"requests": {"$elemMatch": {"campaign": "cafeni", "iteration": 3}}},
        ),
        (LabelQuery(elements=["Ni", "Fe", "Ni"]), {"elements": {"$all": ["Fe", "Ni"]}}),
        (LabelQuery(elements=[]), {}),
        (LabelQuery(chemsys="Ni-Ca-Fe"), {"chemsys": "Ca-Fe-Ni"}),
        (LabelQuery(chemsys="Fe"), {"chemsys": "Fe"}),
        (LabelQuery(pressure_min_GPa=100), {"pressure_GPa": {"$gte": 100.0}}),
        (LabelQuery(pressure_min_GPa=0), {"pressure_GPa": {"$gte": 0.0}}),
        (LabelQuery(pressure_max_GPa=150.5), {"pressure_GPa": {"$lte": 150.5}}),
        (
            LabelQuery(pressure_min_GPa=100, pressure_max_GPa=150),
            {"pressure_GPa": {"$gte": 100.0, "$lte": 150.0}},
        ),
        (LabelQuery(status="ok"), {"status": "ok"}),
        (LabelQuery(status=["killed", "crashed"]), {"status": {"$in": ["killed", "crashed"]}}),
        (LabelQuery(status=("ok",)), {"status": {"$in": ["ok"]}}),
        (LabelQuery(physics_hash="abc123"), {"physics_hash": "abc123"}),
        (
            LabelQuery(
                campaign="cafeni",
                iteration=1,
                elements=["Fe"],
                chemsys="Fe-Ni",
                pressure_min_GPa=100,
                pressure_max_GPa=150,
                status="ok",
                physics_hash="h1",
            ),
            {
                "requests": {"$elemMatch": {"campaign": "cafeni", "iteration": 1}},
                "elements": {"$all": ["Fe"]},
                "chemsys": "Fe-Ni",
                "pressure_GPa": {"$gte": 100.0, "$lte": 150.0},
                "status": "ok",
                "physics_hash": "h1",
            },
        ),
        (
            LabelQuery(
                campaign="cafeni",
                status="ok",
                pressure_min_GPa=100,
                pressure_max_GPa=150,
                elements=["Fe"],
            ),
            {
                "requests.campaign": "cafeni",
                "status": "ok",
                "pressure_GPa": {"$gte": 100.0, "$lte": 150.0},
                "elements": {"$all": ["Fe"]},
            },
        ),
    ],
)
def test_label_query_to_filter(query: LabelQuery, expected: dict) -> None:
    flt = query.to_filter()
    assert flt == expected
    for key in ("pressure_GPa",):
        for value in flt.get(key, {}).values():
            assert type(value) is float
