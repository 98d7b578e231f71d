"""Committee-driven MD with ASE at the campaign's (T, P): the pool that selection draws from.

Each trajectory starts from a labelled structure, is compressed to the target pressure (a few
isotropic rescalings guided by the driver's pressure and a bulk-modulus estimate that grows
with pressure), then runs NVT (Langevin), NPT (Berendsen) or ``heat`` (NPT with the thermostat
ramped from T to ``heat_factor`` x T, through melting). Pressures up to 500 GPa shrink volumes by
half or more, so the time step scales with the interatomic distance ((V/V0)^(1/3)) and the
barostat's compressibility with 1/B(P). A trajectory stops as soon as the committee's force
spread passes ``max_spread`` or anything turns non-finite: the potential has left its domain.

The dynamics can be driven by one member (``driver``) while the whole committee is evaluated
only on the recorded frames, as DP-GEN does with LAMMPS (``benchmarks/training_bench.py``
measures both drivers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixCom
from ase.md.langevin import Langevin
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

from calculators.models.committee import SPREAD_KEYS

log = logging.getLogger(__name__)

#: Keys every recorded frame carries in ``atoms.info`` (units in the names).
FRAME_KEYS = (
    "trajectory",
    "phase",
    "ensemble",
    "step",
    "target_T_K",
    "target_P_GPa",
    "T_K",
    "P_GPa",
    "volume_A3_per_atom",
    "force_spread",
    "energy_spread",
    "stress_spread",
    "stop_reason",
)


@dataclass(frozen=True)
class MDSettings:
    steps: int = 1000
    timestep_fs: float = 1.0
    frame_interval: int = 10
    max_spread_eV_A: float = 1.0
    heat_factor: float = 2.0
    compression_steps: int = 8


def bulk_modulus_GPa(pressure_GPa: float) -> float:
    """A rough metallic bulk modulus at ``pressure_GPa`` (B0 ~ 150 GPa, B' ~ 4.5): only sets
    how fast the compression and the barostat move, not where they end up."""
    return 150.0 + 4.5 * pressure_GPa


def pressure_GPa(atoms: Atoms, include_kinetic: bool = False) -> float:
    stress = atoms.get_stress(include_ideal_gas=include_kinetic)
    return float(-stress[:3].mean() / units.GPa)


def _frame(atoms: Atoms, info: dict[str, Any], committee: Any | None) -> Atoms:
    """A bare copy of ``atoms`` with ``info`` and the committee's spreads on it (NaN when
    ``committee`` is None: nothing could be computed), and the committee's mean energy, forces
    and stress as its calculator's results."""
    frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.info["stop_reason"] = ""
    frame.info.update(info)
    frame.info["volume_A3_per_atom"] = atoms.get_volume() / len(atoms)
    results: dict[str, Any] = {}
    if committee is not None:
        snapshot = frame.copy()  # the committee's cached results are reused when it drives
        snapshot.calc = committee
        try:
            snapshot.get_forces()
            results = committee.results
        except (ValueError, FloatingPointError, RuntimeError) as exc:  # stops the trajectory
            frame.info["committee_error"] = f"committee failed: {exc}"
    for key in SPREAD_KEYS:
        frame.info[key] = float(results.get(key, np.nan))
    if "forces" in results:  # the committee's mean: the teacher's label of the frame
        frame.calc = SinglePointCalculator(
            frame, **{k: results[k] for k in ("energy", "forces", "stress") if k in results}
        )
    return frame


def _stop(frame: Atoms, reason: str) -> None:
    """Mark the frame that ended its trajectory; it counts as failed (its force spread becomes
    infinite, the spread the committee gave is kept as ``force_spread_computed``)."""
    frame.info["stop_reason"] = reason
    frame.info["force_spread_computed"] = frame.info["force_spread"]
    frame.info["force_spread"] = float("inf")


def _driver_problem(atoms: Atoms) -> str:
    """Compute the driver on ``atoms``: "" when energy, forces and positions are finite, else
    what went wrong."""
    try:
        atoms.get_stress()
    except (ValueError, FloatingPointError, RuntimeError) as exc:
        return f"driver failed: {exc}"
    results = atoms.calc.results
    finite = (
        np.isfinite(results["energy"])
        and np.isfinite(results["forces"]).all()
        and np.isfinite(atoms.positions).all()
    )
    return "" if finite else "non-finite energy, forces or positions"


