"""Where each universal potential can be trusted for Ca-Fe-Ni: the scans al-loop foundation runs.

Usage::

    python benchmarks/source_trust.py [--elements Ca,Fe,Ni]

For CHGNet 0.3.0 and r2scan, SevenNet-0 and SevenNet-MF-0 (R2SCAN head): each element in fcc,
bcc and hcp, 40 volumes from 120 % to 20 % of ASE's reference volume
(``al_loop.foundation.trust``), the trusted range per lattice with its reason, the source's
trusted range, and the lowest-enthalpy lattice every 2 GPa from 0 to 40 GPa (H = E + PV along
each trusted branch; static, ideal c/a, non-magnetic: indicative only). Written to
``docs/results/source_trust.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np
from ase.units import GPa
from bench_record import record

from al_loop.foundation.source import Source
from al_loop.foundation.trust import TrustReport, measure_trust

SOURCES = (("chgnet", "pbe"), ("chgnet", "r2scan"), ("sevennet", "pbe"), ("sevennet", "r2scan"))
GRID_GPA = np.arange(0.0, 41.0, 2.0)


def stable_lattices(report: TrustReport, element: str) -> str:
    """One letter per grid pressure: the lattice of lowest enthalpy (``-``: none trusted)."""
    enthalpy = {}
    for s in report.scans:
        if s.element != element:
            continue
        v, e, p = (np.array(x) for x in (s.volumes_A3, s.energies_eV, s.pressures_GPa))
        keep = v >= s.trusted_min_volume_A3 - 1e-9
        order = np.argsort(p[keep])
        h = (e[keep] + p[keep] * GPa * v[keep])[order]
        enthalpy[s.lattice] = np.where(
            p[keep].max() >= GRID_GPA, np.interp(GRID_GPA, p[keep][order], h), np.nan
        )
    letters = []
    for i in range(GRID_GPA.size):
        finite = {k: h[i] for k, h in enthalpy.items() if np.isfinite(h[i])}
        letters.append(min(finite, key=finite.__getitem__)[0] if finite else "-")
    return "".join(letters)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", default="Ca,Fe,Ni")
    args = parser.parse_args(argv)
    elements = args.elements.split(",")
    figures = {"grid_GPa": GRID_GPA.tolist(), "sources": {}}
    for code, preset in SOURCES:
        started = time.perf_counter()
        source = Source.make(code, preset, elements)
        report = measure_trust(source, elements, progress=lambda line: None)
        name = f"{code}-{preset}"
        figures["sources"][name] = {
            "version": source.identity()["version"],
            "trusted_max_GPa": round(report.trusted_max_GPa, 1),
            "limited_by": report.limited_by,
            "lattices": {
                f"{s.element} {s.lattice}": {
                    "v0_A3": None if s.v0_A3 is None else round(s.v0_A3, 2),
                    "b0_GPa": None if s.b0_GPa is None else round(s.b0_GPa),
                    "trusted_max_GPa": round(s.trusted_max_GPa, 1),
                    "reason": s.reason,
                }
                for s in report.scans
            },
            "stable_every_2_GPa": {el: stable_lattices(report, el) for el in elements},
            "wall_s": round(time.perf_counter() - started, 1),
        }
        row = figures["sources"][name]
        print(f"{name}: trusted to {row['trusted_max_GPa']} GPa ({row['limited_by']})")
        for el, letters in row["stable_every_2_GPa"].items():
            print(f"  {el} stable every 2 GPa from 0: {letters}")
    record("source_trust", figures, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
