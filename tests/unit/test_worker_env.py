"""What a worker reads from its FWorker ``env``: the dataset's address, and its own execution
settings, which may never change a label's physics."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from calculators.oracles import make_oracle
from launchers.tasks import LabellingFailed, worker_oracle
from launchers.worker_env import (
    DATA_DIR_KEY,
    EXECUTION_KEY,
    URI_FILE_KEY,
    URI_KEY,
    execution_settings,
    fworker_env,
    process_env,
    store_uri,
)

UPF = {"Ca": "Ca.pbe-spn-rrkjus.UPF", "Fe": "Fe.pbe-nd-rrkjus.UPF", "Ni": "Ni.pbe-nd-rrkjus.UPF"}


def upf_dir(folder: Path) -> Path:
    folder.mkdir()
    for element, name in UPF.items():
        (folder / name).write_text(f"<UPF> {element} </UPF>\n")
    return folder


def spec(pseudos: Path) -> dict:
    """What a labelling Firework carries for a Fe-Ni campaign (launchers.workflows)."""
    oracle = make_oracle("espresso", "fast", {"pseudo_dir": str(pseudos)})
    elements = ["Fe", "Ni"]
    return {
        "code": "espresso",
        "settings": oracle.settings.to_dict(),
        "elements": elements,
        "physics": oracle.physics_for(elements),
        "physics_hash": oracle.physics_hash_for(elements),
    }


def test_the_dataset_address_is_written_and_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri_file = tmp_path / "uri"
    uri_file.write_text("mongodb://db.example:27017\n")
    assert fworker_env(uri="mongodb://a:1", uri_file=uri_file) == {URI_FILE_KEY: str(uri_file)}
    assert fworker_env(uri="mongodb://a:1", data_dir=tmp_path) == {URI_KEY: "mongodb://a:1"}
    assert fworker_env(data_dir=tmp_path) == {DATA_DIR_KEY: str(tmp_path)}
    assert store_uri(fworker_env(uri_file=uri_file)) == "mongodb://db.example:27017"
    assert store_uri({URI_KEY: "mongodb://b:2"}) == "mongodb://b:2"
    monkeypatch.setenv("MY_URI", "mongodb://c:3")
    assert process_env("MY_URI") == {"AL_LOOP_STORE_URI": "mongodb://c:3"}
    # a queue job inherits MY_URI from where it was submitted: its FWorker names the variable
    assert store_uri(fworker_env(uri_env="MY_URI")) == "mongodb://c:3"
    monkeypatch.setenv("AL_LOOP_STORE_URI", "mongodb://c:3")  # what local launchers get
    assert store_uri({}) == "mongodb://c:3"
    monkeypatch.delenv("AL_LOOP_STORE_URI")
    with pytest.raises(RuntimeError, match="does not know where"):
        store_uri({})


def test_a_worker_brings_its_own_execution_settings(tmp_path: Path) -> None:
    campaign = upf_dir(tmp_path / "campaign")
    mine = tmp_path / "cluster-copy"
    shutil.copytree(campaign, mine)  # the same files, elsewhere
    local = {"parallel_cmd": "srun --cpu-bind=cores", "pseudo_dir": str(mine), "wall_time_s": 60}
    env = fworker_env(uri="mongodb://a:1", execution={"espresso": local})
    assert execution_settings(env, "espresso") == local and execution_settings(env, "vasp") == {}
    oracle = worker_oracle(spec(campaign), env)
    assert oracle.settings.parallel_cmd == "srun --cpu-bind=cores"
    assert oracle.files_folder() == mine.resolve() and oracle.settings.wall_time_s == 60


def test_a_worker_never_changes_physics(tmp_path: Path) -> None:
    campaign = upf_dir(tmp_path / "campaign")
    other = upf_dir(tmp_path / "other")
    (other / UPF["Fe"]).write_text("<UPF> another Fe </UPF>\n")
    with pytest.raises(LabellingFailed, match=r"pseudopotentials\.Fe"):
        worker_oracle(spec(campaign), {EXECUTION_KEY: {"espresso": {"pseudo_dir": str(other)}}})
    with pytest.raises(LabellingFailed, match="ecutwfc_Ry"):
        worker_oracle(spec(campaign), {EXECUTION_KEY: {"espresso": {"ecutwfc_Ry": 40.0}}})
    # a file of an element the campaign does not have plays no part
    (other / UPF["Fe"]).write_text("<UPF> Fe </UPF>\n")
    (other / UPF["Ca"]).write_text("<UPF> another Ca </UPF>\n")
    oracle = worker_oracle(
        spec(campaign), {EXECUTION_KEY: {"espresso": {"pseudo_dir": str(other)}}}
    )
    assert oracle.files_folder() == other.resolve()


def test_a_firework_cannot_choose_what_a_worker_runs(tmp_path: Path) -> None:
    """Anyone who can write to the LaunchPad can write a Firework: the commands a worker runs
    come from its own FWorker env, and labelling Fireworks never carry them."""
    from launchers.workflows import label_workflows

    campaign = upf_dir(tmp_path / "campaign")
    written = spec(campaign)
    written["settings"] |= {"parallel_cmd": "touch /tmp/owned;", "pw_args": "; rm -rf ~"}
    oracle = worker_oracle(written, fworker_env(uri="mongodb://a:1"))
    assert (oracle.settings.parallel_cmd, oracle.settings.pw_args) == ("", "")  # the defaults
    mine = {EXECUTION_KEY: {"espresso": {"parallel_cmd": "mpirun -np 2"}}}
    assert worker_oracle(written, mine).settings.parallel_cmd == "mpirun -np 2"

    ours = make_oracle(
        "espresso", "fast", {"pseudo_dir": str(campaign), "parallel_cmd": "mpirun -np 4"}
    )
    (workflow,) = label_workflows(["s1"], "c", 0, ours, {"database": "d"}, 1, None, ["Fe"])
    sent = workflow.fws[0].tasks[0]["oracle"]["settings"]
    assert "parallel_cmd" not in sent and "pw_args" not in sent and "ecutwfc_Ry" in sent


def test_a_retry_rung_cannot_change_a_command(tmp_path: Path) -> None:
    from pydantic import ValidationError

    campaign = upf_dir(tmp_path / "campaign")
    with pytest.raises(ValidationError, match="cannot change 'parallel_cmd'"):
        make_oracle(
            "espresso",
            "fast",
            {"pseudo_dir": str(campaign), "retries": [{"parallel_cmd": "sh -c 'id'"}]},
        )