class UnphysicalPressure(RuntimeError):
    """The driver's pressure fell while the cell was compressed: outside its domain."""


def compress(
    atoms: Atoms, target_GPa: float, steps: int, tolerance_GPa: float = 1.0
) -> Iterator[Atoms]:
    """Rescale ``atoms`` isotropically toward ``target_GPa``; yields after every rescaling.

    Raises :class:`UnphysicalPressure` when a compression lowers the predicted pressure."""
    current = pressure_GPa(atoms)
    for _ in range(steps):
        error = target_GPa - current
        if abs(error) <= max(tolerance_GPa, 0.02 * target_GPa):
            return
        # dlnV = -dP / B, limited to 15 % per step so a bad prediction cannot collapse the cell
        dlnv = float(np.clip(-error / bulk_modulus_GPa(max(current, 0.0)), -0.15, 0.15))
        atoms.set_cell(atoms.cell * np.exp(dlnv / 3), scale_atoms=True)
        previous, current = current, pressure_GPa(atoms)
        yield atoms
        if (current - previous) * dlnv > 0:
            raise UnphysicalPressure(
                f"pressure went from {previous:.1f} to {current:.1f} GPa when the volume "
                f"changed by {100 * (np.exp(dlnv) - 1):+.1f} %"
            )


#: The MD stops as soon as its cell leaves these bounds on its volume (x the volume at the
#: start of MD) or a position is not finite: a blown-up cell (a committee's non-finite stress
#: under the barostat) made each step slower, 3.7 min for the last 10 steps of a demo run.
MD_VOLUME_BOUNDS = (0.3, 3.0)


class ExplodedCell(RuntimeError):
    """The MD cell left :data:`MD_VOLUME_BOUNDS` or a position became non-finite."""


