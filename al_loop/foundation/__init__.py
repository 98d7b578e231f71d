"""Foundation models built offline: a MACE pre-trained on a source's labels (a universal
potential whose weights ship in its wheel, or EMT) across a measured pressure range."""

from al_loop.foundation.build import (
    FOUNDATION_SETTINGS,
    FoundationRecipe,
    FoundationReport,
    build_foundation,
    replay_file,
)

__all__ = [
    "FOUNDATION_SETTINGS",
    "FoundationRecipe",
    "FoundationReport",
    "build_foundation",
    "replay_file",
]
