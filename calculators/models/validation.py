"""One validator that every model passes: the contract of :class:`ModelCalculator`, checked.

After TorchSim's ``validate_model_outputs``, on ASE calculators (pure ASE and numpy). For each
structure, :func:`validate_model` reports these checks, each with its measured figure and its
tolerance (:class:`Tolerances`):

- ``runs``: energy, forces and stress are computed without an exception;
- ``inputs_unchanged``: the Atoms given to the model keep their numbers, positions, cell, pbc,
  info, arrays, constraints and attached calculator (compared with a deep copy);
- ``shapes``: energy a float scalar, forces a float (n_atoms, 3) array, stress a float (6,)
  Voigt array (a 3x3 stress fails);
- ``finite``: no NaN or infinity;
- ``forces_vs_fd``: forces against central finite differences of the energy (a few atoms, 3
  directions), max abs error;
- ``stress_vs_fd``: stress against central finite differences of the energy with respect to
  strain, ``sigma_ij = (1/V) dE/d(eps_ij)`` with the positions scaled with the cell (symmetric
  strain off the diagonal), all 6 Voigt components, sign included;
- ``stress_units``: max |stress| at most 10 eV/Å^3 (1000 GPa is 6.2 eV/Å^3), and the stress is
  not the finite-difference stress times a unit factor (GPa, kbar, bar);
- ``supercell_energy``, ``supercell_forces``, ``supercell_stress``: the cell repeated (2x1x1 by
  default) has the same energy per atom, the forces tiled and the same stress;
- ``deterministic``: the first structure recomputed after all the others (calculator reset)
  gives the same energy per atom, forces and stress as the first time.

A model that does not run or has wrong shapes is not checked further on that structure.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import BaseCalculator
from ase.data import atomic_numbers, covalent_radii, reference_states

from calculators.models.interface import VOIGT_PAIRS

#: Every check's name, in the order they are run.
CHECKS = (
    "runs",
    "inputs_unchanged",
    "shapes",
    "finite",
    "forces_vs_fd",
    "stress_vs_fd",
    "stress_units",
    "supercell_energy",
    "supercell_forces",
    "supercell_stress",
    "deterministic",
)

#: Stress units a model may wrongly use, and the factor from eV/Å^3 to each.
WRONG_STRESS_UNITS = {"GPa": 1 / units.GPa, "kbar": 10 / units.GPa, "bar": 1 / units.bar}


class ModelValidationError(AssertionError):
    """A model failed :func:`validate_model`; the message lists every failed check."""


@dataclass(frozen=True)
class Tolerances:
    """Tolerances of :func:`validate_model` and the finite-difference steps they suit.

    The defaults suit float64 models: with a 1e-3 Å displacement a central difference errs by
    1e-7 to 1e-5 eV/Å (truncation, h^2/6 times the third derivative; the larger where forces
    of some eV/Å change fast) and ~1e-11 eV/Å (rounding); with a 1e-4 strain by ~1e-7 eV/Å^3.
    A cell and its supercell, or two calls, differ by rounding only (~1e-14). The bugs caught
    are far above: forces 10 % off or a flipped stress sign err by 1e-2 to 1. Use
    :meth:`float32` for single-precision models.
    """

    displacement_A: float = 1e-3  # finite-difference step of the positions, Å
    strain: float = 1e-4  # finite-difference step of the strain
    forces_fd: float = 1e-4  # eV/Å, max |F - (-dE/dx)|
    stress_fd: float = 1e-5  # eV/Å^3 (1.6 MPa), max |sigma - (1/V) dE/d eps|
    max_stress: float = 10.0  # eV/Å^3 (1602 GPa): above, the stress is not in eV/Å^3
    unit_factor_rtol: float = 0.05  # stress/FD ratio this close to a unit factor: wrong unit
    supercell_energy: float = 1e-6  # eV/atom
    supercell_forces: float = 1e-6  # eV/Å
    supercell_stress: float = 1e-7  # eV/Å^3
    deterministic: float = 1e-8  # eV/atom, eV/Å and eV/Å^3

    @classmethod
    def float32(cls) -> Tolerances:
        """Tolerances for single-precision models (rounding ~1e-7 of the total energy)."""
        return cls(
            displacement_A=1e-2,
            strain=1e-3,
            forces_fd=5e-3,
            stress_fd=5e-4,
            supercell_energy=1e-4,
            supercell_forces=1e-4,
            supercell_stress=1e-5,
            deterministic=1e-4,
        )

    @classmethod
    def stiff(cls) -> Tolerances:
        """Smaller steps for stiff float64 models (a student of compressed matter): the central
        differences' h^2 truncation is 25x below the defaults'. A demo student's stress erred
        by 1.7e-5 eV/Å^3 against its finite differences at a 1e-4 strain (max |stress| 0.14
        eV/Å^3) and failed; at 2e-5 the same check erred 25x less, as truncation does."""
        return cls(displacement_A=2e-4, strain=2e-5)


@dataclass(frozen=True)
class CheckResult:
    """One check on one structure: ``value`` is the measured figure, compared with
    ``tolerance`` (for ``shapes``, ``finite``, ``runs`` and ``inputs_unchanged`` it counts
    the problems, tolerance 0)."""

    name: str
    structure: str
    passed: bool
    value: float
    tolerance: float
    unit: str = ""
    detail: str = ""

    def __str__(self) -> str:
        verdict = "ok  " if self.passed else "FAIL"
        unit = f" {self.unit}" if self.unit else ""
        text = (
            f"{verdict} {self.structure}: {self.name} {self.value:.3g}{unit}"
            f" (tolerance {self.tolerance:.3g})"
        )
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class ValidationReport:
    """What :func:`validate_model` found: every check on every structure."""

    model: str
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    @property
    def failed_names(self) -> set[str]:
        """The names of the checks that failed on at least one structure."""
        return {c.name for c in self.failures}

    def worst(self) -> dict[str, CheckResult]:
        """Per check name, the result with the largest figure (a failure first)."""
        out: dict[str, CheckResult] = {}
        for c in self.checks:
            best = out.get(c.name)
            if best is None or (not c.passed, c.value) > (not best.passed, best.value):
                out[c.name] = c
        return out

    def summary(self) -> str:
        lines = [f"{self.model}: {'passed' if self.ok else 'FAILED'} in {self.seconds:.1f} s"]
        lines += [f"  {c}" for c in self.worst().values()]
        return "\n".join(lines)

    def raise_on_failure(self) -> ValidationReport:
        """Raise :class:`ModelValidationError` listing every failed check; else ``self``."""
        if not self.ok:
            listed = "\n".join(f"  {c}" for c in self.failures)
            raise ModelValidationError(
                f"{self.model} failed {len(self.failures)} check(s):\n{listed}"
            )
        return self


def default_structures(elements: Sequence[str], seed: int = 0) -> list[Atoms]:
    """Periodic test cells of ``elements``: a 4-atom cubic fcc cell per element and, for
    several elements, one mixing them; each compressed ~4 % in volume (a stress of several
    GPa), sheared ~2 %, rattled 0.05 Å (seeded) and shifted by -0.1 Å so that some atoms lie
    outside the cell (positions are not wrapped)."""
    if not elements:
        raise ValueError("no elements to build test structures of")
    sets = [[e] for e in elements]
    if len(set(elements)) > 1:
        sets.append(list(elements))
    deformation = np.array([[0.985, 0.02, 0.0], [0.0, 0.985, 0.01], [0.015, 0.0, 0.985]])
    out = []
    for index, symbols in enumerate(sets):
        a = float(np.mean([_fcc_lattice_constant(s) for s in symbols]))
        atoms = bulk(symbols[0], "fcc", a=a, cubic=True)
        atoms.set_chemical_symbols([symbols[i % len(symbols)] for i in range(len(atoms))])
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        rng = np.random.default_rng([seed, index])
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape) - 0.1
        out.append(atoms)
    return out


def _fcc_lattice_constant(symbol: str) -> float:
    """The element's fcc lattice constant, Å (from its covalent radius if it is not fcc)."""
    z = atomic_numbers[symbol]
    state = reference_states[z] or {}
    if state.get("symmetry") == "fcc":
        return float(state["a"])
    return float(2 * np.sqrt(2) * covalent_radii[z])


