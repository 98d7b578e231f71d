"""Shared fixtures: one real MongoDB-protocol server (secantusdb) for the whole test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
os.environ.pop("QUACC_WORKFLOW_ENGINE", None)
os.environ.setdefault("TQDM_DISABLE", "1")

from database import EmbeddedServer, Store


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A real secantusdb server on a free loopback port, data on disk, for the whole session."""
    server = EmbeddedServer(tmp_path_factory.mktemp("mongo"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mongo_uri(mongo_server: EmbeddedServer) -> str:
    assert mongo_server.uri is not None
    return mongo_server.uri


@pytest.fixture
def store(mongo_uri: str) -> Iterator[Store]:
    """A fresh, empty dataset database (and LaunchPad database name) per test."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    s = Store.connect(mongo_uri, name, launchpad_database=f"{name}_fw")
    yield s
    s.client.drop_database(name)
    s.client.drop_database(f"{name}_fw")
    s.close()
