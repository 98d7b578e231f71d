"""A campaign's student: ``al-loop distil`` with fit settings changed from the command line,
its report recorded.

Usage (after the campaign ran, e.g. ``make demo``)::

    python benchmarks/demo_student.py configs/demo.yaml [--set epochs=300 ...] [--name NAME]
        [--allow-unconverged] [--threads 2]

``--set KEY=VALUE`` replaces a key of the campaign's ``student:`` section (values read as
YAML; checked like the file's own). The teacher's sample is reused from the database when its
settings are unchanged, so a new fit setting costs the fit only. Printed and recorded
(docs/results/<NAME>.json; default ``<campaign>_student`` with ``-`` as ``_``): the stage's
result (frames, settings, fit, the report against the teacher and the labels per pressure
bin, the LAMMPS agreement) and the stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_record import record

from al_loop.config import CampaignConfig, StudentConfig, load_campaign
from al_loop.loop import distil_campaign

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

#: The stage result's keys that name local files or ids, not figures.
LOCAL = ("file_id", "model_files", "lammps_input", "companion_files", "key", "sample_key")


def with_student(config: CampaignConfig, assignments: list[str]) -> CampaignConfig:
    """``config`` with ``KEY=VALUE`` assignments in its ``student:`` section, validated."""
    values = config.student.model_dump()
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or key not in StudentConfig.model_fields:
            raise SystemExit(f"--set {item!r}: give KEY=VALUE with KEY a student: key")
        values[key] = yaml.safe_load(text)
    return config.model_copy(update={"student": StudentConfig.model_validate(values)})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default=None)
    parser.add_argument("--allow-unconverged", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    config = with_student(load_campaign(args.config), args.set)
    started = time.perf_counter()
    result = distil_campaign(config, threads=args.threads, allow_unconverged=args.allow_unconverged)
    figures = {k: v for k, v in result.items() if k not in LOCAL}
    figures["stage_wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures["report"], indent=1, default=str))
    record(args.name or f"{config.name.replace('-', '_')}_student", figures)
    return figures


if __name__ == "__main__":
    main()
