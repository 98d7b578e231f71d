"""Which oracle codes exist, their presets, and how to build one from a campaign's settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from calculators.oracles.base import Oracle
from calculators.oracles.chgnet import ChgnetOracle
from calculators.oracles.emt import EMTOracle
from calculators.oracles.espresso import EspressoOracle
from calculators.oracles.settings import OracleSettings, merge_settings
from calculators.oracles.sevennet import SevennetOracle
from calculators.oracles.vasp import VaspOracle
from calculators.yaml_files import load_settings_file

#: Oracle classes by code name. A new code is one class and one line here.
ORACLES: dict[str, type[Oracle]] = {
    oracle.code: oracle
    for oracle in (EMTOracle, EspressoOracle, VaspOracle, ChgnetOracle, SevennetOracle)
}


def presets_dir() -> Path:
    """Directory with the settings presets: ``$AL_LOOP_PRESETS`` or the repository's."""
    env = os.environ.get("AL_LOOP_PRESETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs" / "presets"


def available_oracles() -> list[str]:
    """Names of the codes that can label structures."""
    return sorted(ORACLES)


def oracle_class(code: str) -> type[Oracle]:
    """The oracle class for ``code``; ``KeyError`` names the known codes."""
    try:
        return ORACLES[code]
    except KeyError:
        known = ", ".join(available_oracles())
        raise KeyError(f"unknown oracle code {code!r}; known: {known}") from None


def preset_path(code: str, preset: str) -> Path:
    """The YAML file of a preset: a path to a file, or a name under ``presets/<code>/``."""
    candidate = Path(preset)
    if candidate.suffix in {".yaml", ".yml"}:
        return candidate
    return presets_dir() / code / f"{preset}.yaml"


def available_presets(code: str) -> list[str]:
    """Names of the presets shipped for ``code``."""
    return sorted(p.stem for p in (presets_dir() / code).glob("*.yaml"))


def preset_settings(code: str, preset: str, overrides: dict[str, Any] | None = None) -> dict:
    """The preset's YAML merged with ``overrides``, not yet validated."""
    path = preset_path(code, preset)
    if not path.is_file():
        raise FileNotFoundError(
            f"preset {preset!r} for {code!r} not found at {path}; "
            f"shipped presets: {', '.join(available_presets(code)) or 'none'}"
        )
    base = load_settings_file(path) or {}
    return merge_settings(base, overrides or {})


def resolve_settings(
    code: str, preset: str, overrides: dict[str, Any] | None = None
) -> OracleSettings:
    """The typed settings of a run: the preset merged with the overrides, validated by the
    code's ``Settings`` (pydantic's ValidationError names the key)."""
    return oracle_class(code).Settings.model_validate(preset_settings(code, preset, overrides))


def make_oracle(code: str, preset: str = "default", overrides: dict | None = None) -> Oracle:
    """Build the oracle for ``code`` with a preset and overrides (settings checked)."""
    return oracle_class(code)(resolve_settings(code, preset, overrides))
