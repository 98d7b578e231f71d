"""The source a foundation learns from: an oracle (EMT, CHGNet, SevenNet, ...) that labels
structures, optionally through *surrogates* (EMT knows neither Ca nor Fe: Al and Cu label in
their place, the names changed one for one)."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from calculators.oracles import Oracle, make_oracle
from calculators.oracles.ase_calculator import OracleCalculator
from calculators.oracles.base import LabelResult


@dataclass
class Source:
    """An oracle that labels a foundation's structures; ``surrogates`` maps an element to the
    one the oracle computes in its place."""

    oracle: Oracle
    surrogates: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="al-loop-source-")

    @classmethod
    def make(
        cls,
        code: str,
        preset: str,
        elements: Sequence[str],
        surrogates: Sequence[str] = (),
    ) -> Source:
        """The source ``code`` with ``preset``; ``surrogates`` one per element, or none."""
        if surrogates and (
            len(surrogates) != len(elements) or len(set(surrogates)) != len(surrogates)
        ):
            raise ValueError(
                f"surrogates {list(surrogates)} must name {len(elements)} different elements, "
                f"one for each of {list(elements)}"
            )
        oracle = make_oracle(code, preset)
        known = oracle.supported_elements
        computed = list(surrogates) or list(elements)
        if known is not None and not set(computed) <= known:
            missing = sorted(set(computed) - known)
            raise ValueError(
                f"{code} cannot label {missing}; it knows {sorted(known)} (name elements it "
                "knows to label in their place: --surrogates)"
            )
        return cls(oracle, dict(zip(elements, surrogates, strict=False)))

    def identity(self) -> dict[str, Any]:
        """What the labels are: code, physics (weights hash included), version, surrogates."""
        elements = sorted(self.surrogates.values()) or ["H"]
        physics = self.oracle.physics_for(elements)
        return {
            "code": self.oracle.code,
            "physics": physics,
            "physics_hash": self.oracle.physics_hash_for(elements),
            "version": self.oracle.version(),
            "surrogates": dict(sorted(self.surrogates.items())),
        }

    def result(self, atoms: Atoms) -> LabelResult:
        """The oracle's label of ``atoms`` (computed as its surrogates, if any)."""
        cell = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if self.surrogates:
            cell.set_chemical_symbols([self.surrogates[s] for s in cell.get_chemical_symbols()])
        return self.oracle.label(cell, Path(self._scratch.name))

    def label(self, atoms: Atoms) -> tuple[Atoms, LabelResult]:
        """A copy of ``atoms`` with the label's energy, forces and stress attached, and the
        label (any status: check ``status`` before using the copy's results)."""
        result = self.result(atoms)
        out = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if result.status == "ok":
            out.calc = SinglePointCalculator(
                out,
                energy=result.energy_eV,
                forces=np.asarray(result.forces_eV_A),
                stress=np.asarray(result.stress_eV_A3),
            )
        return out, result

    def calculator(self) -> Calculator:
        """The source as an ASE calculator (for molecular dynamics)."""
        return SourceCalculator(self)


class SourceCalculator(OracleCalculator):
    """The oracle calculator of a :class:`Source`: each run labelled as the source labels
    (through its surrogates), no ledger."""

    def __init__(self, source: Source) -> None:
        super().__init__(source.oracle, Path(source._scratch.name))
        self.source = source

    def run(self, cell: Atoms) -> LabelResult:
        return self.source.result(cell)
