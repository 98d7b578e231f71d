"""Where every benchmark's figures go: ``docs/results/<name>.json``, committed, so that the
figures in docs/benchmarks.md can be checked against the run that made them.

The document holds the command that produced it, the date, the machine (cores, Python, load
average at the end) and the figures the benchmark prints: small, no per-frame data.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def record(name: str, figures: dict[str, Any], argv: list[str] | None = None) -> Path:
    """Write ``docs/results/<name>.json`` and return its path."""
    args = sys.argv[1:] if argv is None else argv
    script = Path(sys.argv[0]).resolve()
    root = RESULTS.parents[1]
    script_name = (
        str(script.relative_to(root)) if script.is_relative_to(root) else f"benchmarks/{name}.py"
    )
    document = {
        "benchmark": name,
        "command": " ".join([".venv/bin/python", script_name, *args]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": round(os.getloadavg()[0], 2),
        },
        "figures": figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"figures written to {path}")
    return path


def index() -> dict[str, Any]:
    """Every recorded benchmark's command, date and load: what docs/benchmarks.md cites."""
    out = {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem == "bench_record":
            continue
        document = json.loads(path.read_text())
        machine = document.get("machine") or {}
        out[path.stem] = {
            "command": document.get("command"),
            "date": document.get("date"),
            "load_average_at_end": machine.get("load_average_at_end")
            if isinstance(machine, dict)
            else None,
        }
    return {"recorded": len(out), "results": out}


if __name__ == "__main__":  # python benchmarks/bench_record.py: the index of docs/results/
    record("bench_record", index())
