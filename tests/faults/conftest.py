"""The fault-injection suite's campaign: the demo's Cu-Ni-Al with EMT, shrunk to a minute, run
through the CLI as a user runs it, with its embedded server and real rockets. Each case kills,
cancels or corrupts something, then checks that the campaign completes with as many labels as
unique selected structures (none lost) and no oracle run done twice (docs/reliability.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def campaign_file(tmp_path: Path, standin_model: Path) -> Callable[..., Path]:
    """Write the shrunk demo campaign (changes merged per section) and return its path."""

    def write(name: str = "faults.yaml", **sections: dict[str, Any]) -> Path:
        config = yaml.safe_load((REPO / "configs" / "demo-emt.yaml").read_text())
        config["system"].update(pressures_GPa=[0, 50], temperatures_K=[600])
        config["seeds"].update(n_structures=8)
        config["committee"].update(
            n_models=2, foundation_model=str(standin_model), max_epochs=2, held_out_fraction=0.2
        )
        config["exploration"].update(steps=20, frame_interval=5)
        config["selection"].update(
            trust_lo_eV_A=1e-4,
            trust_hi_eV_A=10.0,
            max_per_iteration=3,
            max_iterations=1,
            converged_iterations=1,
        )
        config["launcher"].update(workers=1, batch_size=1)
        config["workdir"] = str(tmp_path / "run")
        for section, values in sections.items():
            if isinstance(values, dict):
                config[section].update(values)
            else:
                config[section] = values
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write
