"""Campaign stages on the session's real server: seeds, labels, recorded stages, resumption."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from al_loop.campaign import open_campaign
from al_loop.config import CampaignConfig, load_campaign
from al_loop.stages import LabelStage, ProgressEvent, SeedStage, TrainStage

pytestmark = pytest.mark.integration


def write_campaign(tmp_path: Path, mongo_uri: str, database: str, **changes: Any) -> Path:
    config = {
        "name": "cu-ni-test",
        "workdir": str(tmp_path / "run"),
        "system": {"elements": ["Cu", "Ni"], "pressures_GPa": [0, 20]},
        "seeds": {"prototypes": ["fcc"], "n_structures": 6, "max_atoms": 4},
        "store": {"uri": mongo_uri, "database": database, "launchpad_database": f"{database}_fw"},
        "launcher": {"workers": 1, "batch_size": 3},
        **changes,
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fcc_campaign(tmp_path: Path, mongo_uri: str, n_structures: int) -> tuple[CampaignConfig, str]:
    """A campaign of ``n_structures`` fcc Cu-Ni cells in a database of its own (its name)."""
    database = f"camp_{uuid.uuid4().hex[:8]}"
    seeds = {"prototypes": ["fcc"], "n_structures": n_structures, "max_atoms": 4}
    return load_campaign(write_campaign(tmp_path, mongo_uri, database, seeds=seeds)), database


def run_campaign(config: CampaignConfig, progress: Any = None) -> dict[str, Any]:
    """The campaign's first stages (seed, label), as `al-loop run` starts them."""
    progress = progress or (lambda event: None)
    with open_campaign(config) as session:
        SeedStage(session, progress).run(0)
        label = LabelStage(session, progress).run(0)
        return {**session.store.stats(config.name), "label_stage": label.result}


def test_run_resume_and_changed_configuration(tmp_path: Path, mongo_uri: str) -> None:
    database = f"camp_{uuid.uuid4().hex[:8]}"
    config = load_campaign(write_campaign(tmp_path, mongo_uri, database))
    events: list[ProgressEvent] = []
    summary = run_campaign(config, progress=events.append)
    seen = [(e.stage, e.kind) for e in events]
    assert seen == [
        ("seed", "start"),
        ("seed", "done"),
        ("label", "start"),
        ("label", "step"),  # submitted
        ("label", "step"),  # local launchers
        ("label", "done"),
    ]
    assert events[1].figures["structures"] == 6 and events[1].figures["wall_s"] >= 0
    assert events[-1].figures["labels"] == {"ok": 6}
    assert summary["structures"] == 6 and summary["labels"] == 6
    assert summary["labels_by_status"] == {"ok": 6}
    assert summary["label_stage"]["fireworks"] == {"COMPLETED": 2}

    # the workers found the dataset through my_fworker.yaml's env, not through the spec
    fworker = yaml.safe_load((tmp_path / "run" / "my_fworker.yaml").read_text())
    assert fworker["env"] == {"al_loop_store_uri": mongo_uri}

    # resuming does nothing new: recorded stages are skipped, nothing relaunched
    events.clear()
    again = run_campaign(config, progress=events.append)
    assert events == []
    assert again["labels"] == 6 and again["label_stage"]["fireworks"] == {"COMPLETED": 2}

    # a changed campaign file is used and the old one kept
    changed = load_campaign(write_campaign(tmp_path, mongo_uri, database, description="second try"))
    run_campaign(changed)
    with open_campaign(changed) as session:
        doc = session.log.document()
        assert doc["config_hash"] == changed.config_hash()
        assert [h["config_hash"] for h in doc["config_history"]] == [config.config_hash()]
        assert doc["physics_history"] == []  # the description is not physics
        assert doc["physics"] == {"asap_cutoff": False} and doc["software"]["ase"]
        for stage in ("seed", "label"):
            record = session.log.stage(0, stage)
            assert record is not None and record["software"]["fireworks"]
            assert record["wall_s"] > 0 and record["summary"]
        session.store.client.drop_database(database)
        session.store.client.drop_database(f"{database}_fw")