def validate_model(
    model: BaseCalculator | Callable[[], BaseCalculator],
    structures: Sequence[Atoms] | None = None,
    *,
    elements: Sequence[str] | None = None,
    tolerances: Tolerances | None = None,
    fd_atoms: int = 2,
    supercell: tuple[int, int, int] = (2, 1, 1),
    seed: int = 0,
) -> ValidationReport:
    """Check ``model`` (an ASE calculator, or a function that makes one) against the model
    contract on ``structures`` (periodic; default :func:`default_structures` of ``elements``).

    Forces are checked by finite differences on ``fd_atoms`` atoms per structure (3 directions
    each), the stress on all 6 strain components: a structure costs ``6 * fd_atoms + 14``
    evaluations (one of them on the supercell). The structures given are not modified. Call
    :meth:`ValidationReport.raise_on_failure` to turn failures into an exception.
    """
    tol = tolerances or Tolerances()
    if structures is None:
        if elements is None:
            raise ValueError("give the structures or the elements of the model")
        structures = default_structures(elements, seed)
    if not structures:
        raise ValueError("no structures to validate on")
    not_periodic = [i for i, s in enumerate(structures) if not s.pbc.all()]
    if not_periodic:
        raise ValueError(f"the model contract is for periodic cells; {not_periodic} are not")
    calc = model if isinstance(model, BaseCalculator) else model()
    start = time.perf_counter()
    report = ValidationReport(type(calc).__name__)
    labels = [f"{i}:{s.get_chemical_formula()}" for i, s in enumerate(structures)]
    outputs = []
    for label, structure in zip(labels, structures, strict=True):
        checks = _Checks(label)
        outputs.append(_check_structure(checks, calc, structure, tol, fd_atoms, supercell))
        report.checks += checks.results
    if outputs[0] is not None:
        checks = _Checks(labels[0])
        _check_deterministic(checks, calc, structures[0], outputs[0], tol)
        report.checks += checks.results
    report.seconds = time.perf_counter() - start
    return report


