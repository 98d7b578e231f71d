"""Fitting the student to a teacher's (and DFT's) energies, forces and stress.

Frames are ASE Atoms with a calculator holding ``energy``, ``forces`` and ``stress`` (the
teacher's, or a label's), and an optional ``info["weight"]`` (DFT labels weigh more). The loss
is a weighted sum of squared errors of energy per atom, force components and stress, each
averaged per frame; Adam with an exponentially decaying rate; the model (or, with
``ema_decay``, the moving average of its weights) with the lowest validation loss is kept,
and the fit stops once it has not improved for ``patience`` epochs. A
fit of :data:`EPOCHS_TO_JUDGE` epochs or more whose validation loss never fell below its first
epoch's raises :class:`StudentFitError` (it learnt nothing: the rate is too high or the data
are inconsistent). The fit runs in ``settings.dtype`` (float32 by default); the normalisation
and the model returned are float64.
Everything is seeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms

from calculators.models.student.descriptor import DescriptorSpec
from calculators.models.student.network import StudentModel, build_graph

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudentSettings:
    """The student's route into LAMMPS (``pair``: the project's pair style; ``mliap``: ML-IAP
    nn on SNAP, whose band limit is ``twojmax``), its shape and its fit."""

    route: str = "pair"
    cutoff: float = 5.0
    twojmax: int = 6
    n_basis: int = 8
    n_channels: int = 8
    lmax: int = 3
    decay: int = 4
    hidden: tuple[int, ...] = (32, 32)
    epochs: int = 300
    batch_size: int = 4
    learning_rate: float = 3e-3  # 1e-2 diverged in 300 epochs on the demo's sample
    final_learning_rate: float = 1e-4
    energy_weight: float = 100.0  # on (eV/atom)^2
    force_weight: float = 2.0  # on (eV/Å)^2
    stress_weight: float = 500.0  # on (eV/Å^3)^2
    clip_grad_norm: float | None = None  # the gradient's norm is cut to this (None: never)
    patience: int | None = None  # stop after this many epochs without a better validation loss
    ema_decay: float | None = None  # validate and keep a moving average (campaigns: 0.99)
    validation_fraction: float = 0.1
    dtype: str = "float32"  # of the fit; the model is float64
    seed: int = 0
    threads: int | None = None

    @property
    def spec(self) -> DescriptorSpec:
        return DescriptorSpec(self.cutoff, self.n_basis, self.n_channels, self.lmax, self.decay)


class StudentFitError(ValueError):
    """The fit did not learn: its validation loss never fell below the first epoch's."""


#: A fit of at least this many epochs whose first epoch stayed its best learnt nothing.
EPOCHS_TO_JUDGE = 10


@dataclass
class Targets:
    """What a batch of frames is fitted to."""

    energy: torch.Tensor  # (structures,) eV
    forces: torch.Tensor  # (atoms, 3)
    stress: torch.Tensor  # (structures, 3, 3) eV/Å^3, ASE's sign
    has_stress: torch.Tensor  # (structures,) bool
    weight: torch.Tensor  # (structures,)
    n_atoms: torch.Tensor  # (structures,)
    structure: torch.Tensor  # (atoms,) index of each atom's structure


@dataclass
class Batch:
    """A model's inputs (for the pair style a :class:`Graph`) and the targets: the model is
    called as ``model(inputs, create_graph=...)`` and returns energy, forces and stress."""

    inputs: Any
    targets: Targets


