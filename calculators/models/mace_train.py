"""Training MACE models with mace-torch's own trainer (``mace.cli.run_train``, through
``calculators.models.mace_run``, which keeps the E0s a fine-tuned model is given).

Each model is trained in a subprocess: mace's trainer owns global state (torch defaults,
logging handlers), a crash must not take the campaign with it, and the subprocess's log is
kept beside the model. Fine-tuning starts from a foundation model file; its isolated-atom
energies are ``estimated`` by default (mace fits them so that the foundation's predictions match
the labels: the oracle's energy reference is rarely the foundation's) or the ``foundation``'s
(``average`` gave 3.9 eV/atom errors, ENVIRONMENT.md). With a replay file it is mace's
multi-head fine-tuning, whose fine-tuned head is ``Default``. The loss is mace's ``stress``
loss: energy, forces and stress (its ``weighted`` loss silently drops the stress).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import write

log = logging.getLogger(__name__)

#: Keys of the reference values in the extxyz files handed to mace (never ASE's own keys,
#: which a calculator attached to the atoms would shadow).
ENERGY_KEY, FORCES_KEY, STRESS_KEY = "REF_energy", "REF_forces", "REF_stress"
#: The head a fine-tuned multi-head model predicts the user's data with.
FINETUNED_HEAD = "Default"


class TrainingFailed(RuntimeError):
    """mace's trainer exited with an error; the message ends with its log."""


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run (the architecture applies to training from scratch;
    a fine-tuned model keeps its foundation's)."""

    max_epochs: int = 50
    batch_size: int = 10
    learning_rate: float = 0.01
    dtype: str = "float64"
    device: str = "cpu"
    num_channels: int = 32
    max_L: int = 1
    r_max_A: float = 5.0
    #: Loss weights of per-atom energy (eV), force components (eV/Å), stress components (eV/Å³),
    #: each squared: balanced so that 10 meV/atom, 0.03 eV/Å and 0.5 GPa weigh alike. mace's
    #: usual 1/100/1 learns forces only: energies went from 24 to 158 meV/atom in a fine-tune
    #: (docs/design.md).
    energy_weight: float = 100.0
    forces_weight: float = 10.0
    stress_weight: float = 1000.0
    #: Decay of an exponential moving average of the weights (mace's ``--ema``); None: off.
    #: Without it the final weights carry the optimiser's noise, which the committee's spread
    #: then measures (docs/design.md).
    ema_decay: float | None = 0.99
    replay_samples: int = 1000
    #: Isolated-atom energies of a fine-tuned model: ``estimated`` from the foundation's
    #: predictions on the training labels, or the ``foundation``'s (from scratch: ``average``).
    e0s: str = "estimated"
    extra_args: dict[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainedModel:
    """A trained model file. Nothing is loaded in this process until ``heads`` is asked for, so
    :func:`train_mace` can run in worker threads: loading a MACE model runs torch.fx tracing,
    which patches ``torch.nn.Module.__call__`` for the whole process, and a model evaluated in
    another thread at that moment fails ("module is not installed as a submodule")."""

    path: Path
    seed: int
    args: list[str]
    log_file: Path

    @property
    def heads(self) -> list[str]:
        return model_heads(self.path)


def labelled_atoms(
    atoms: Atoms, energy: float, forces: np.ndarray, stress_voigt_eV_A3: np.ndarray | None
) -> Atoms:
    """A copy of ``atoms`` carrying its reference values under mace's ``REF_`` keys."""
    out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.info[ENERGY_KEY] = float(energy)
    out.arrays[FORCES_KEY] = np.asarray(forces, dtype=float)
    if stress_voigt_eV_A3 is not None:
        out.info[STRESS_KEY] = np.asarray(stress_voigt_eV_A3, dtype=float)
    out.info["config_type"] = "Default"
    return out


def train_args(
    train_file: Path,
    valid_file: Path,
    workdir: Path,
    name: str,
    seed: int,
    settings: TrainSettings,
    foundation: Path | str | None,
    replay_file: Path | None,
    atomic_numbers: Sequence[int],
) -> list[str]:
    """The command-line arguments of ``mace.cli.run_train`` for one model."""
    s = settings
    args = {
        "name": name,
        "seed": seed,
        "work_dir": str(workdir),
        "train_file": str(train_file),
        "valid_file": str(valid_file),
        "energy_key": ENERGY_KEY,
        "forces_key": FORCES_KEY,
        "stress_key": STRESS_KEY,
        "max_num_epochs": s.max_epochs,
        "batch_size": s.batch_size,
        "valid_batch_size": s.batch_size,
        "lr": s.learning_rate,
        "default_dtype": s.dtype,
        "device": s.device,
        "loss": "stress",  # energy, forces and stress (mace's "weighted" drops the stress)
        "energy_weight": s.energy_weight,
        "forces_weight": s.forces_weight,
        "stress_weight": s.stress_weight,
        "compute_stress": True,
        "eval_interval": 1,
        "save_cpu": True,
    }
    if s.ema_decay is not None:
        args |= {"ema": True, "ema_decay": s.ema_decay}
    if foundation is None:
        args |= {
            "model": "MACE",
            "num_channels": s.num_channels,
            "max_L": s.max_L,
            "r_max": s.r_max_A,
            "E0s": "average",
            "atomic_numbers": "[" + ", ".join(str(z) for z in sorted(atomic_numbers)) + "]",
        }
    else:
        args |= {"foundation_model": str(foundation), "E0s": s.e0s}
        if replay_file is None:
            args["multiheads_finetuning"] = False
        else:
            # mace sets multi-head fine-tuning's rate to 1e-4 unless told not to: with tens of
            # epochs the model then never leaves the foundation (benchmarks/transfer_bench.py)
            args |= {
                "pt_train_file": str(replay_file),
                "num_samples_pt": s.replay_samples,
                "force_mh_ft_lr": True,
            }
    args |= s.extra_args
    return command_line(args)


_QUIET = threading.RLock()


@contextlib.contextmanager
def quiet_mace_import() -> Iterator[None]:
    """Swallow what mace prints on import (a notice about cuequivariance). ``sys.stdout`` is
    process-wide: two threads redirecting at once can leave it pointing at a dead buffer (seen:
    the CLI's progress lines vanished), hence the lock."""
    with _QUIET, contextlib.redirect_stdout(io.StringIO()):
        yield
    restore_weights_only_default()


def restore_weights_only_default() -> None:
    """Undo what mace does on import: it sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` for the
    whole process, and every ``torch.load`` would then unpickle anything. al-loop loads MACE
    files with ``weights_only=False`` explicitly, and only its own signed files or the user's
    (calculators/models/committee.py); every other load keeps torch's safe default."""
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)


@functools.cache
def _parser_actions() -> dict[str, argparse.Action]:
    """mace-torch's trainer options by name (its own argument parser)."""
    with quiet_mace_import():
        from mace.tools.arg_parser import build_default_arg_parser

    actions = {}
    for action in build_default_arg_parser()._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                actions[option[2:]] = action
    return actions


#: ``mace_run_train`` options that al-loop sets itself, with the campaign key that sets them
#: (``mace_args`` may not override them: the stored hyper-parameters would then be wrong).
OWN_OPTIONS = {
    "max_num_epochs": "committee.max_epochs",
    "batch_size": "committee.batch_size",
    "valid_batch_size": "committee.batch_size",
    "lr": "committee.learning_rate",
    "default_dtype": "committee.dtype",
    "device": "committee.device",
    "energy_weight": "committee.energy_weight",
    "forces_weight": "committee.forces_weight",
    "E0s": "committee.e0s",
    "stress_weight": "committee.stress_weight",
    "ema": "committee.ema_decay",
    "ema_decay": "committee.ema_decay",
    "num_channels": "committee.num_channels",
    "max_L": "committee.max_L",
    "r_max": "committee.r_max_A",
    "foundation_model": "committee.foundation_model",
    "pt_train_file": "committee.replay_file",
    "num_samples_pt": "committee.replay_samples",
    "seed": "seed",
    **{
        key: "nothing: al-loop sets it for every member"
        for key in (
            "name",
            "work_dir",
            "train_file",
            "valid_file",
            "energy_key",
            "forces_key",
            "stress_key",
            "loss",
            "compute_stress",
            "multiheads_finetuning",
            "force_mh_ft_lr",
            "atomic_numbers",
            "model",
            "save_cpu",
            "eval_interval",
        )
    },
}


def train_options() -> list[str]:
    """Every option name ``mace_run_train`` accepts."""
    return sorted(_parser_actions())


def command_line(args: dict[str, Any]) -> list[str]:
    """``--key=value`` arguments; a switch (``store_true``) appears only when true."""
    actions = _parser_actions()
    out = []
    for key, value in args.items():
        if key not in actions:
            raise ValueError(f"{key!r} is not an option of mace_run_train")
        if actions[key].nargs == 0:
            if value:
                out.append(f"--{key}")
        else:
            out.append(f"--{key}={value}")
    return out


def train_mace(
    train: Sequence[Atoms],
    valid: Sequence[Atoms],
    workdir: Path,
    seed: int,
    settings: TrainSettings,
    foundation: Path | str | None = None,
    replay_file: Path | None = None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Train one MACE model on ``train`` (atoms from :func:`labelled_atoms`), validated on
    ``valid``; from ``foundation`` if given, else from scratch. Returns the CPU model file.
    ``progress`` is called with each epoch's line of mace's log as it is written."""
    if not train or not valid:
        raise ValueError(
            f"training needs labelled structures: got {len(train)} train, {len(valid)} validation"
        )
    workdir = workdir.resolve()  # the trainer runs in it: every path it is given is absolute
    if foundation is not None and Path(foundation).is_file():  # a file, not a named model
        foundation = Path(foundation).resolve()
    replay_file = replay_file.resolve() if replay_file is not None else None
    workdir.mkdir(parents=True, exist_ok=True)
    # mace resumes from (and ends by loading the best of) any checkpoint left in its folder with
    # the same name and seed: a second training in the same folder silently returned the first
    # one's model (seen in benchmarks/transfer_bench.py). Every training starts clean.
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    train_file, valid_file = workdir / "train.xyz", workdir / "valid.xyz"
    write(train_file, list(train), format="extxyz")
    write(valid_file, list(valid), format="extxyz")
    numbers = {int(z) for atoms in [*train, *valid] for z in atoms.numbers}
    if settings.batch_size > len(train):  # mace drops incomplete batches: none would be left
        settings = replace(settings, batch_size=len(train))
    name = "model"
    args = train_args(
        train_file, valid_file, workdir, name, seed, settings, foundation, replay_file, numbers
    )
    # mace's trainer reads the foundation model (the user's file) with torch.load's defaults
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log_file = workdir / "train.log"
    log.info("training MACE (seed %d, %d structures) in %s", seed, len(train), workdir)
    with open(log_file, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "calculators.models.mace_run", *args],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        code = _wait_reporting(process, log_file, progress)
    model = workdir / f"{name}.model"
    if code != 0 or not model.is_file():
        lines = log_file.read_text(errors="replace").splitlines()
        reported = [line for line in lines if " ERROR: " in line]
        tail = "\n".join([*reported, "...", *lines[-15:]])
        raise TrainingFailed(f"mace run_train exited with code {code} (log: {log_file}):\n{tail}")
    return TrainedModel(model, seed, args, log_file)


def _wait_reporting(
    process: subprocess.Popen, log_file: Path, progress: Callable[[str], None] | None
) -> int:
    """Wait for the trainer; pass each new epoch line of its log to ``progress``."""
    if progress is None:
        return process.wait()
    seen = 0
    while True:
        code = process.poll()
        with open(log_file, "rb") as handle:
            handle.seek(seen)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        seen += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            if "Epoch" in line and "loss=" in line:
                progress(line.split(" INFO: ")[-1].strip())
        if code is not None:
            return code
        time.sleep(1.0)


def model_heads(path: Path) -> list[str]:
    """The heads of a MACE model file (one ``Default`` head for a single-head model)."""
    import torch

    with quiet_mace_import():
        import mace  # noqa: F401  (mace before e3nn: ENVIRONMENT.md)

    # a pickled module: only files al-loop trained or the user named (models/committee.py)
    model = torch.load(path, map_location="cpu", weights_only=False)
    return list(getattr(model, "heads", None) or [FINETUNED_HEAD])


def foundation_names() -> list[str]:
    """The MACE-MP foundation models that ``committee.foundation_model`` may name."""
    with quiet_mace_import():
        from mace.calculators.foundations_models import mace_mp_names

    return [name for name in mace_mp_names if name is not None]


def fetch_foundation(name: str) -> Path:
    """The local file of the named MACE-MP model: mace's cache, downloaded into it now if it
    is not there yet. Raises :class:`OSError` when it cannot be had (no network)."""
    with quiet_mace_import():
        from mace.calculators.foundations_models import download_mace_mp_checkpoint

    if name not in foundation_names():
        raise ValueError(f"{name!r} is not a MACE-MP model; known: {', '.join(foundation_names())}")
    said = io.StringIO()  # mace prints where it cached the file
    try:
        with contextlib.redirect_stdout(said):
            path = Path(download_mace_mp_checkpoint(name))
    except Exception as exc:  # urllib raises URLError, timeouts, HTTP errors
        raise OSError(f"cannot download MACE model {name!r}: {exc}") from exc
    for line in said.getvalue().splitlines():
        log.info("mace: %s", line)
    if not path.is_file():
        raise OSError(f"MACE model {name!r} not found at {path} after its download")
    return path
