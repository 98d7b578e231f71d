"""A dataset on a server that requires authentication (secantusdb --auth, a real SCRAM user):
the password lives in the URI file only; my_launchpad.yaml and my_fworker.yaml never hold it,
and real rockets label through it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
import yaml

from al_loop.campaign import open_campaign
from al_loop.config import load_campaign
from al_loop.stages import LabelStage, SeedStage
from database.embedded import executable, free_port
from launchers.fireworks_compat import patch

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pw"


@pytest.fixture(scope="module")
def auth_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with one user, started with --auth: the URI with its password."""
    folder = tmp_path_factory.mktemp("auth")
    port = free_port()

    def start(*extra: str) -> subprocess.Popen:
        server = subprocess.Popen(
            [executable("secantusd-py", "secantusdb"), "--host", "127.0.0.1", "--port",
             str(port), "--storage-path", str(folder / "data"), "--log-level", "WARNING", *extra],
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with pymongo.MongoClient(
                    f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=500
                ) as c:
                    c.admin.command("ping")
                return server
            except pymongo.errors.PyMongoError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    server = start()
    with pymongo.MongoClient(f"mongodb://127.0.0.1:{port}") as client:
        client.admin.command("createUser", "al", pwd=PASSWORD, roles=["root"])
    server.terminate()
    server.wait()
    server = start("--auth")
    try:
        yield f"mongodb://al:{PASSWORD}@127.0.0.1:{port}/?authSource=admin"
    finally:
        server.terminate()
        server.wait()


def test_the_password_stays_in_the_uri_file(tmp_path: Path, auth_uri: str) -> None:
    with (
        pymongo.MongoClient(
            auth_uri.replace(PASSWORD, "wrong"), serverSelectionTimeoutMS=3000
        ) as c,
        pytest.raises(pymongo.errors.OperationFailure),
    ):
        c.al.labels.count_documents({})  # the server does refuse a wrong password
    (tmp_path / "uri.txt").write_text(auth_uri + "\n")
    config = {
        "name": "auth-test",
        "workdir": str(tmp_path / "run"),
        "system": {"elements": ["Cu", "Ni"]},
        "seeds": {"prototypes": ["fcc"], "n_structures": 3, "max_atoms": 4},
        "store": {"uri_file": "uri.txt", "database": "auth_al", "launchpad_database": "auth_fw"},
        "launcher": {"workers": 1, "batch_size": 3},
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    with open_campaign(load_campaign(path)) as session:
        SeedStage(session).run(0)
        outcome = LabelStage(session).run(0)
        assert outcome.done and outcome.result["labels_by_status"] == {"ok": 3}
        files = [session.fireworks.launchpad_file, session.fireworks.fworker_file]
    for written in [
        *files,
        *(tmp_path / "run").rglob("*.yaml"),
        *(tmp_path / "run").rglob("*.json"),
    ]:
        assert PASSWORD not in written.read_text(), written
    launchpad = yaml.safe_load(files[0].read_text())
    assert launchpad["host"] == auth_uri.replace(f":{PASSWORD}", "")
    assert launchpad["al_loop_uri_file"] == str(tmp_path / "uri.txt")
    patch()  # as in `python -m launchers.rlaunch`: FireWorks' own loader reads the URI file
    from fireworks import LaunchPad

    assert LaunchPad.from_file(str(files[0])).fireworks.count_documents({}) == 1
