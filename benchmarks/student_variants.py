"""What limits the student: fits of one campaign's stored teacher sample with changed settings,
side by side, measured against the teacher on the same held-out frames.

Usage (after ``al-loop distil`` stored a sample, e.g. ``make demo``)::

    python benchmarks/student_variants.py configs/demo.yaml \\
        --variant demo: --variant slow:learning_rate=0.003,final_learning_rate=0.0001 \\
        [--seeds 0,1,2] [--jobs 2] [--keep DIR] [--name student_variants]

Each ``--variant NAME:KEY=VALUE,...`` changes keys of the campaign's ``student:`` section (values
read as YAML, checked like the file's own); ``NAME:`` alone is the campaign's own settings. The
sample is the campaign's newest stored one (read, never rebuilt); its frames are filtered and
split exactly as the distil stage does (``student.max_teacher_spread_eV_A``,
``student.test_fraction``, the campaign's seed), and the training labels join the fit with
``student.label_weight`` (their DFT results, or the teacher's: ``student.label_source``), so a
variant is the stage's fit and nothing else. The fits run in
``--jobs`` processes of one torch thread each; every variant sees the same frames, and is
fitted once per ``--seeds`` seed (default: the campaign's; the split stays the campaign's), its
spread over the seeds reported. ``--keep DIR`` keeps each student's files (``DIR/<run>/``,
listed in the record): ``benchmarks/student_speed.py --students`` times them.

Printed and recorded (docs/results/<NAME>.json): per variant, the student against the teacher
on the held-out frames (energy MAE, force RMSE, pressure MAE), per pressure bin and split into
MD and crystal frames; against the held-out labels; the fit's best epoch, epochs run and wall
time; and where its equation of state holds: each element in fcc, bcc and hcp compressed from
120 % to 50 % of its reference volume, judged as ``al-loop foundation`` judges a source (P must
rise as V falls, B must not collapse), beside the teacher's. A student whose P(V) turns over at
a few GPa collapses in the phase stage's relaxations. Baseline: the first variant (ratios
against it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from ase import Atoms
from bench_record import record

from al_loop.config import CampaignConfig, StudentConfig, load_campaign

FIGURES = ("energy_mae_meV_atom", "force_rmse_eV_A", "pressure_mae_GPa")


def parse_variant(text: str, base: StudentConfig) -> tuple[str, StudentConfig]:
    """``NAME:KEY=VALUE,...`` as (name, the student section with those keys changed)."""
    name, _, body = text.partition(":")
    if not name:
        raise SystemExit(f"--variant {text!r}: give it a name (NAME:KEY=VALUE,...)")
    changes: dict[str, Any] = {}
    for item in filter(None, re.split(r",(?![^\[]*\])", body)):  # not inside [...]
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: {item!r} is not KEY=VALUE")
        changes[key.strip()] = yaml.safe_load(value)
    return name, StudentConfig.model_validate({**base.model_dump(), **changes})


def campaign_data(config: CampaignConfig) -> dict[str, Any]:
    """The stage's fit frames, test frames, training and held-out labels, from the stored
    sample (the newest), and the teacher's :func:`eos_trust`."""
    from al_loop.campaign import open_campaign
    from al_loop.committee import labelled_structures, load_committee
    from al_loop.distillation import frames_read, split, teacher_frames, usable

    with open_campaign(config, create=False) as session:
        stored = session.store.distillations(session.name, "sample")
        if not stored:
            raise SystemExit(f"campaign {config.name!r}: no stored sample; run `al-loop distil`")
        frames = frames_read(session.store.read_file(stored[0]["file_id"]))
        train_labels, held_labels = labelled_structures(session)
        teacher = load_committee(session, stored[0]["teacher_iteration"], "float64")
        teacher_eos = eos_trust(teacher, list(config.system.elements))
        labels_by_teacher = teacher_frames(teacher, train_labels) if train_labels else []
    kept = [f for f in frames if not usable(f, config.student.max_teacher_spread_eV_A)]
    fit, test = split(kept, config.student.test_fraction, config.seed)
    return {
        "fit": fit,
        "test": test,
        "labels": train_labels,
        "labels_by_teacher": labels_by_teacher,
        "held_labels": held_labels,
        "teacher_eos": teacher_eos,
    }