@dataclass
class FitHistory:
    """Per epoch: train and validation loss, the largest gradient norm (before any clipping)
    and the steps clipped; and the wall time."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    grad_norm_max: list[float] = field(default_factory=list)
    clipped_steps: list[int] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    wall_s: float = 0.0

    def to_document(self) -> dict[str, Any]:
        """The curve as stored with a student: losses per epoch, the best epoch, the stop."""
        return {
            "train_loss": [float(x) for x in self.train_loss],
            "validation_loss": [float(x) for x in self.validation_loss],
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.validation_loss),
            "stopped_early": self.stopped_early,
        }


def targets_of(frames: Sequence[Atoms], dtype: torch.dtype) -> Targets:
    stresses, has = [], []
    for atoms in frames:
        try:
            stresses.append(atoms.get_stress(voigt=False))
            has.append(True)
        except Exception:  # a frame without stress (molecule, old label) still trains E and F
            stresses.append(np.zeros((3, 3)))
            has.append(False)
    return Targets(
        energy=torch.tensor([a.get_potential_energy() for a in frames], dtype=dtype),
        forces=torch.as_tensor(np.concatenate([a.get_forces() for a in frames]), dtype=dtype),
        stress=torch.as_tensor(np.array(stresses), dtype=dtype),
        has_stress=torch.tensor(has),
        weight=torch.tensor([float(a.info.get("weight", 1.0)) for a in frames], dtype=dtype),
        n_atoms=torch.tensor([len(a) for a in frames], dtype=dtype),
        structure=torch.as_tensor(np.repeat(np.arange(len(frames)), [len(a) for a in frames])),
    )


def loss(
    model: torch.nn.Module, batch: Batch, settings: StudentSettings, create_graph: bool
) -> torch.Tensor:
    """The weighted loss of ``batch`` (see the module docstring)."""
    energy, forces, stress = model(batch.inputs, create_graph=create_graph)
    t = batch.targets
    e_term = ((energy - t.energy) / t.n_atoms) ** 2
    f_sq = ((forces - t.forces) ** 2).sum(1)
    f_term = torch.zeros_like(energy).index_add(0, t.structure, f_sq) / (3 * t.n_atoms)
    s_term = ((stress - t.stress) ** 2).mean((1, 2)) * t.has_stress
    per_frame = (
        settings.energy_weight * e_term
        + settings.force_weight * f_term
        + settings.stress_weight * s_term
    )
    return (t.weight * per_frame).sum() / t.weight.sum()


def reference_energies(frames: Sequence[Atoms], elements: Sequence[str]) -> np.ndarray:
    """Per-element energies by least squares of the frames' energies on their compositions."""
    counts = np.array(
        [[a.get_chemical_symbols().count(e) for e in elements] for a in frames], float
    )
    energies = np.array([a.get_potential_energy() for a in frames])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return solution


