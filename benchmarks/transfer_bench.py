"""The method's transfer-learning claim, offline: fine-tuning a pre-trained MACE needs about ten
times fewer labels than training from scratch, and adapts it to a level of theory it has not seen.

Usage::

    python benchmarks/transfer_bench.py [--task cafeni|emt] [--quick] [--jobs 2] [--out DIR]

Two tasks. ``cafeni`` (the default, issue #23), on the mission's system:

- **Foundation** (source A): the demo's, ``al-loop foundation`` from CHGNet 0.3.0 (PBE) on
  Ca-Fe-Ni at 0-24 GPa (``--foundation``, built with the demo's recipe if missing); its replay
  set is the file beside it.
- **Target** (oracle B): CHGNet's r2SCAN model, another model at another level of theory, on
  cells of the kinds a campaign meets (half MD frames at 300/1000/2000 K, a quarter prototypes,
  a quarter lightly rattled alloys; ``al_loop.foundation.structures``) at 0-20 GPa, the demo's
  range, up to 8 atoms.
- **Forgetting**: the foundation's domain is cells of the same kinds labelled by source A.

``emt`` is the cheap task of before (issue #10), kept as a baseline:

- **Foundation**: a MACE of the stand-in's architecture (``calculators.models.standin``: 16
  channels, max_L 0, r_max 5.5 Å), pre-trained on ``--foundation-cells`` EMT cells of random
  alloys of all seven EMT metals (Al Cu Ni Pd Ag Pt Au), fcc/bcc, 2-8 atoms, volumes 72-105 %
  (0 to ~100 GPa), rattled 0.02-0.15 Å (the thermal displacements of ~300-3000 K). Cached in
  ``--out`` under a name made of its settings: built once.
- **Target** ("EMT*"): EMT with changed Cu and Ni parameters (pair repulsion V0 +20 %, eta2
  -5 %, cohesive E0 -0.2 eV: another level of theory), on Cu-Ni cells compressed to 55-75 % of
  their volume (~100-400 GPa: beyond the pre-training range), rattled 0.02-0.12 Å.
- **Learning curves** (energy, force and pressure error on a fixed test set of target cells)
  for three models: from scratch (``--scratch-sizes``), plain fine-tuning and multi-head
  fine-tuning with ``--replay`` foundation cells replayed (``--ft-sizes``). Every model trains
  for about ``--steps`` optimiser steps (epochs = steps x batch / cells per epoch, within
  15-200; replayed cells count), with 10 % of its labels (at least 1) as mace's validation set,
  seed fixed.
- **Figure**: the labels fine-tuning needs to reach the scratch model's error at its largest
  training set (log-log interpolation of the fine-tuning curve), as a fraction of that set.
  Target <= 1/10 (moonshot 1/30), for each of energy, force and pressure.
- **Forgetting**: the error on the foundation's own domain (Cu-Ni cells drawn like its training
  data and labelled by plain EMT; only Cu-Ni because a fine-tuned model keeps only the elements
  it was fine-tuned on) of the foundation, of the plain fine-tuned model and of the multi-head
  one (both heads: the pre-training head is what replay keeps), at the largest fine-tuning set.

Written: ``--out``/transfer_bench.json and transfer_bench_{energy,force,pressure}.png, and the
same in docs/results/ (not for ``--quick``): ``transfer_bench`` for ``cafeni``,
``transfer_bench_emt`` for ``emt``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np
from ase import Atoms
from ase.calculators import emt
from ase.io import read, write
from bench_record import record

from al_loop.evaluation import errors
from al_loop.plots import learning_curves_comparison
from calculators.models.committee import mace_calculator
from calculators.models.mace_train import TrainSettings, train_mace
from calculators.models.standin import STANDIN_SETTINGS, emt_structures

FOUNDATION_ELEMENTS = ("Al", "Cu", "Ni", "Pd", "Ag", "Pt", "Au")
TARGET_ELEMENTS = ("Cu", "Ni")
#: The target's parameter changes: (E0 shift eV, V0 factor, eta2 factor) per element.
TARGET_CHANGES = {"Cu": (-0.2, 1.20, 0.95), "Ni": (-0.2, 1.20, 0.95)}
QUANTITIES = (
    ("energy_rmse_meV_atom", "energy RMSE (meV/atom)"),
    ("force_rmse_eV_A", "force RMSE (eV/Å)"),
    ("pressure_rmse_GPa", "pressure RMSE (GPa)"),
)


class ChangedEMT(emt.EMT):
    """EMT with some elements' parameters changed (:data:`TARGET_CHANGES`)."""

    def initialize(self, atoms: Atoms) -> None:
        saved = dict(emt.parameters)
        for symbol, (de0, v0, eta2) in TARGET_CHANGES.items():
            p = list(saved[symbol])
            p[0], p[2], p[3] = p[0] + de0, p[2] * v0, p[3] * eta2
            emt.parameters[symbol] = tuple(p)
        try:
            super().initialize(atoms)
        finally:
            emt.parameters.update(saved)


