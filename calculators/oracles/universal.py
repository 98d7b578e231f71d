"""The common part of universal machine-learned potentials used as oracles (CHGNet, SevenNet).

A universal potential labels a structure the way a DFT code does, only in a fraction of a
second: the demo's oracle, a foundation's source, a cheap stand-in for a level of theory. Its
label's identity names the model, its head, and the SHA-256 of the weights file that computed
it (the file a package ships: a new release of the same name is a new identity).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from calculators.oracles.base import Oracle
from calculators.oracles.settings import file_sha256


class UniversalPotentialOracle(Oracle):
    """An oracle whose physics is a model file: identity = settings' physics + weights hash."""

    statuses: ClassVar[tuple[str, ...]] = ("ok", "crashed")
    #: The PyPI package that ships the model and its weights.
    package: ClassVar[str] = ""

    @abstractmethod
    def weights_file(self) -> Path:
        """The weights file the settings name (inside the package that ships it)."""

    @abstractmethod
    def package_version(self) -> str:
        """The version of :attr:`package` that computes the labels."""

    def version(self) -> str:
        return f"{self.package} {self.package_version()}"

    def weights_sha256(self) -> str:
        """SHA-256 of :meth:`weights_file`, read once per oracle."""
        if not hasattr(self, "_weights_sha"):
            path = self.weights_file()
            if not path.is_file():
                raise FileNotFoundError(
                    f"{self.code} weights {path} not found; reinstall {self.package} "
                    "(bash scripts/setup.sh)"
                )
            self._weights_sha = file_sha256(path)
        return self._weights_sha

    def physics_for(self, elements: Iterable[str]) -> dict[str, Any]:
        """The settings' physics plus the weights file's SHA-256 (one model for every
        element: the identity does not depend on the structure's elements)."""
        return {**self.settings.physics_part(), "weights_sha256": self.weights_sha256()}

    def model_description(self) -> dict[str, Any]:
        """What a foundation built from this oracle records of its source."""
        return {
            "code": self.code,
            "physics": self.physics_for(()),
            "version": self.version(),
        }
