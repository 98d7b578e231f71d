"""Reference oracles: codes that turn a structure into a label, never raising (a failure is a
status). A new code is one module here and one line in :mod:`calculators.oracles.registry`."""

from calculators.oracles.base import STATUSES, LabelResult, Oracle, settings_hash
from calculators.oracles.registry import (
    available_oracles,
    available_presets,
    make_oracle,
    oracle_class,
    resolve_settings,
)

__all__ = [
    "STATUSES",
    "LabelResult",
    "Oracle",
    "available_oracles",
    "available_presets",
    "make_oracle",
    "oracle_class",
    "resolve_settings",
    "settings_hash",
]