def cells(
    elements: Sequence[str],
    n: int,
    volumes: tuple[float, float],
    rattle: tuple[float, float],
    seed: int,
    calc_class: type[emt.EMT] = emt.EMT,
) -> list[Atoms]:
    """``n`` labelled random alloys (``calculators.models.standin.emt_structures``)."""
    return emt_structures(elements, n, seed, volumes, rattle, calc_class)


def as_reference(structures: Sequence[Atoms]) -> list[Atoms]:
    """Labelled atoms (``REF_`` keys) as atoms with a results calculator, for evaluation."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for a in structures:
        b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=True)
        b.calc = SinglePointCalculator(
            b,
            energy=a.info["REF_energy"],
            forces=a.arrays["REF_forces"],
            stress=a.info["REF_stress"],
        )
        out.append(b)
    return out


def epochs_for(n_train: int, settings: TrainSettings, steps: int) -> int:
    batch = min(settings.batch_size, n_train)
    return int(min(200, max(15, math.ceil(steps * batch / n_train))))


def fit(
    labels: list[Atoms],
    workdir: Path,
    settings: TrainSettings,
    steps: int,
    seed: int,
    foundation: Path | None = None,
    replay: Path | None = None,
) -> tuple[Path, float]:
    """One model on ``labels`` (10 %, at least 1, validate it); returns (file, wall s). With
    ``replay``, an epoch also passes over the replayed cells: epochs count them."""
    n_valid = max(1, len(labels) // 10)
    train, valid = labels[n_valid:], labels[:n_valid]
    per_epoch = len(train) + (settings.replay_samples if replay is not None else 0)
    settings = replace(settings, max_epochs=epochs_for(per_epoch, settings, steps))
    started = time.perf_counter()
    model = train_mace(train, valid, workdir, seed, settings, foundation, replay, threads=1)
    return model.path, time.perf_counter() - started


def figures(model: Path, test: list[Atoms], head: str | None = None) -> dict[str, float]:
    result = errors(mace_calculator([model], "cpu", "float64", head=head), test)
    return {key: round(float(result[key]), 4) for key, _ in QUANTITIES}


def labels_to_reach(curve: list[dict[str, Any]], key: str, target: float) -> float | None:
    """Labels at which ``curve`` first reaches ``target`` (log-log interpolation between the
    points around it); None if it never does."""
    for before, after in zip([None, *curve], curve, strict=False):
        if after[key] <= target:
            if before is None:
                return float(after["labels"])
            x0, x1 = math.log(before["labels"]), math.log(after["labels"])
            y0, y1 = math.log(before[key]), math.log(after[key])
            return float(math.exp(x0 + (math.log(target) - y0) * (x1 - x0) / (y1 - y0)))
    return None


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--task", choices=("cafeni", "emt"), default="cafeni")
    add("--foundation", type=Path, default=DEMO_FOUNDATION, help="cafeni: source A's foundation")
    add("--quick", action="store_true", help="a small smoke run (a few minutes)")
    add("--out", type=Path, default=Path("benchmarks/out"))
    add("--seed", type=int, default=0)
    add("--jobs", type=int, default=2, help="models trained at a time (2)")
    add("--foundation-cells", type=int, default=800)
    add("--foundation-epochs", type=int, default=20)
    add("--scratch-sizes", default="20,40,80,160,320")
    add("--ft-sizes", default="5,10,20,40,80")
    add("--replay", type=int, default=100, help="foundation cells replayed (100)")
    add("--test", type=int, default=80, help="target test cells (80)")
    add("--steps", type=int, default=300, help="optimiser steps per model, about (300)")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.foundation_cells, opts.foundation_epochs = 60, 3
        opts.scratch_sizes, opts.ft_sizes, opts.replay, opts.test, opts.steps = (
            "10,20", "5,10", 20, 10, 20,
        )  # fmt: skip
    return opts


def foundation_model(opts: argparse.Namespace, settings: TrainSettings) -> tuple[Path, Path]:
    """The cached foundation and its training set (built if missing)."""
    key = hashlib.sha256(
        json.dumps(
            [opts.foundation_cells, opts.foundation_epochs, opts.seed, settings.to_document()]
        ).encode()
    ).hexdigest()[:12]
    model = opts.out / f"transfer-foundation-{key}.model"
    data = model.with_suffix(".xyz")
    if model.is_file() and data.is_file():
        print(f"foundation: cached {model}", flush=True)
        return model, data
    started = time.perf_counter()
    structures = cells(FOUNDATION_ELEMENTS, opts.foundation_cells, (0.72, 1.05), (0.02, 0.15), 1)
    n_valid = max(1, len(structures) // 20)
    with tempfile.TemporaryDirectory(prefix="transfer-foundation-") as tmp:
        trained = train_mace(
            structures[n_valid:],
            structures[:n_valid],
            Path(tmp),
            opts.seed,
            replace(settings, max_epochs=opts.foundation_epochs),
            threads=os.cpu_count(),
        )
        opts.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trained.path, model)
    write(data, structures, format="extxyz")
    print(f"foundation: built in {time.perf_counter() - started:.0f} s: {model}", flush=True)
    return model, data


def emt_task(
    opts: argparse.Namespace,
) -> tuple[Path, Path, list[Atoms], list[Atoms], list[Atoms], TrainSettings]:
    """(foundation, its training set, target test, target pool, domain test, architecture)."""
    foundation_settings = replace(STANDIN_SETTINGS, batch_size=10)
    foundation, foundation_data = foundation_model(opts, foundation_settings)
    target = cells(TARGET_ELEMENTS, 400, (0.55, 0.75), (0.02, 0.12), 2, ChangedEMT)
    test, pool = as_reference(target[: opts.test]), target[opts.test :]
    # the foundation's domain restricted to the target's elements: a fine-tuned model keeps
    # only the elements it was fine-tuned on (mace's foundation_filter_elements)
    domain_test = as_reference(cells(TARGET_ELEMENTS, opts.test, (0.72, 1.05), (0.02, 0.15), 3))
    return foundation, foundation_data, test, pool, domain_test, foundation_settings


#: The cafeni task: the demo's foundation, its source and the target oracle (preset names).
DEMO_FOUNDATION = Path("configs/al-loop-runs/foundation-cafeni-chgnet.model")
CAFENI = ("Ca", "Fe", "Ni")
SOURCE_A, TARGET_B = ("chgnet", "pbe"), ("chgnet", "r2scan")
CAMPAIGN_KINDS = (("md", 0.5), ("prototype", 0.25), ("alloy", 0.25))


def labelled_cells(oracle: tuple[str, str], n: int, seed: int) -> list[Atoms]:
    """``n`` Ca-Fe-Ni cells of a campaign's kinds at 0-20 GPa, labelled by ``oracle`` (mace's
    ``REF_`` keys)."""
    from al_loop.foundation.source import Source
    from al_loop.foundation.structures import Generator, generate
    from al_loop.foundation.trust import measure_trust
    from calculators.models.mace_train import labelled_atoms

    source = Source.make(*oracle, CAFENI)
    trust = measure_trust(source, CAFENI, progress=lambda line: None)
    gen = Generator(CAFENI, 20.0, n, 8, (300.0, 1000.0, 2000.0), seed, CAMPAIGN_KINDS)
    out = []
    for _, _, atoms in generate(gen, source, trust):
        done, result = source.label(atoms)
        if result.status == "ok":
            out.append(
                labelled_atoms(
                    done, done.get_potential_energy(), done.get_forces(), done.get_stress()
                )
            )
    return out


def cafeni_task(
    opts: argparse.Namespace,
) -> tuple[Path, Path, list[Atoms], list[Atoms], list[Atoms], TrainSettings]:
    """(foundation, its training set, target test, target pool, domain test, architecture)."""
    from al_loop.foundation import FOUNDATION_SETTINGS, FoundationRecipe, build_foundation
    from al_loop.foundation.build import replay_file

    foundation = opts.foundation
    if not (foundation.is_file() and replay_file(foundation).is_file()):
        if foundation != DEMO_FOUNDATION:
            raise SystemExit(f"--foundation {foundation}: no such model with its replay set")
        print(f"foundation: building {foundation} (the demo's recipe)", flush=True)
        recipe = FoundationRecipe(
            CAFENI,
            *SOURCE_A,
            pressure_max_GPa=25.0,
            n_structures=400,
            settings=replace(FOUNDATION_SETTINGS, max_epochs=60),
        )
        build_foundation(recipe, foundation, progress=print)
    started = time.perf_counter()
    target = labelled_cells(TARGET_B, 400 if not opts.quick else 40, seed=2)
    test, pool = as_reference(target[: opts.test]), target[opts.test :]
    domain_test = as_reference(labelled_cells(SOURCE_A, opts.test, seed=3))
    print(
        f"labels: {len(target)} target, {len(domain_test)} source in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return foundation, replay_file(foundation), test, pool, domain_test, FOUNDATION_SETTINGS


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    started = time.perf_counter()
    task = cafeni_task if opts.task == "cafeni" else emt_task
    foundation, foundation_data, test, pool, domain_test, foundation_settings = task(opts)
    pt = read(foundation_data, f":{opts.replay}")
    scratch_sizes = [int(x) for x in opts.scratch_sizes.split(",")]
    ft_sizes = [int(x) for x in opts.ft_sizes.split(",")]
    if max(scratch_sizes + ft_sizes) > len(pool):
        raise SystemExit(f"at most {len(pool)} labels in the target pool")
    tmp = Path(tempfile.mkdtemp(prefix="transfer-bench-"))
    replay_file = tmp / "replay.xyz"
    write(replay_file, pt, format="extxyz")
    # the fine-tuning settings al-loop's committee uses (TrainSettings' defaults), on the
    # foundation's architecture; from scratch: the same, on the same architecture
    tuned = replace(TrainSettings(), batch_size=5, replay_samples=opts.replay)
    scratch = replace(
        tuned,
        num_channels=foundation_settings.num_channels,
        max_L=foundation_settings.max_L,
        r_max_A=foundation_settings.r_max_A,
    )
    jobs = []
    for n in scratch_sizes:
        jobs.append(("scratch", n, scratch, None, None))
    for n in ft_sizes:
        jobs.append(("fine-tuned", n, tuned, foundation, None))
        jobs.append(("multi-head", n, tuned, foundation, replay_file))
    curves: dict[str, list[dict[str, Any]]] = {"scratch": [], "fine-tuned": [], "multi-head": []}
    models: dict[tuple[str, int], Path] = {}
    rng = np.random.default_rng(opts.seed)
    order = rng.permutation(len(pool))  # every model's labels: the first n of one order

    def run(job: tuple) -> None:
        name, n, settings, found, replay = job
        labels = [pool[i] for i in order[:n]]
        path, wall = fit(
            labels, tmp / f"{name}-{n}", settings, opts.steps, opts.seed, found, replay
        )
        models[name, n] = path
        point = {"labels": n, "train_wall_s": round(wall, 1), **figures(path, test)}
        curves[name].append(point)
        print(f"{name:10s} {point}", flush=True)

    try:
        with ThreadPoolExecutor(opts.jobs) as pool_exec:
            list(pool_exec.map(run, jobs))
        for curve in curves.values():
            curve.sort(key=lambda p: p["labels"])
        out: dict[str, Any] = {
            "settings": {k: str(v) for k, v in vars(opts).items() if k not in ("out",)},
            "task": (
                {"source": SOURCE_A, "target": TARGET_B, "foundation": str(foundation)}
                if opts.task == "cafeni"
                else {"target_changes": TARGET_CHANGES}
            ),
            "curves": curves,
            "foundation_on_target": figures(foundation, test),
        }
        largest = curves["scratch"][-1]
        out["ratio"] = {}
        for key, label in QUANTITIES:
            entry = {"scratch_labels": largest["labels"], "scratch_error": largest[key]}
            for name in ("fine-tuned", "multi-head"):
                need = labels_to_reach(curves[name], key, largest[key])
                entry[f"{name}_labels"] = None if need is None else round(need, 1)
                entry[f"{name}_fraction"] = (
                    None if need is None else round(need / largest["labels"], 4)
                )
            out["ratio"][key] = entry
            print(f"{label}: {entry}", flush=True)
        n_max = max(ft_sizes)
        out["forgetting"] = {
            "foundation": figures(foundation, domain_test),
            "fine-tuned": figures(models["fine-tuned", n_max], domain_test),
            "multi-head (pre-training head)": figures(
                models["multi-head", n_max], domain_test, head="pt_head"
            ),
            "multi-head (fine-tuned head)": figures(models["multi-head", n_max], domain_test),
            "labels": n_max,
        }
        print(f"forgetting (foundation domain): {out['forgetting']}", flush=True)
        out["wall_s"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "transfer_bench.json").write_text(json.dumps(out, indent=1))
    for key, label in QUANTITIES:
        learning_curves_comparison(
            {n: ([p["labels"] for p in c], [p[key] for p in c]) for n, c in curves.items()},
            opts.out / f"transfer_bench_{key.split('_')[0]}.png",
            target=largest[key],
            quantity=label,
        )
    if not opts.quick:
        name = "transfer_bench" if opts.task == "cafeni" else "transfer_bench_emt"
        record(name, out)
        for key, _ in QUANTITIES:
            png = f"transfer_bench_{key.split('_')[0]}.png"
            shutil.copyfile(
                opts.out / png, Path("docs/results") / png.replace("transfer_bench", name)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