# --- the checks ---------------------------------------------------------------------------

Outputs = tuple[float, np.ndarray, np.ndarray]


class _Checks:
    """The results of the checks on one structure."""

    def __init__(self, structure: str) -> None:
        self.structure = structure
        self.results: list[CheckResult] = []

    def add(
        self,
        name: str,
        value: float,
        tolerance: float,
        unit: str = "",
        detail: str = "",
        passed: bool | None = None,
    ) -> None:
        """Record a check; it passes when ``value <= tolerance`` unless ``passed`` is given."""
        value = float(value)
        ok = value <= tolerance if passed is None else passed
        self.results.append(
            CheckResult(name, self.structure, bool(ok), value, tolerance, unit, detail)
        )

    def count(self, name: str, problems: list[str]) -> None:
        """Record a check that passes when it found no problems."""
        self.add(name, len(problems), 0, detail="; ".join(problems))


def _evaluate(calc: BaseCalculator, atoms: Atoms) -> tuple[Any, Any, Any]:
    """The model's raw energy, forces and stress."""
    return (
        calc.get_property("energy", atoms),
        calc.get_property("forces", atoms),
        calc.get_property("stress", atoms),
    )


def _energy(calc: BaseCalculator, atoms: Atoms) -> float:
    return float(calc.get_property("energy", atoms))


def _as_arrays(outputs: tuple[Any, Any, Any]) -> Outputs:
    energy, forces, stress = outputs
    return float(energy), np.asarray(forces, dtype=float), np.asarray(stress, dtype=float)


def _check_structure(
    checks: _Checks,
    calc: BaseCalculator,
    structure: Atoms,
    tol: Tolerances,
    fd_atoms: int,
    supercell: tuple[int, int, int],
) -> Outputs | None:
    """Run the checks of one structure; its outputs (None if it did not run or is malformed)."""
    reference, given = copy.deepcopy(structure), copy.deepcopy(structure)
    try:
        raw = _evaluate(calc, given)
    except Exception as error:
        checks.count("runs", [f"{type(error).__name__}: {error}"])
        return None
    checks.count("runs", [])
    checks.count("inputs_unchanged", _changes(reference, given))
    problems = _shape_problems(raw, len(structure))
    checks.count("shapes", problems)
    if problems:
        return None
    outputs = _as_arrays(raw)
    names = ("energy", "forces", "stress")
    checks.count(
        "finite",
        [
            f"{n} not finite"
            for n, v in zip(names, outputs, strict=True)
            if not np.isfinite(v).all()
        ],
    )
    if not checks.results[-1].passed:
        return None
    probe = _bare(structure)
    steps = (
        ("forces_vs_fd", tol.forces_fd, "eV/Å", _forces_vs_fd, (outputs[1], fd_atoms)),
        ("stress_vs_fd", tol.stress_fd, "eV/Å^3", _stress_vs_fd, (outputs[2],)),
        ("supercell_energy", tol.supercell_energy, "eV/atom", _supercell, (outputs, supercell)),
    )
    for name, tolerance, unit, step, args in steps:
        try:
            step(checks, calc, probe, tol, *args)
        except Exception as error:
            checks.add(name, np.inf, tolerance, unit, f"raised {type(error).__name__}: {error}")
    return outputs


