"""Shared fixtures: one real MongoDB-protocol server (secantusdb) per test process; the
expensive builds (the stand-in foundation, its committee, the pseudopotentials) once per run.

``make test`` runs two pytest-xdist workers (``-n 2 --dist loadscope``): the tests of one file
stay on one worker (their module fixtures are built once), and every file that uses the SLURM
cluster is on the same worker (one queue on this machine's cores)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.pop("QUACC_WORKFLOW_ENGINE", None)
# the suite's own model-signing key (database/model_signing.py), never the user's
_KEY_DIR = tempfile.TemporaryDirectory(prefix="al-loop-key-")  # removed when the session ends
os.environ.setdefault("AL_LOOP_MODEL_KEY_FILE", os.path.join(_KEY_DIR.name, "model.key"))
os.environ.setdefault("TQDM_DISABLE", "1")

from database import EmbeddedServer, Store  # noqa: E402 (after the environment above)

#: Test files that use the test SLURM cluster: one worker runs them all.
SLURM_FILES = {"test_slurm.py", "test_demo_campaign.py"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``--dist loadscope``: one work unit per test file (its module fixtures are built
    once), one for every file that uses the SLURM cluster, and each unit test on its own.
    (``--dist loadgroup`` cannot do this here: pytest-xdist 3.8 marks the groups on
    ``item._nodeid``, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if "/unit/" in path:
                return nodeid
            return "slurm" if path.rsplit("/", 1)[-1] in SLURM_FILES else path

    return FileScheduling(config, log)


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]
) -> Path:
    """``build(folder)`` once for the whole run: each xdist worker is a session of its own,
    so the first to come builds under a lock in the run's shared temporary folder and the
    others take its result."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    folder, done = root / f"shared-{name}", root / f"shared-{name}.path"
    with open(root / f"shared-{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            folder.mkdir(exist_ok=True)
            done.write_text(str(build(folder)))
        return Path(done.read_text())


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


@pytest.fixture(scope="session")
def standin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny stand-in foundation model for Cu-Ni-Al (EMT data, 16 channels, max_L 0), built
    once per session: no foundation model can be downloaded here. Its replay set is beside it."""
    from dataclasses import replace

    from calculators.models.standin import STANDIN_SETTINGS, build_standin_foundation

    # r_max 4 Å, not the stand-in's 5.5: every training and MD step of the suite is cheaper
    settings = replace(STANDIN_SETTINGS, max_epochs=8, r_max_A=4.0)
    return built_once(
        tmp_path_factory,
        "foundation",
        lambda folder: build_standin_foundation(
            ["Cu", "Ni", "Al"], folder / "standin.model", n_structures=60, settings=settings
        ),
    )


@pytest.fixture(scope="session")
def committee_models(standin_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two members fine-tuned from the stand-in (1 epoch, different seeds and data)."""
    from dataclasses import replace

    from calculators.models.mace_train import train_mace
    from calculators.models.standin import STANDIN_SETTINGS, emt_structures

    settings = replace(STANDIN_SETTINGS, max_epochs=1)

    def member(index: int) -> Callable[[Path], Path]:
        data = emt_structures(["Cu", "Ni", "Al"], 12, seed=100 + index)
        return lambda folder: (
            train_mace(
                data[2:], data[:2], folder, seed=index, settings=settings, foundation=standin_model
            ).path
        )

    return [built_once(tmp_path_factory, f"committee-m{i}", member(i)) for i in range(2)]


@pytest.fixture(scope="session")
def fast_pseudos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``fast`` Ca/Fe/Ni pseudopotential folder, built and checked once per session
    (installs Debian's Quantum ESPRESSO first when pw.x is missing and we are root)."""
    from calculators.oracles.pseudos import build_pseudo_dir

    def build(folder: Path) -> Path:
        build_pseudo_dir(folder, "fast", check=True)
        return folder

    return built_once(tmp_path_factory, "pseudos", build)


#: Stand-in POTCARs: VASP's are licensed, so tests write files with a real POTCAR's header
#: layout (enough for ASE, which concatenates them, and pymatgen/custodian, which parse them).
STUB_POTCARS = {"C": ("C", 4), "Ca_sv": ("Ca", 10), "Fe_pv": ("Fe", 14), "Ni_pv": ("Ni", 16)}


@pytest.fixture(scope="session")
def stub_potcars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``VASP_PP_PATH`` folder with stand-in POTCARs under ``potpaw_PBE.64/``."""
    root = tmp_path_factory.mktemp("potcars")
    for name, (element, valence) in STUB_POTCARS.items():
        folder = root / "potpaw_PBE.64" / name
        folder.mkdir(parents=True)
        (folder / "POTCAR").write_text(
            f"  PAW_PBE {name} 08Apr2002\n {valence:.1f}\n parameters from PSCTR are:\n"
            f"   VRHFIN ={element}: stand-in\n   LEXCH  = PE\n"
            f"   TITEL  = PAW_PBE {name} 08Apr2002\n"
            f"   POMASS =   1.000; ZVAL   =   {valence:.3f}    mass and valenz\n"
            "   ENMAX  =  400.000; ENMIN  =  300.000 eV\n END of PSCTR-controll parameters\n"
            " al-loop test stand-in, not a POTCAR\n  0.0 1.0 2.0 3.0\n End of Dataset\n"
        )
    return root


@pytest.fixture(scope="session")
def vasp_standin() -> str:
    """The command of the VASP stand-in (tests/helpers/vasp_standin.py), without its mode."""
    import shlex
    import sys

    script = Path(__file__).parent / "helpers" / "vasp_standin.py"
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


@pytest.fixture
def label_through_a_rocket(tmp_path: Path, mongo_uri: str) -> Callable[..., dict[str, Any]]:
    """``label(oracle, database=None, accept_physics_change=False)``: a campaign of two 2-atom
    bcc Fe-Ni cells with that ``oracle`` section is seeded and labelled through a real rocket
    (iteration 0); returns its ``labels`` (every label document of the database), ``training``
    (how many labels the committee would train on), ``physics_hash`` (the campaign's) and
    ``label_hashes`` (a label's, one per subset of Fe, Ni). Calls with the same ``database``
    continue the same campaign."""
    import yaml

    from al_loop.campaign import open_campaign
    from al_loop.committee import labelled_structures
    from al_loop.config import load_campaign
    from al_loop.stages import LabelStage, SeedStage

    def label(
        oracle: dict[str, Any], database: str | None = None, accept_physics_change: bool = False
    ) -> dict[str, Any]:
        database = database or f"{oracle['code']}_{uuid.uuid4().hex[:8]}"
        campaign = {
            "name": f"fe-ni-{oracle['code']}",
            "workdir": str(tmp_path / "run"),
            "system": {"elements": ["Fe", "Ni"], "pressures_GPa": [0, 250]},
            "seeds": {"prototypes": ["bcc"], "n_structures": 2, "max_atoms": 2, "rattle_A": 0.0},
            "oracle": oracle,
            "committee": {"held_out_fraction": 0.0},
            "store": {
                "uri": mongo_uri,
                "database": database,
                "launchpad_database": f"{database}_fw",
            },
            "launcher": {"workers": 1, "batch_size": 2},
        }
        path = tmp_path / "campaign.yaml"
        path.write_text(yaml.safe_dump(campaign))
        config = load_campaign(path)
        with open_campaign(config, accept_physics_change=accept_physics_change) as session:
            SeedStage(session).run(0)
            LabelStage(session).run(0)
            train, held_out = labelled_structures(session)
            return {
                "labels": list(session.store.db.labels.find({})),
                "training": len(train) + len(held_out),
                "physics_hash": session.physics_hash,
                "label_hashes": session.label_hashes,
                "oracle": session.oracle,
            }

    return label


def _random_student(elements: list[str], seed: int = 1) -> Any:
    """A student with random weights, its feature normalisation taken from rattled fcc alloy
    cells at 1.0 and 0.72 of the lattice constant (so its networks work in their range, as a
    trained student's do): cutoff 4.5 Å, 4 channels, lmax 3 (44 features), hidden 16 and 8."""
    import numpy as np
    import torch
    from ase.build import bulk

    from calculators.models.student.descriptor import DescriptorSpec
    from calculators.models.student.network import StudentModel, build_graph

    model = StudentModel(elements, DescriptorSpec(cutoff=4.5, n_channels=4), (16, 8), seed=seed)
    rng = np.random.default_rng(seed)
    cells = []
    for scale in (1.0, 0.86, 0.72):
        atoms = bulk("Cu", "fcc", a=3.6 * scale, cubic=True) * (2, 2, 2)
        atoms.symbols[:] = [elements[int(k)] for k in rng.integers(len(elements), size=32)]
        atoms.rattle(0.1, seed=seed)
        cells.append(atoms)
    model.set_normalisation(build_graph(cells, elements, 4.5, torch.float64))
    with torch.no_grad():
        model.e0.copy_(torch.linspace(-4, -3, len(elements)))
    return model


@pytest.fixture(scope="session")
def random_student() -> Callable[..., Any]:
    """``random_student(elements, seed=1)``: a student model with random numbers."""
    return _random_student
