"""Where a source can be trusted: its equations of state, measured.

Universal potentials soften under strong compression: past some volume P(V) stops rising, or
the bulk modulus collapses. Each element is compressed in fcc, bcc and hcp from 120 % to 20 %
of its reference volume; walking down from the zero-pressure volume, a lattice's trusted range
ends at the last point before P stops rising as V falls or B = -V dP/dV drops below a quarter of
its largest value so far. The source's trusted range is the smallest over elements and lattices.
The same scans give each element's V(P), which sizes the foundation's cells.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from al_loop.evaluation import pressure_GPa
from al_loop.foundation.source import Source
from al_loop.seeds import atomic_volume_A3, prototype

log = logging.getLogger(__name__)

LATTICES = ("fcc", "bcc", "hcp")
#: Volumes of the scan, as fractions of the element's reference volume.
VOLUME_SCALES = tuple(float(s) for s in np.geomspace(1.2, 0.2, 40))
#: B may fall to this fraction of its largest value so far before the scan is untrusted.
SOFTENING = 0.25


@dataclass
class EquationOfState:
    """One lattice of one element, scanned: volumes (Å³/atom, decreasing), energies (eV/atom),
    pressures (GPa), and what the scan says."""

    element: str
    lattice: str
    volumes_A3: list[float]
    energies_eV: list[float]
    pressures_GPa: list[float]
    v0_A3: float | None  # where P crosses 0 (None: never)
    b0_GPa: float | None  # bulk modulus there
    trusted_max_GPa: float  # the highest pressure before the scan goes wrong
    trusted_min_volume_A3: float  # the volume where it is reached
    reason: str  # why it ends there

    def _trusted(self) -> tuple[np.ndarray, np.ndarray]:
        """(ln V, P) of the trusted part of the scan, in increasing pressure."""
        v, p = np.array(self.volumes_A3), np.array(self.pressures_GPa)
        good = v >= self.trusted_min_volume_A3 - 1e-9
        if self.v0_A3 is not None:
            good &= v <= self.v0_A3 * 1.25
        order = np.argsort(p[good])
        return np.log(v[good][order]), p[good][order]

    def volume_at(self, p_GPa: float) -> float:
        """Volume per atom at ``p_GPa`` within the trusted range (log-interpolated)."""
        log_v, p = self._trusted()
        return float(np.exp(np.interp(p_GPa, p, log_v)))

    def bulk_modulus_at(self, p_GPa: float) -> float:
        """B = -dP/d ln V (GPa) at ``p_GPa`` within the trusted range."""
        log_v, p = self._trusted()
        if len(p) < 2:
            return float(self.b0_GPa or 100.0)
        b = -np.diff(p) / np.diff(log_v)
        return float(np.interp(p_GPa, (p[1:] + p[:-1]) / 2, b))


def judge(
    volumes: np.ndarray, pressures: np.ndarray
) -> tuple[float | None, float | None, float, float, str]:
    """(V0, B0, trusted P max, the volume there, reason) of a scan ordered by decreasing
    volume."""
    crossing = np.nonzero((pressures[:-1] <= 0) & (pressures[1:] > 0))[0]
    if crossing.size == 0:
        if pressures[0] > 0:
            start, v0 = 0, None
        else:
            return None, None, 0.0, float(volumes[-1]), "P never rises above 0"
    else:
        start = int(crossing[0])
        lo, hi = pressures[start], pressures[start + 1]
        v0 = float(volumes[start] + (volumes[start + 1] - volumes[start]) * (-lo) / (hi - lo))
    bulk = -volumes[1:] * np.diff(pressures) / np.diff(volumes)  # between points
    best, trusted, reason = 0.0, max(float(pressures[start]), 0.0), "end of the scan"
    smallest = float(volumes[start])
    b0 = None
    for k in range(start, len(volumes) - 1):
        if pressures[k + 1] <= pressures[k]:
            reason = f"P stops rising below {volumes[k]:.2f} Å³/atom"
            break
        if b0 is None:
            b0 = float(bulk[k])
        if bulk[k] < SOFTENING * best:
            reason = f"B falls to {bulk[k]:.0f} GPa from {best:.0f} below {volumes[k]:.2f} Å³/atom"
            break
        best = max(best, float(bulk[k]))
        trusted, smallest = float(pressures[k + 1]), float(volumes[k + 1])
    return v0, b0, trusted, smallest, reason


def scan(source: Source, element: str, lattice: str) -> EquationOfState:
    """E(V) and P(V) of ``element`` in ``lattice`` by ``source``."""
    reference = atomic_volume_A3(element)
    volumes, energies, pressures = [], [], []
    for scale in VOLUME_SCALES:
        atoms = prototype(lattice, reference * scale)
        atoms.set_chemical_symbols([element] * len(atoms))
        labelled, result = source.label(atoms)
        if result.status != "ok":
            log.warning("%s %s at %.2f: %s", element, lattice, scale, result.error)
            continue
        volumes.append(atoms.get_volume() / len(atoms))
        energies.append(labelled.get_potential_energy() / len(atoms))
        pressures.append(pressure_GPa(labelled.get_stress()))
    v0, b0, trusted, smallest, reason = judge(np.array(volumes), np.array(pressures))
    return EquationOfState(
        element, lattice, volumes, energies, pressures, v0, b0, trusted, smallest, reason
    )


@dataclass
class TrustReport:
    """Every scan, the source's trusted range, and which scan limits it."""

    scans: list[EquationOfState]
    trusted_max_GPa: float
    limited_by: str

    def volume_at(self, element: str, p_GPa: float) -> float:
        """The element's volume per atom at ``p_GPa``: the mean over its lattices."""
        return float(np.mean([s.volume_at(p_GPa) for s in self.scans if s.element == element]))

    def bulk_modulus_at(self, element: str, p_GPa: float) -> float:
        """The element's bulk modulus (GPa) at ``p_GPa``: the mean over its lattices."""
        return float(
            np.mean([s.bulk_modulus_at(p_GPa) for s in self.scans if s.element == element])
        )

    def to_document(self) -> dict:
        return asdict(self)

    @classmethod
    def from_document(cls, doc: dict) -> TrustReport:
        return cls(
            [EquationOfState(**s) for s in doc["scans"]], doc["trusted_max_GPa"], doc["limited_by"]
        )


def measure_trust(
    source: Source,
    elements: Sequence[str],
    progress: Callable[[str], None] = log.info,
) -> TrustReport:
    """Scan every element in every lattice; the trusted range is the smallest."""
    scans = []
    for element in elements:
        for lattice in LATTICES:
            eos = scan(source, element, lattice)
            scans.append(eos)
            progress(
                f"  {element} {lattice}: V0 {eos.v0_A3 or float('nan'):.2f} Å³/atom, "
                f"B0 {eos.b0_GPa or float('nan'):.0f} GPa, trusted to {eos.trusted_max_GPa:.0f} "
                f"GPa ({eos.reason})"
            )
    weakest = min(scans, key=lambda s: s.trusted_max_GPa)
    return TrustReport(
        scans,
        weakest.trusted_max_GPa,
        f"{weakest.element} {weakest.lattice}: {weakest.reason}",
    )
