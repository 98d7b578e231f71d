"""VASP settings checks and the records the VASP oracle keeps (no VASP run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from al_loop.config_errors import format_loc
from calculators.oracles.registry import resolve_settings
from calculators.oracles.settings import first_problem
from calculators.oracles.vasp import _corrections, physics_changes


def problem(**overrides: object) -> tuple[str, str] | None:
    """The first problem of the fast preset with ``overrides``, as (key path, message)."""
    try:
        resolve_settings("vasp", "fast", overrides)
    except ValidationError as err:
        loc, message = first_problem(err)
        return format_loc(loc), message
    return None


def test_the_shipped_settings_are_usable() -> None:
    assert problem() is None


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"incar": {"ENCTU": 520}}, "incar.ENCTU", "did you mean 'ENCUT'"),
        ({"incar": {"PSTRESS": 10}}, "incar.PSTRESS", "own cell"),
        ({"incar": {"MAGMOM": [1, 2]}}, "incar.MAGMOM", "use magmoms"),
        ({"incar": {"sigma": 0.1}}, "incar.sigma", "upper case: SIGMA"),
        ({"retries": [{"incar": {"NSW": 3}}]}, "retries[0].incar.NSW", "single points"),
        ({"retries": [{"nelm": 3}]}, "retries[0].nelm", "cannot set 'nelm'"),
        (
            {"retries": [{"incar": {"SIGMA": 0.3}}]},
            "retries[0].incar.SIGMA",
            "execution settings only",
        ),
        ({"retries": [{"kspacing_A": 0.3}]}, "retries[0].kspacing_A", "not the physics"),
        ({"custodian_handlers": ["Nope"]}, "custodian_handlers[0]", "not a custodian VASP handler"),
        ({"potcars": {"N": "Ni_pv"}}, "potcars.N", "'Ni_pv' is not a POTCAR of N"),
        ({"potcars": {"C": "Ca_sv"}}, "potcars.C", "not a POTCAR of C"),
        ({"wall_time_s": "1h"}, "wall_time_s", "valid number"),
        ({"kspacing_A": 0}, "kspacing_A", "greater than 0"),
    ],
)
def test_settings_problems_name_the_key(overrides: dict, key: str, words: str) -> None:
    found = problem(**overrides)
    assert found is not None and found[0] == key and words in found[1], found


def test_potcar_names_with_suffixes_are_accepted() -> None:
    assert problem(potcars={"H": "H.75", "Fe": "Fe_sv_GW", "Ni": "Ni"}) is None


def test_custodian_records_are_summarised_even_when_a_handler_gave_up(tmp_path: Path) -> None:
    log = [
        {
            "job": {},
            "corrections": [
                {
                    "errors": ["Unconverged"],
                    "actions": [{"dict": "INCAR", "action": {"_set": {"ALGO": "All"}}}],
                    "handler": {
                        "@module": "custodian.vasp.handlers",
                        "@class": "UnconvergedErrorHandler",
                    },
                },
                {
                    "errors": ["Positive energy"],
                    "actions": None,
                    "handler": {"@class": "PositiveEnergyErrorHandler"},
                },
            ],
        },
        {"job": {}, "corrections": []},
    ]
    (tmp_path / "custodian.json").write_text(json.dumps(log))
    assert _corrections(tmp_path) == [
        {
            "handler": "UnconvergedErrorHandler",
            "errors": ["Unconverged"],
            "actions": ['{"dict": "INCAR", "action": {"_set": {"ALGO": "All"}}}'],
        },
        {"handler": "PositiveEnergyErrorHandler", "errors": ["Positive energy"], "actions": []},
    ]
    (tmp_path / "custodian.json").write_text("[{")  # custodian killed while writing
    assert _corrections(tmp_path) == []


def test_physics_changes_made_by_custodian_are_found(tmp_path: Path) -> None:
    (tmp_path / "INCAR.orig").write_text("ENCUT = 400\nSIGMA = 0.2\nALGO = Fast\nGGA = pe\n")
    (tmp_path / "INCAR").write_text(
        "ENCUT = 400.0\nSIGMA = 0.05\nALGO = All\nGGA = PE\nISMEAR = 0\n"
    )
    assert physics_changes(tmp_path) == {"ISMEAR": [None, 0], "SIGMA": [0.2, 0.05]}
    (tmp_path / "INCAR.orig").unlink()  # no custodian: nothing could change
    assert physics_changes(tmp_path) == {}


def test_a_retry_may_change_numerics() -> None:
    assert problem(retries=[{"incar": {"ALGO": "All", "NELM": 200, "AMIX": 0.1}}]) is None


def test_execution_tags_are_not_physics() -> None:
    base = resolve_settings("vasp", "fast")
    numerics = resolve_settings("vasp", "fast", {"incar": {"ALGO": "All", "NCORE": 4}})
    physics = resolve_settings("vasp", "fast", {"incar": {"ENCUT": 520}})
    assert numerics.physics_part() == base.physics_part()
    assert {"ALGO": "All", "NCORE": 4}.items() <= numerics.execution_part()["incar"].items()
    assert not {"ALGO", "NCORE", "NELM", "LWAVE"} & set(numerics.physics_part()["incar"])
    assert physics.physics_part()["incar"]["ENCUT"] == 520 != base.physics_part()["incar"]["ENCUT"]