#: Volumes of the equation-of-state check, as fractions of each element's reference volume.
EOS_SCALES = tuple(float(x) for x in np.geomspace(1.2, 0.5, 24))


def eos_trust(calc: Any, elements: Sequence[str]) -> dict[str, Any]:
    """Per element and lattice, the highest pressure (GPa) up to which ``calc``'s P(V) holds
    (:func:`al_loop.foundation.trust.judge`), its reason, and the lowest of them all."""
    from al_loop.evaluation import pressure_GPa
    from al_loop.foundation.trust import LATTICES, judge
    from al_loop.seeds import atomic_volume_A3, prototype

    out: dict[str, Any] = {}
    for element in elements:
        for lattice in LATTICES:
            volumes, pressures = [], []
            for scale in EOS_SCALES:
                atoms = prototype(lattice, atomic_volume_A3(element) * scale)
                atoms.set_chemical_symbols([element] * len(atoms))
                atoms.calc = calc
                volumes.append(atoms.get_volume() / len(atoms))
                pressures.append(pressure_GPa(atoms.get_stress()))
            _, _, trusted, _, reason = judge(np.array(volumes), np.array(pressures))
            out[f"{element} {lattice}"] = {"trusted_GPa": round(trusted, 1), "reason": reason}
    out["lowest_GPa"] = min(v["trusted_GPa"] for v in out.values())
    return out


def kind(frame: Atoms) -> str:
    return "crystal" if str(frame.info.get("trajectory", "")).startswith("crystal") else "md"


