"""Pre-train a MACE foundation from a source (a universal potential, or EMT) for a set of
elements and a pressure range, offline.

1. The source's trusted pressure range is measured (:mod:`al_loop.foundation.trust`) and the
   requested range cut to it; what is left out is recorded.
2. Structures across that range (:mod:`al_loop.foundation.structures`) are labelled by the
   source. The labels are cached by content (source identity, weights hash, generator
   settings) under the cache folder, so a foundation retrained with other settings labels
   nothing again.
3. A tiny MACE is trained on them with mace-torch's trainer; a tenth is held out and the model's
   error on it is reported per pressure bin.

Everything lands beside ``OUT``: the model, its pre-training set (``.replay.xyz``, the replay
data of multi-head fine-tuning), its recipe (``.recipe.json``: a model built by the same recipe
is kept) and its report (``.report.json``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read, write

from al_loop.evaluation import errors, pressure_GPa, summary
from al_loop.foundation.source import Source
from al_loop.foundation.structures import GENERATOR_VERSION, Generator, generate, kind_counts
from al_loop.foundation.trust import TrustReport, measure_trust
from calculators.models.mace_train import TrainSettings, labelled_atoms, train_mace
from calculators.models.standin import STANDIN_SETTINGS
from calculators.oracles.settings import digest

log = logging.getLogger(__name__)

#: The architecture and training a foundation gets on 2 cores, the test suite's stand-in's (16
#: channels, max_L 0, r_max 5.5 Å, 30 epochs: ~12 s an epoch for 324 cells of up to 16 atoms;
#: 64 channels with max_L 1 is not practical here, ENVIRONMENT.md).
FOUNDATION_SETTINGS = STANDIN_SETTINGS
#: Pressure bins (GPa) of the report.
REPORT_BINS_GPA = (0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0)
HELD_OUT_FRACTION = 0.1


def cache_dir() -> Path:
    """Where source labels are cached: ``$AL_LOOP_CACHE`` or ``~/.cache/al-loop``."""
    return Path(os.environ.get("AL_LOOP_CACHE") or Path.home() / ".cache" / "al-loop")


@dataclass(frozen=True)
class FoundationRecipe:
    """Everything a foundation is made of; a change to any of it builds a new one."""

    elements: tuple[str, ...]
    source: str = "emt"
    preset: str = "default"
    surrogates: tuple[str, ...] = ()
    pressure_max_GPa: float = 50.0
    n_structures: int = 500
    max_atoms: int = 16
    temperatures_K: tuple[float, ...] = (300.0, 1500.0, 3000.0)
    seed: int = 0
    settings: TrainSettings = field(default_factory=lambda: FOUNDATION_SETTINGS)

    def make_source(self) -> Source:
        return Source.make(self.source, self.preset, self.elements, self.surrogates)

    def label_key(self, source: dict[str, Any]) -> dict[str, Any]:
        """What the labels depend on (the training settings do not)."""
        d = asdict(self)
        d.pop("settings")
        return {**d, "source_identity": source, "generator_version": GENERATOR_VERSION}

    def document(self, source: dict[str, Any]) -> dict[str, Any]:
        return {**self.label_key(source), "settings": self.settings.to_document()}


@dataclass
class FoundationReport:
    """What a build measured: the source, its trusted range, the labels, the held-out errors."""

    recipe: dict[str, Any]
    trust: dict[str, Any]
    pressure_range_GPa: tuple[float, float]
    not_covered: list[str]
    labels: dict[str, Any]
    held_out: dict[str, Any]
    wall_time_s: dict[str, float]
    versions: dict[str, str]

    def to_document(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def recipe_file(model: Path) -> Path:
    return model.with_suffix(".recipe.json")


def replay_file(model: Path) -> Path:
    """The foundation's pre-training set, beside it (multi-head fine-tuning's replay data)."""
    return model.with_suffix(".replay.xyz")


def report_file(model: Path) -> Path:
    return model.with_suffix(".report.json")


def is_current(model: Path, recipe: FoundationRecipe) -> bool:
    """Whether ``model`` exists with its companions and was built by ``recipe`` (the source's
    identity, weights hash included, is part of it)."""
    files = (model, replay_file(model), recipe_file(model), report_file(model))
    if not all(f.is_file() for f in files):
        return False
    wanted = recipe.document(recipe.make_source().identity())
    return json.loads(recipe_file(model).read_text()) == json.loads(json.dumps(wanted))


def label_structures(
    recipe: FoundationRecipe,
    source: Source,
    trust: TrustReport,
    pressure_max_GPa: float,
    progress: Callable[[str], None],
) -> tuple[list[Atoms], dict[str, Any]]:
    """The labelled structures (cached by :meth:`FoundationRecipe.label_key`) and a summary."""
    key = digest(recipe.label_key(source.identity()))
    cached = cache_dir() / "source-labels" / f"{key[:24]}.extxyz"
    if cached.is_file():
        labelled = read(cached, index=":")
        progress(f"labels: {len(labelled)} from the cache {cached}")
        return labelled, {"n": len(labelled), "cache": str(cached), "from_cache": True}
    gen = Generator(
        recipe.elements,
        pressure_max_GPa,
        recipe.n_structures,
        recipe.max_atoms,
        recipe.temperatures_K,
        recipe.seed,
    )
    labelled, kinds, failed = [], [], 0
    start, step = time.perf_counter(), max(1, recipe.n_structures // 10)
    for k, (kind, target_p, atoms) in enumerate(generate(gen, source, trust), start=1):
        out, result = source.label(atoms)
        if result.status == "ok":
            out.info.update(kind=kind, target_pressure_GPa=target_p)
            labelled.append(out)
            kinds.append(kind)
        else:
            failed += 1
        if k % step == 0 or k == recipe.n_structures:
            progress(
                f"labels: {k}/{recipe.n_structures} ({failed} failed) in "
                f"{time.perf_counter() - start:.0f} s"
            )
    if len(labelled) < 10:
        raise RuntimeError(f"{source.oracle.code} labelled only {len(labelled)} structures")
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    write(partial, labelled, format="extxyz")
    partial.replace(cached)
    return labelled, {
        "n": len(labelled),
        "failed": failed,
        "by_kind": kind_counts(kinds),
        "cache": str(cached),
        "from_cache": False,
    }


def build_foundation(
    recipe: FoundationRecipe,
    out: Path,
    progress: Callable[[str], None] = log.info,
    threads: int | None = None,
) -> FoundationReport:
    """Build the foundation of ``recipe`` into ``out`` (see the module docstring)."""
    times: dict[str, float] = {}
    clock = time.perf_counter()
    source = recipe.make_source()
    identity = source.identity()
    progress(f"source: {identity['code']} {identity['version']} ({identity['physics']})")
    progress("measuring the source's trusted pressure range (equations of state)")
    trust = measure_trust(source, recipe.elements, progress)
    p_max = min(recipe.pressure_max_GPa, trust.trusted_max_GPa)
    not_covered = []
    if p_max < recipe.pressure_max_GPa:
        not_covered.append(
            f"{p_max:.0f}-{recipe.pressure_max_GPa:.0f} GPa: beyond the source's trusted range "
            f"({trust.limited_by})"
        )
    progress(
        f"pressure range 0-{p_max:.0f} GPa"
        + (f"; not covered: {not_covered[0]}" if not_covered else "")
    )
    times["trust_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    labelled, labels = label_structures(recipe, source, trust, p_max, progress)
    times["labels_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    rng = np.random.default_rng(recipe.seed)
    order = rng.permutation(len(labelled))
    n_held = max(1, round(HELD_OUT_FRACTION * len(labelled)))
    held = [labelled[i] for i in order[:n_held]]
    train = [labelled[i] for i in order[n_held:]]
    n_valid = max(1, len(train) // 10)
    as_mace = [_for_mace(a) for a in train]
    workdir = out.parent / f".{out.stem}-training"
    progress(
        f"training MACE ({recipe.settings.num_channels} channels, max_L {recipe.settings.max_L}) "
        f"on {len(train) - n_valid} cells, {n_valid} to validate, {len(held)} held out"
    )
    model = train_mace(
        as_mace[n_valid:],
        as_mace[:n_valid],
        workdir,
        recipe.seed,
        recipe.settings,
        threads=threads,
        progress=lambda line: progress(f"  {line}"),
    )
    times["training_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    held_out = held_out_errors(model.path, held, p_max)
    times["evaluation_s"] = time.perf_counter() - clock
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model.path, out)
    write(replay_file(out), as_mace, format="extxyz")
    report = FoundationReport(
        recipe=recipe.document(identity),
        trust=trust.to_document(),
        pressure_range_GPa=(0.0, p_max),
        not_covered=not_covered,
        labels=labels,
        held_out=held_out,
        wall_time_s=times,
        versions=_versions(identity),
    )
    report_file(out).write_text(json.dumps(report.to_document(), indent=1))
    recipe_file(out).write_text(json.dumps(report.recipe))  # last: marks the build complete
    shutil.rmtree(workdir, ignore_errors=True)
    return report


def _for_mace(atoms: Atoms) -> Atoms:
    out = labelled_atoms(
        atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    )
    out.info["kind"] = atoms.info.get("kind", "")
    return out


def held_out_errors(model: Path, held: Sequence[Atoms], p_max: float) -> dict[str, Any]:
    """The model's errors on the held-out source labels, overall and per pressure bin."""
    from calculators.models.committee import mace_calculator

    calc = mace_calculator([model], device="cpu")
    bins = [b for b in REPORT_BINS_GPA if b < p_max]
    bins += [next((b for b in REPORT_BINS_GPA if b >= p_max), p_max)]
    result = summary(errors(calc, held, bins))
    result["pressures_GPa"] = [pressure_GPa(a.get_stress()) for a in held]
    return result


def _versions(identity: dict[str, Any]) -> dict[str, str]:
    from importlib.metadata import version

    return {
        "source": str(identity["version"]),
        **{name: version(name) for name in ("mace-torch", "torch", "ase")},
    }