def _bare(atoms: Atoms) -> Atoms:
    """A copy without calculator or constraints, to displace and strain."""
    probe = atoms.copy()
    probe.calc = None
    probe.set_constraint()
    return probe


def _shape_problems(outputs: tuple[Any, Any, Any], n_atoms: int) -> list[str]:
    expected = {"energy": (), "forces": (n_atoms, 3), "stress": (6,)}
    problems = []
    for (name, shape), value in zip(expected.items(), outputs, strict=True):
        array = np.asarray(value)
        if array.shape != shape:
            problems.append(f"{name} shape {array.shape}, not {shape}")
        if array.dtype.kind != "f":
            problems.append(f"{name} dtype {array.dtype}, not float")
    return problems


def _forces_vs_fd(
    checks: _Checks,
    calc: BaseCalculator,
    atoms: Atoms,
    tol: Tolerances,
    forces: np.ndarray,
    fd_atoms: int,
) -> None:
    h = tol.displacement_A
    n = min(fd_atoms, len(atoms))
    picked = np.unique(np.linspace(0, len(atoms) - 1, n).round().astype(int))
    numeric = np.zeros((len(picked), 3))
    for row, a in enumerate(picked):
        for d in range(3):
            energies = []
            for sign in (1, -1):
                probe = atoms.copy()
                probe.positions[a, d] += sign * h
                energies.append(_energy(calc, probe))
            numeric[row, d] = -(energies[0] - energies[1]) / (2 * h)
    model = forces[picked]
    error = np.abs(model - numeric).max()
    detail = f"atoms {picked.tolist()}, max |F| {np.abs(numeric).max():.3g} eV/Å"
    detail += _ratio_note(model.ravel(), numeric.ravel())
    checks.add("forces_vs_fd", error, tol.forces_fd, "eV/Å", detail)


def numerical_stress(calc: BaseCalculator, atoms: Atoms, strain: float = 1e-4) -> np.ndarray:
    """``(1/V) dE/d(eps)`` in Voigt order by central differences, positions scaled with the
    cell (symmetric strain off the diagonal): ASE's stress, tension positive, eV/Å^3."""
    volume = atoms.get_volume()
    cell = atoms.cell.array.copy()
    out = np.zeros(6)
    for k, (i, j) in enumerate(VOIGT_PAIRS):
        energies = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[i, j] += sign * strain / 2
            eps[j, i] += sign * strain / 2  # on the diagonal: eps_ii = sign * strain
            probe = atoms.copy()
            probe.set_cell(cell @ (np.eye(3) + eps), scale_atoms=True)
            energies.append(_energy(calc, probe))
        out[k] = (energies[0] - energies[1]) / (2 * strain * volume)
    return out


def _stress_vs_fd(
    checks: _Checks, calc: BaseCalculator, atoms: Atoms, tol: Tolerances, stress: np.ndarray
) -> None:
    numeric = numerical_stress(calc, atoms, tol.strain)
    error = np.abs(stress - numeric).max()
    detail = f"max |stress| {np.abs(numeric).max():.3g} eV/Å^3 by finite differences"
    checks.add(
        "stress_vs_fd", error, tol.stress_fd, "eV/Å^3", detail + _ratio_note(stress, numeric)
    )
    largest = float(np.abs(stress).max())
    notes = []
    if largest > tol.max_stress:
        notes.append(f"|stress| above {tol.max_stress:.3g} eV/Å^3: stress not in eV/Å^3?")
    unit = _wrong_unit(stress, numeric, tol.unit_factor_rtol)
    if unit is not None:
        factor = WRONG_STRESS_UNITS[unit]
        notes.append(f"stress = finite differences x {factor:.4g}: in {unit}, not eV/Å^3?")
    checks.add("stress_units", largest, tol.max_stress, "eV/Å^3", "; ".join(notes), not notes)


def _ratio(model: np.ndarray, numeric: np.ndarray) -> float | None:
    """The least-squares factor from ``numeric`` to ``model`` (None if ``numeric`` is ~0)."""
    norm = float(numeric @ numeric)
    if norm < 1e-12:
        return None
    return float(model @ numeric) / norm


def _ratio_note(model: np.ndarray, numeric: np.ndarray) -> str:
    ratio = _ratio(model, numeric)
    if ratio is None or abs(ratio - 1) < 1e-3:
        return ""
    note = f"; model / finite differences = {ratio:.4g}"
    return note + (" (sign flipped?)" if abs(ratio + 1) < 0.05 else "")