def one_variant(
    name: str,
    student: StudentConfig,
    seed: int,
    elements: list[str],
    data: dict[str, Any],
    keep: Path | None = None,
) -> dict[str, Any]:
    """Fit one variant (one torch thread) and measure it against the teacher and the labels;
    its files are copied to ``keep`` when given (recorded as ``files``)."""
    import torch

    from al_loop.distillation import by_phase, student_settings, weighted
    from al_loop.evaluation import errors, summary
    from calculators.models.student import routes
    from calculators.models.student.training import StudentFitError

    torch.set_num_threads(1)
    settings = student_settings(student, seed, threads=1)
    source = data["labels"] if student.label_source == "dft" else data["labels_by_teacher"]
    labels = [a.copy() for a in source]
    for copy, atoms in zip(labels, source, strict=True):
        copy.calc = atoms.calc
        copy.info["weight"] = student.label_weight
    out: dict[str, Any] = {"settings": student.model_dump(mode="json")}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            files, history = routes.fit(
                weighted(data["fit"], student) + labels,
                elements,
                settings,
                Path(tmp) / f"student-{name}",
            )
        except StudentFitError as err:
            return {**out, "error": str(err), "fit_wall_s": time.perf_counter() - started}
        calc = routes.calculator(settings.route, files, elements)
        out["fit"] = {**history.to_document(), "wall_s": history.wall_s}
        out["vs_teacher"] = summary(errors(calc, data["test"]))
        for part in ("md", "crystal"):
            frames = [f for f in data["test"] if kind(f) == part]
            if frames:
                found = summary(errors(calc, frames))
                out[f"vs_teacher_{part}"] = {k: found.get(k) for k in (*FIGURES, "n")}
        out["vs_teacher_by_phase"] = by_phase(calc, data["test"])
        if data["held_labels"]:
            out["vs_labels"] = summary(errors(calc, data["held_labels"]))
        out["eos"] = eos_trust(calc, elements)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            out["files"] = [str(shutil.copy(f, keep / f.name)) for f in files]
    for key in ("train_loss", "validation_loss"):
        out["fit"][key] = [round(x, 6) for x in out["fit"][key]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("config")
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:KEY=VALUE,...")
    parser.add_argument("--seeds", help="fit seeds, comma-separated (default: the campaign's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="copy each fitted student's files here")
    parser.add_argument("--name", default="student_variants")
    opts = parser.parse_args(argv)
    config = load_campaign(opts.config)
    variants = dict(parse_variant(v, config.student) for v in opts.variant)
    started = time.perf_counter()
    data = campaign_data(config)
    elements = list(config.system.elements)
    print(
        f"sample: {len(data['fit'])} fit frames, {len(data['test'])} test frames, "
        f"{len(data['labels'])} labels (+{len(data['held_labels'])} held out)",
        flush=True,
    )
    seeds = [int(x) for x in opts.seeds.split(",")] if opts.seeds else [config.seed]
    runs = {
        (f"{name}@{seed}" if len(seeds) > 1 else name): (name, st, seed)
        for name, st in variants.items()
        for seed in seeds
    }
    results: dict[str, Any] = {}
    with concurrent.futures.ProcessPoolExecutor(opts.jobs) as pool:
        futures = {
            pool.submit(one_variant, name, st, seed, elements, data, keep_of(opts.keep, run)): run
            for run, (name, st, seed) in runs.items()
        }
        for future in concurrent.futures.as_completed(futures):
            run = futures[future]
            results[run] = {**future.result(), "seed": runs[run][2]}
            print(f"{run}: {json.dumps(headline(results[run]))}", flush=True)
    results = {run: results[run] for run in runs}
    base = next(iter(runs))
    print(f"teacher: P(V) holds to {data['teacher_eos']['lowest_GPa']} GPa (lowest lattice)")
    print(
        f"\n{'variant':<14} {'E MAE':>8} {'F RMSE':>8} {'P MAE':>7} {'EOS':>6} {'best':>5} "
        f"{'run':>5} {'fit s':>6}   ratios to {base}"
    )
    first = headline(results[base])
    for name in runs:
        line = headline(results[name])
        if "error" in line:
            print(f"{name:<14} fit failed: {line['error']}")
            continue
        e, f, p = (number(line.get(k)) for k in FIGURES)
        ratios = [number(line.get(k)) / number(first.get(k)) for k in FIGURES]
        print(
            f"{name:<14} {e:8.2f} {1000 * f:8.1f} {p:7.2f} {line['eos_GPa']:6.1f} "
            f"{line['best_epoch']:5d} "
            f"{line['epochs_run']:5d} {line['wall_s']:6.0f}   "
            + " / ".join(f"{r:.2f}" for r in ratios)
        )
    spread = seed_spread(results, runs) if len(seeds) > 1 else {}
    for name, spread_of in spread.items():
        found = ", ".join(
            f"{k} {v['mean']:.4g} ({v['min']:.4g}-{v['max']:.4g})"
            for k, v in spread_of["figures"].items()
        )
        print(f"{name} over seeds {seeds}: {found}; failed fits {spread_of['failed_fits']}")
    figures = {
        "campaign": config.name,
        "seeds": seeds,
        "seed_spread": spread,
        "frames": {k: len(v) for k, v in data.items() if k != "teacher_eos"},
        "teacher_eos": data["teacher_eos"],
        "baseline": base,
        "variants": results,
        "wall_s": time.perf_counter() - started,
    }
    print(
        "(energy meV/atom, force meV/Å, pressure GPa against the teacher on the test frames; "
        "EOS: the lowest pressure where a lattice's P(V) stops holding)"
    )
    record(opts.name, figures)
    return 0


def seed_spread(
    results: dict[str, Any], runs: dict[str, tuple[str, StudentConfig, int]]
) -> dict[str, dict[str, Any]]:
    """Per variant, each headline figure's mean, min and max over its seeds, and how many of
    its fits failed (left out of the figures)."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(v[0] for v in runs.values()):
        lines = [headline(results[r]) for r, v in runs.items() if v[0] == name]
        ok = [line for line in lines if "error" not in line]
        figures = {}
        for key in (*FIGURES, "eos_GPa") if ok else ():
            values = [number(line[key]) for line in ok]
            figures[key] = {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}
        out[name] = {"figures": figures, "failed_fits": len(lines) - len(ok)}
    return out


def keep_of(folder: Path | None, run: str) -> Path | None:
    return None if folder is None else folder / run.replace("@", "-seed")


def number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        return {"error": result["error"][:120]}
    vs = result["vs_teacher"]
    fit = result["fit"]
    return {
        **{k: vs.get(k) for k in FIGURES},
        "eos_GPa": result["eos"]["lowest_GPa"],
        "best_epoch": fit["best_epoch"],
        "epochs_run": fit["epochs_run"],
        "wall_s": round(fit["wall_s"]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