def fit_student(
    frames: Sequence[Atoms],
    elements: Sequence[str],
    settings: StudentSettings = StudentSettings(),
    validation: Sequence[Atoms] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[StudentModel, FitHistory]:
    """A student fitted to ``frames`` (a seeded ``validation_fraction`` is held out unless
    ``validation`` is given); ``on_epoch(epoch, train_loss, validation_loss)`` after each
    epoch."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    rng = np.random.default_rng(settings.seed)
    frames = list(frames)
    if validation is None:
        frames, validation = held_out(frames, settings, rng)
    if not frames:
        raise ValueError("student: no frames to fit")
    model = StudentModel(elements, settings.spec, settings.hidden, seed=settings.seed)
    with torch.no_grad():
        model.e0.copy_(torch.from_numpy(reference_energies(frames, elements)))
    model.set_normalisation(build_graph(frames, elements, settings.cutoff, torch.float64))
    dtype = getattr(torch, settings.dtype)

    def batch(chunk: Sequence[Atoms]) -> Batch:
        return Batch(build_graph(chunk, elements, settings.cutoff, dtype), targets_of(chunk, dtype))

    history = train(model, frames, validation, batch, settings, rng, on_epoch)
    return model, history


def held_out(
    frames: Sequence[Atoms], settings: StudentSettings, rng: np.random.Generator
) -> tuple[list[Atoms], list[Atoms]]:
    """``frames`` less a seeded ``validation_fraction``, and that fraction."""
    order = rng.permutation(len(frames))
    n_val = round(settings.validation_fraction * len(frames))
    return [frames[k] for k in order[n_val:]], [frames[k] for k in order[:n_val]]


def train(
    model: torch.nn.Module,
    frames: Sequence[Atoms],
    validation: Sequence[Atoms],
    batch: Callable[[Sequence[Atoms]], Batch],
    settings: StudentSettings,
    rng: np.random.Generator,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> FitHistory:
    """Fit ``model`` (normalised, float64) to ``frames`` in ``settings.dtype`` with Adam; it
    ends float64 with the parameters of the epoch of lowest validation loss. It stops after
    ``settings.patience`` epochs without a better validation loss, and raises
    :class:`StudentFitError` if no epoch after the first was better. ``batch`` makes a model's
    inputs and targets from a chunk of ``settings.batch_size`` frames."""
    if not frames:
        raise ValueError("student: no frames to fit")
    size = settings.batch_size
    model.to(getattr(torch, settings.dtype))
    batches = [batch(frames[k : k + size]) for k in range(0, len(frames), size)]
    val_batches = [batch(validation[k : k + size]) for k in range(0, len(validation), size)]
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    steps = max(1, settings.epochs * len(batches))
    gamma = (settings.final_learning_rate / settings.learning_rate) ** (1 / steps)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma)
    limit = settings.clip_grad_norm or float("inf")
    average = WeightAverage(model, settings.ema_decay) if settings.ema_decay else None
    history = FitHistory()
    best: dict[str, Any] | None = None
    best_loss = float("inf")
    started = time.perf_counter()
    for epoch in range(settings.epochs):
        total, norms = 0.0, []
        for k in rng.permutation(len(batches)):
            optimiser.zero_grad()
            value = loss(model, batches[k], settings, create_graph=True)
            value.backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), limit)))
            optimiser.step()
            scheduler.step()
            if average is not None:
                average.update(model)
            total += float(value.detach())
        history.train_loss.append(total / len(batches))
        history.grad_norm_max.append(max(norms))
        history.clipped_steps.append(sum(n > limit for n in norms))
        current = average.swap_in(model) if average is not None else None
        val = [float(loss(model, b, settings, create_graph=False).detach()) for b in val_batches]
        val_loss = float(np.mean(val)) if val else history.train_loss[-1]
        history.validation_loss.append(val_loss)
        if val_loss < best_loss:
            best_loss, history.best_epoch = val_loss, epoch
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if current is not None:
            model.load_state_dict(current)  # the raw weights go on training
        if on_epoch is not None:
            on_epoch(epoch, history.train_loss[-1], val_loss)
        if epoch % 20 == 0 or epoch == settings.epochs - 1:
            log.info(
                "student epoch %d: train %.3g, validation %.3g",
                epoch,
                history.train_loss[-1],
                val_loss,
            )
        if settings.patience is not None and epoch - history.best_epoch >= settings.patience:
            history.stopped_early = epoch < settings.epochs - 1
            log.info("student: no better validation loss since epoch %d", history.best_epoch)
            break
    history.wall_s = time.perf_counter() - started
    if history.best_epoch == 0 and len(history.validation_loss) >= EPOCHS_TO_JUDGE:
        raise StudentFitError(
            f"student fit: the validation loss was lowest at epoch 0 "
            f"({history.validation_loss[0]:.4g}) and no later epoch of "
            f"{len(history.validation_loss)} was better (last {history.validation_loss[-1]:.4g}): "
            f"the fit learnt nothing. Lower student.learning_rate (now "
            f"{settings.learning_rate:g}), or look for frames the teacher labelled "
            f"inconsistently (student.max_teacher_spread_eV_A, student.label_weight)"
        )
    model.to(torch.float64)
    if best is not None:
        model.load_state_dict(best)  # copied into the float64 parameters
    return history


class WeightAverage:
    """An exponential moving average of a model's parameters, updated after every step
    (``decay`` per step; MACE's habit): validating and keeping the average smooths the noise
    of small-batch steps out of the kept model."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.values = {k: v.detach().clone() for k, v in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, value in model.named_parameters():
            self.values[name].mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def swap_in(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Put the average into ``model``; returns the state it had (to load back)."""
        current = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for name, value in model.named_parameters():
            value.copy_(self.values[name])
        return current


def settings_record(settings: StudentSettings) -> dict[str, Any]:
    """The settings as stored with a student (JSON-able)."""
    record = asdict(settings)
    record["hidden"] = list(settings.hidden)
    return record