def _wrong_unit(stress: np.ndarray, numeric: np.ndarray, rtol: float) -> str | None:
    ratio = _ratio(stress, numeric)
    if ratio is None:
        return None
    for unit, factor in WRONG_STRESS_UNITS.items():
        if abs(abs(ratio) / factor - 1) < rtol:
            return unit
    return None


def _supercell(
    checks: _Checks,
    calc: BaseCalculator,
    atoms: Atoms,
    tol: Tolerances,
    outputs: Outputs,
    repeat: tuple[int, int, int],
) -> None:
    energy, forces, stress = outputs
    big = atoms.repeat(repeat)
    raw = _evaluate(calc, big)
    problems = _shape_problems(raw, len(big))
    if problems:
        raise ValueError("; ".join(problems))
    big_energy, big_forces, big_stress = _as_arrays(raw)
    size = "x".join(map(str, repeat)) + " supercell"
    tiled = np.tile(forces, (int(np.prod(repeat)), 1))
    de = abs(big_energy / len(big) - energy / len(atoms))
    checks.add("supercell_energy", de, tol.supercell_energy, "eV/atom", size)
    df = np.abs(big_forces - tiled).max()
    checks.add("supercell_forces", df, tol.supercell_forces, "eV/Å", size)
    ds = np.abs(big_stress - stress).max()
    checks.add("supercell_stress", ds, tol.supercell_stress, "eV/Å^3", size)


def _check_deterministic(
    checks: _Checks, calc: BaseCalculator, structure: Atoms, first: Outputs, tol: Tolerances
) -> None:
    """The first structure recomputed (calculator reset) after all the others gives ``first``."""
    try:
        if hasattr(calc, "reset"):
            calc.reset()
        again = _as_arrays(_evaluate(calc, copy.deepcopy(structure)))
    except Exception as error:
        checks.add("deterministic", np.inf, 0, detail=f"raised {type(error).__name__}: {error}")
        return
    diffs = {
        "energy": abs(first[0] - again[0]) / len(structure),
        "forces": np.abs(first[1] - again[1]).max(),
        "stress": np.abs(first[2] - again[2]).max(),
    }
    detail = "differences " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items())
    unit = "eV/atom, eV/Å, eV/Å^3"
    checks.add("deterministic", max(diffs.values()), tol.deterministic, unit, detail)


# --- inputs unchanged ---------------------------------------------------------------------


def _changes(before: Atoms, after: Atoms) -> list[str]:
    """What differs between two Atoms (exactly): the names of the changed parts."""
    changed = []
    if len(before) != len(after) or not np.array_equal(before.numbers, after.numbers):
        return ["numbers"]
    if not np.array_equal(before.positions, after.positions):
        moved = float(np.abs(before.positions - after.positions).max())
        changed.append(f"positions (max change {moved:.3g} Å)")
    if not np.array_equal(before.cell.array, after.cell.array):
        changed.append("cell")
    if not np.array_equal(before.pbc, after.pbc):
        changed.append("pbc")
    for key in sorted(set(before.arrays) | set(after.arrays)):
        if key in ("numbers", "positions"):
            continue
        if (
            key not in before.arrays
            or key not in after.arrays
            or not _same(before.arrays[key], after.arrays[key])
        ):
            changed.append(f"arrays[{key!r}]")
    for key in sorted(set(before.info) | set(after.info), key=str):
        if (
            key not in before.info
            or key not in after.info
            or not _same(before.info[key], after.info[key])
        ):
            changed.append(f"info[{key!r}]")
    if [c.todict() for c in before.constraints] != [c.todict() for c in after.constraints]:
        changed.append("constraints")
    changed += _calc_changes(before.calc, after.calc)
    return changed


def _calc_changes(before: Any, after: Any) -> list[str]:
    if before is None and after is None:
        return []
    if before is None or after is None or type(before) is not type(after):
        return [f"attached calculator ({type(before).__name__} -> {type(after).__name__})"]
    results_before = getattr(before, "results", {})
    results_after = getattr(after, "results", {})
    keys = set(results_before) | set(results_after)
    if any(
        k not in results_before
        or k not in results_after
        or not _same(results_before[k], results_after[k])
        for k in keys
    ):
        return ["attached calculator's results"]
    return []


def _same(a: Any, b: Any) -> bool:
    """Exact equality of info/arrays values (arrays element-wise, NaN equal to NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        if a_arr.shape != b_arr.shape or a_arr.dtype != b_arr.dtype:
            return False
        return bool(np.array_equal(a_arr, b_arr, equal_nan=a_arr.dtype.kind in "fc"))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    try:
        return bool(a == b)
    except Exception:
        return a is b
