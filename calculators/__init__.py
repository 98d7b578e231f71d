"""Everything that turns atoms into energy, forces and stress (ASE ``Atoms`` in, labels out)."""

from calculators.oracle import STATUSES, LabelResult, Oracle, settings_hash
from calculators.registry import (
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