def run_trajectory(
    start: Atoms,
    calc: Any,
    ensemble: str,
    temperature_K: float,
    pressure_GPa_: float,
    settings: MDSettings,
    trajectory: str,
    seed: int,
    driver: Any | None = None,
) -> list[Atoms]:
    """One trajectory; returns its recorded frames (compression included), the last one being
    the frame that stopped it early, if any. ``calc`` gives the spreads of recorded frames;
    ``driver`` (default ``calc``) the forces and stress of the dynamics."""
    atoms = start.copy()
    atoms.calc = driver if driver is not None else calc
    frames: list[Atoms] = []
    base = {
        "trajectory": trajectory,
        "ensemble": ensemble,
        "target_T_K": float(temperature_K),
        "target_P_GPa": float(pressure_GPa_),
    }

    def record(phase: str, step: int) -> bool:
        """Record a frame; False when the trajectory must stop."""
        problem = _driver_problem(atoms)
        ok = not problem
        kinetic = phase == "md"
        info = {
            **base,
            "phase": phase,
            "step": step,
            "T_K": float(atoms.get_temperature()) if kinetic else 0.0,
            "P_GPa": pressure_GPa(atoms, include_kinetic=kinetic) if ok else float("nan"),
        }
        frames.append(_frame(atoms, info, calc if ok else None))
        spread = frames[-1].info["force_spread"]
        problem = problem or frames[-1].info.pop("committee_error", "")
        if problem or not np.isfinite(spread):
            _stop(frames[-1], problem or "non-finite spread")
        elif spread > settings.max_spread_eV_A:
            frames[-1].info["stop_reason"] = f"force spread above {settings.max_spread_eV_A}"
        if frames[-1].info["stop_reason"]:
            log.info(
                "%s stopped at %s step %d: force spread %.3g eV/Å", trajectory, phase, step, spread
            )
            return False
        return True

    volume0 = atoms.get_volume()
    if not record("compress", 0):
        return frames
    steps = compress(atoms, pressure_GPa_, settings.compression_steps)
    try:
        for step, _ in enumerate(steps, 1):
            if not record("compress", step):
                return frames
    except UnphysicalPressure as exc:
        log.info("%s stopped while compressing: %s", trajectory, exc)
        _stop(frames[-1], f"unphysical compression: {exc}")
        return frames
    except (ValueError, FloatingPointError, RuntimeError) as exc:  # the driver failed
        log.info("%s stopped while compressing: %s", trajectory, exc)
        _stop(frames[-1], f"compression failed: {exc}")
        return frames
    scale = min(1.0, (atoms.get_volume() / volume0) ** (1 / 3))
    dt = settings.timestep_fs * scale * units.fs
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    if ensemble == "nvt":
        atoms.set_constraint(FixCom())  # ASE's advice instead of Langevin's fixcm
        dyn: Any = Langevin(
            atoms, dt, temperature_K=temperature_K, friction=0.01 / units.fs, fixcm=False, rng=rng
        )
    else:
        dyn = NPTBerendsen(
            atoms,
            dt,
            temperature_K=temperature_K,
            pressure_au=pressure_GPa_ * units.GPa,
            taut=100 * units.fs,
            taup=500 * units.fs,
            compressibility_au=1.0 / (bulk_modulus_GPa(pressure_GPa_) * units.GPa),
        )
    md_volume = atoms.get_volume()

    def guard() -> None:  # every step: an exploding cell makes each later step slower
        ratio = atoms.get_volume() / md_volume
        if not (
            np.isfinite(atoms.positions).all() and MD_VOLUME_BOUNDS[0] < ratio < MD_VOLUME_BOUNDS[1]
        ):
            raise ExplodedCell(f"the cell went to {ratio:.3g}x its volume at the start of MD")

    dyn.attach(guard, interval=1)
    stride = settings.frame_interval
    for done in range(stride, settings.steps + 1, stride):
        if ensemble == "heat":
            ramp = 1 + (settings.heat_factor - 1) * done / settings.steps
            dyn.set_temperature(temperature_K=temperature_K * ramp)
            base["target_T_K"] = float(temperature_K * ramp)
        try:
            dyn.run(stride)
        except (ValueError, FloatingPointError, RuntimeError) as exc:  # an exploded cell
            log.info("%s stopped at step %d: %s", trajectory, done, exc)
            failed = {**base, "phase": "md", "step": done, "T_K": np.nan, "P_GPa": np.nan}
            frames.append(_frame(atoms, failed, None))
            _stop(frames[-1], f"MD failed: {exc}")
            return frames
        if not record("md", done):
            break
        if frames[-1].info["T_K"] > 5 * base["target_T_K"] + 1000:  # the dynamics blew up
            log.info("%s stopped at step %d: T = %.0f K", trajectory, done, frames[-1].info["T_K"])
            _stop(frames[-1], f"temperature ran away to {frames[-1].info['T_K']:.0f} K")
            break
    return frames


def explore(
    starts: Sequence[Atoms],
    calc: Any,
    conditions: Sequence[tuple[str, float, float]],
    settings: MDSettings,
    seed: int,
    on_trajectory: Callable[[list[Atoms]], None] | None = None,
    driver: Any | None = None,
) -> list[Atoms]:
    """One trajectory per (ensemble, T, P) of ``conditions``, each from ``starts`` in turn
    (cycled); returns every recorded frame, with :data:`FRAME_KEYS` in ``info``.
    ``on_trajectory`` is called with each finished trajectory's frames; ``driver``: see
    :func:`run_trajectory`."""
    if not starts:
        raise ValueError("exploration needs at least one starting structure")
    frames: list[Atoms] = []
    for index, (ensemble, temperature, pressure) in enumerate(conditions):
        start = starts[index % len(starts)]
        name = f"{index:03d}-{ensemble}-{temperature:g}K-{pressure:g}GPa"
        trajectory = run_trajectory(
            start, calc, ensemble, temperature, pressure, settings, name, seed + index, driver
        )
        if on_trajectory:
            on_trajectory(trajectory)
        frames += trajectory
    return frames


def frame_table(frames: Sequence[Atoms]) -> dict[str, np.ndarray]:
    """The frames' recorded quantities as columns."""
    return {key: np.array([f.info[key] for f in frames]) for key in FRAME_KEYS}