@pytest.mark.parametrize("route", ["uri_env", "uri_file"])
def test_uri_from_environment_or_file(
    tmp_path: Path, mongo_uri: str, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers reach the dataset without the URI in any Firework or in my_fworker.yaml."""
    database = f"camp_{uuid.uuid4().hex[:8]}"
    store: dict[str, Any] = {"database": database, "launchpad_database": f"{database}_fw"}
    if route == "uri_env":
        monkeypatch.setenv("MY_MONGO_URI", mongo_uri)
        store["uri_env"] = "MY_MONGO_URI"
    else:
        secret = tmp_path / "mongo-uri"
        secret.write_text(mongo_uri + "\n")
        store["uri_file"] = str(secret)
    path = write_campaign(
        tmp_path,
        mongo_uri,
        database,
        store=store,
        seeds={"prototypes": ["fcc"], "n_structures": 3, "max_atoms": 4},
    )
    config = load_campaign(path)
    summary = run_campaign(config)
    assert summary["labels_by_status"] == {"ok": 3}
    fworker_text = (tmp_path / "run" / "my_fworker.yaml").read_text()
    assert mongo_uri not in fworker_text
    launchpad_file = tmp_path / "run" / "my_launchpad.yaml"
    assert launchpad_file.stat().st_mode & 0o777 == 0o600
    with open_campaign(config, create=False) as session:
        launchpad = session.fireworks.launchpad
        specs = [fw["spec"] for fw in launchpad.fireworks.find({}, {"spec": 1})]
        assert specs and all(mongo_uri not in str(spec) for spec in specs)
        session.store.client.drop_database(database)
        session.store.client.drop_database(f"{database}_fw")


def test_a_member_that_fails_to_train_loses_none_of_the_others(
    tmp_path: Path, mongo_uri: str, standin_model: Path
) -> None:
    """Members train two at a time; one fails for real (its folder cannot be made). The others
    are stored, the error is raised, and the next run trains only the missing member."""
    database = f"camp_{uuid.uuid4().hex[:8]}"
    committee = {
        "n_models": 3,
        "foundation_model": str(standin_model),
        "max_epochs": 1,
        "parallel_trainings": 2,
        "held_out_fraction": 0.0,
    }
    config = load_campaign(write_campaign(tmp_path, mongo_uri, database, committee=committee))
    run_campaign(config)
    blocked = tmp_path / "run" / "training" / "iter000" / "member1"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where member 1's folder goes")
    with open_campaign(config) as session:
        with pytest.raises(FileExistsError):
            TrainStage(session).run(0)
        assert session.log.stage(0, "train") is None  # a failed stage is not recorded
        stored = {d["member"]: d["sha256"] for d in session.store.models(config.name, 0)}
        assert sorted(stored) == [0, 2]
        blocked.unlink()
        result = TrainStage(session).run(0).result
        again = {d["member"]: d["sha256"] for d in session.store.models(config.name, 0)}
    assert sorted(again) == [0, 1, 2] and result["models"] == 3
    assert {m: again[m] for m in (0, 2)} == stored  # not trained again
    assert result["parallel_trainings"] == 2


def test_a_physics_change_is_refused_unless_accepted(tmp_path: Path, mongo_uri: str) -> None:
    """EMT's asap_cutoff is physics: a resumed campaign refuses it, names it, and with the
    change accepted labels every structure again, leaving the old labels untouched."""
    from al_loop.campaign import PhysicsChanged
    from al_loop.committee import labelled_structures

    database = f"camp_{uuid.uuid4().hex[:8]}"
    config = load_campaign(write_campaign(tmp_path, mongo_uri, database))
    first = run_campaign(config)
    assert first["labels_by_status"] == {"ok": 6}
    changed = load_campaign(
        write_campaign(tmp_path, mongo_uri, database, oracle={"overrides": {"asap_cutoff": True}})
    )
    with pytest.raises(PhysicsChanged, match="asap_cutoff") as refused:
        run_campaign(changed)
    assert "--accept-physics-change" in str(refused.value)
    with open_campaign(changed, accept_physics_change=True) as session:
        before = {d["_id"]: d for d in session.store.db.labels.find({})}
        outcome = LabelStage(session).run(0)  # its record holds the old physics: runs again
        assert not outcome.reused
        assert outcome.result["labels_by_status"] == {"ok": 6}
        after = list(session.store.db.labels.find({}))
        assert len(after) == 12
        assert [d for d in after if d["_id"] in before] == list(before.values())
        train, held_out = labelled_structures(session)
        assert len(train) + len(held_out) == 6
        assert {a.info["label_id"] for a in train + held_out}.isdisjoint(map(str, before))
        doc = session.log.document()
        assert doc["physics"] == {"asap_cutoff": True}
        assert [h["physics"] for h in doc["physics_history"]] == [{"asap_cutoff": False}]
        assert LabelStage(session).run(0).reused  # done, with the new physics
        session.store.client.drop_database(database)
        session.store.client.drop_database(f"{database}_fw")


def test_a_worker_with_other_physics_labels_nothing(tmp_path: Path, mongo_uri: str) -> None:
    """A worker's own settings (FWorker env ``al_loop_execution``) may not change physics: its
    Firework FIZZLES, naming the key, and no label is made. The structures, without a label
    or a recorded failure, are submitted twice more, then the stage stays not done."""
    config, database = _fcc_campaign(tmp_path, mongo_uri, 3)
    with open_campaign(config) as session:
        SeedStage(session).run(0)
        fworker_file = session.fireworks.fworker_file
        fworker = yaml.safe_load(fworker_file.read_text())
        fworker["env"]["al_loop_execution"] = {"emt": {"asap_cutoff": True}}
        fworker_file.write_text(yaml.safe_dump(fworker))
        outcome = LabelStage(session).run(0)
        assert not outcome.done and outcome.result["fireworks"] == {"FIZZLED": 3}
        assert outcome.result["labels_by_status"] == {"unlabelled": 3}
        assert outcome.result["submitted_again"] == 6 and len(outcome.result["unfinished"]) == 3
        assert session.log.stage(0, "label") is None  # not recorded: the next run tries again
        launch = session.fireworks.launchpad.launches.find_one({})
        error = str(launch["action"]["stored_data"]["_exception"]["_stacktrace"])
        assert "other physics" in error and "asap_cutoff" in error
        assert session.store.db.labels.count_documents({}) == 0
        session.store.client.drop_database(database)
        session.store.client.drop_database(f"{database}_fw")


def test_an_interrupted_submission_and_an_abandoned_claim_are_completed(
    tmp_path: Path, mongo_uri: str
) -> None:
    """Two holes of a label stage: workflows inserted without their Fireworks (a kill between
    FireWorks' two inserts), and a label left `running` an hour ago by a Firework that will never
    run again. The stage removes the empty workflows, submits their structures, takes the
    abandoned claim over, and is done with every structure labelled."""
    import datetime as dt

    from launchers import label_workflows

    database = f"camp_{uuid.uuid4().hex[:8]}"
    config = load_campaign(write_campaign(tmp_path, mongo_uri, database))
    with open_campaign(config) as session:
        SeedStage(session).run(0)
        store, lp = session.store, session.fireworks.launchpad
        ids = store.structure_ids(config.name, 0)
        workflows = label_workflows(
            ids, config.name, 0, session.oracle, {"database": database}, 3, None, ["Cu", "Ni"]
        )
        lp.bulk_add_wfs(workflows)
        lp.fireworks.delete_many({})  # as if killed between the two inserts
        assert lp.workflows.count_documents({}) == 2
        atoms = store.get_structure(ids[0])
        hash_ = session.oracle.physics_hash_for(atoms.get_chemical_symbols())
        gone = {"job_id": "defused-long-ago", "host": "elsewhere", "pid": 1}
        claim = store.claim_label(ids[0], hash_, config.name, 0, gone)
        hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        store.db.labels.update_one({"_id": claim["_id"]}, {"$set": {"heartbeat_at": hour_ago}})

        outcome = LabelStage(session).run(0)
        assert outcome.done, outcome.result
        assert outcome.result["labels_by_status"] == {"ok": 6}
        assert store.db.labels.find_one({"_id": claim["_id"]})["attempts"] == 2
        nodes = [n for wf in lp.workflows.find({}, {"nodes": 1}) for n in wf["nodes"]]
        assert sorted(nodes) == sorted(d["fw_id"] for d in lp.fireworks.find({}, {"fw_id": 1}))
        session.store.client.drop_database(database)
        session.store.client.drop_database(f"{database}_fw")


def test_a_firework_written_by_someone_else_is_not_run(tmp_path: Path, mongo_uri: str) -> None:
    """Anyone who can write to the LaunchPad could add a Firework with FireWorks' ScriptTask
    and the campaign's name: al-loop's launchers take only Fireworks of its own Firetasks, so
    it stays READY (its command never runs) while the campaign's own are labelled."""
    from fireworks import Firework, ScriptTask

    config, database = _fcc_campaign(tmp_path, mongo_uri, 2)
    touched = tmp_path / "ran"
    with open_campaign(config) as session:
        SeedStage(session).run(0)
        forged = Firework(
            [ScriptTask(script=f"touch {touched}")],
            spec={"al_loop": {"campaign": config.name, "stage": "label"}},
            name="forged",
        )
        session.fireworks.launchpad.add_wf(forged)
        assert LabelStage(session).run(0).done
        assert session.store.db.labels.count_documents({"status": "ok"}) == 2
        state = session.fireworks.launchpad.fireworks.find_one({"name": "forged"})["state"]
        assert state == "READY" and not touched.exists()
        session.store.client.drop_database(database)
        session.store.client.drop_database(f"{database}_fw")
