"""al-loop foundation on a real source (EMT, Cu-Ni): trusted range, labels cached by content,
real mace training, held-out errors per pressure bin, the source labels in a real dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from ase.io import read

from al_loop.foundation import FOUNDATION_SETTINGS, FoundationRecipe, build_foundation
from al_loop.foundation.build import is_current, replay_file, report_file
from al_loop.foundation.dataset import store_source_labels
from database.store import Store

pytestmark = pytest.mark.integration

AL_LOOP = str(Path(sys.executable).parent / "al-loop")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[FoundationRecipe, Path, dict]:
    root = tmp_path_factory.mktemp("foundation")
    mp = pytest.MonkeyPatch()
    mp.setenv("AL_LOOP_CACHE", str(root / "cache"))
    recipe = FoundationRecipe(
        elements=("Cu", "Ni"),
        source="emt",
        pressure_max_GPa=40.0,
        n_structures=40,
        max_atoms=4,
        temperatures_K=(600.0,),
        settings=replace(FOUNDATION_SETTINGS, max_epochs=2, r_max_A=4.0),
    )
    lines: list[str] = []
    out = root / "cu-ni.model"
    report = build_foundation(recipe, out, progress=lines.append).to_document()
    yield recipe, out, {"report": report, "lines": lines, "cache": root / "cache", "mp": mp}
    mp.undo()


def test_a_foundation_is_built_with_its_companions_and_report(built) -> None:
    recipe, out, made = built
    report = made["report"]
    for path in (out, replay_file(out), report_file(out)):
        assert path.is_file()
    assert report["pressure_range_GPa"] == [0.0, 40.0] and report["not_covered"] == []
    assert report["trust"]["trusted_max_GPa"] > 40
    assert report["labels"]["n"] == 40 and report["labels"]["by_kind"]["md"] == 8
    held = report["held_out"]
    assert held["n"] == 4 and held["energy_rmse_meV_atom"] > 0
    assert set(held["by_pressure"]) <= {"0-10", "10-25", "25-50", ">50"}
    assert report["versions"]["mace-torch"] and report["recipe"]["source_identity"]["physics_hash"]
    assert len(read(replay_file(out), index=":")) == 36  # the held-out tenth is not in it
    # progress as it works: the scans, the labels, each epoch of the training
    text = "\n".join(made["lines"])
    assert "trusted to" in text and "labels: 40/40" in text and "Epoch 1" in text
    assert is_current(out, recipe)
    assert not is_current(out, replace(recipe, seed=1))


def test_labels_are_cached_by_content_and_reused(built, tmp_path: Path) -> None:
    recipe, _, made = built
    other = replace(recipe, settings=replace(recipe.settings, max_epochs=1))  # training only
    lines: list[str] = []
    report = build_foundation(other, tmp_path / "again.model", progress=lines.append)
    assert report.labels["from_cache"] and report.labels["n"] == 40
    assert any("from the cache" in line for line in lines)
    assert len(list((made["cache"] / "source-labels").glob("*.extxyz"))) == 1


def test_the_source_labels_go_to_the_dataset_once(built, store: Store) -> None:
    recipe, out, _ = built
    cache = Path(json.loads(report_file(out).read_text())["labels"]["cache"])
    labelled = read(cache, index=":")
    source = recipe.make_source()
    assert store_source_labels(store, source, labelled, "demo") == 40
    assert store_source_labels(store, source, labelled, "demo") == 0  # never twice
    docs = list(store.db.labels.find({"requests.campaign": "demo/foundation"}))
    assert len(docs) == 40 and {d["physics_hash"] for d in docs} == {
        source.identity()["physics_hash"]
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nope"], "--source 'nope': not an oracle"),
        (["--elements", "Cu,Xx"], "--elements: Xx not element symbols"),
        (["--structures", "5"], "--structures must be at least 20"),
        (["--preset", "fast"], "--preset 'fast': emt has default"),
        (["--pmax", "-5"], "--pmax -5: give a highest pressure in GPa"),
        (["--max-l", "4"], "--max-l 4: give 0, 1, 2 or 3"),
        (["--channels", "0"], "--channels must be at least 1"),
    ],
)
def test_bad_options_exit_2_naming_them(args: list[str], message: str, tmp_path: Path) -> None:
    base = {"--elements": "Cu,Ni", "--source": "emt"}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    done = subprocess.run(
        [AL_LOOP, "foundation", str(tmp_path / "f.model"), *sum(base.items(), ())],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())
    assert not (tmp_path / "f.model").exists()
