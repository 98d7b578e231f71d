"""Reference oracles: codes that turn a structure into a label, never raising (a failure is a
status). A new code is one module here and one line in :mod:`calculators.oracles.registry`."""

from calculators.oracles.base import STATUSES, LabelResult, Oracle
from calculators.oracles.registry import (
    available_oracles,
    available_presets,
    make_oracle,
    oracle_class,
    resolve_settings,
)
from calculators.oracles.settings import OracleSettings, merge_settings

__all__ = [
    "STATUSES",
    "LabelResult",
    "Oracle",
    "OracleSettings",
    "available_oracles",
    "available_presets",
    "make_oracle",
    "merge_settings",
    "oracle_class",
    "resolve_settings",
]
