"""Campaign plots: PNG files of the right size, empty data, bad input, no pyplot state left."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from al_loop import plots
from al_loop.plots import (
    calibration,
    learning_curve,
    learning_curves_comparison,
    parity,
    parity_panels,
    spread_histogram,
)
from al_loop.selection import classify, fractions, trust_window

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH, HEIGHT = plots.SIZE_PX


@pytest.fixture(autouse=True)
def no_pyplot_figures() -> Iterator[None]:
    """Every test starts and ends with no pyplot figure open."""
    plt.close("all")
    yield
    assert plt.get_fignums() == []


def check_png(path: Path) -> None:
    """``path`` is a PNG of the expected pixel size (IHDR bytes and decoded image agree)."""
    assert path.is_file()
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    assert int.from_bytes(data[16:20], "big") == WIDTH
    assert int.from_bytes(data[20:24], "big") == HEIGHT
    image = mpimg.imread(path)
    assert image.shape[:2] == (HEIGHT, WIDTH)
    # something was drawn: not a single flat colour
    assert float(np.ptp(image[..., :3])) > 0


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --- one full-data drawing per function ------------------------------------------------------


def draw_learning_curve(path: Path) -> Path:
    return learning_curve(
        [0, 1, 2, 3], [20, 45, 70, 95], {"force RMSE (eV/Å)": [0.31, 0.2, 0.14, 0.11]}, path
    )


def draw_learning_curve_energy(path: Path) -> Path:
    return learning_curve(
        [0, 1, 2, 3],
        [20, 45, 70, 95],
        {
            "force RMSE (eV/Å)": [0.31, 0.2, float("nan"), 0.11],
            "energy RMSE (meV/atom)": [12.0, 8.0, 5.5, 4.1],
            "pressure RMSE (GPa)": [2.0, None, 0.8, 0.4],
        },
        path,
    )


def draw_spread_histogram(path: Path) -> Path:
    s = np.exp(rng().normal(np.log(0.1), 1.0, 500))
    s[:5] = np.nan
    s[5] = np.inf
    s[6] = 0.0
    return spread_histogram(s, (0.05, 0.5), path, title="iteration 3")


def draw_parity(path: Path) -> Path:
    ref = rng().normal(0, 1, (20, 8, 3))
    return parity(ref, ref + rng().normal(0, 0.05, ref.shape), path)


def draw_parity_panels(path: Path) -> Path:
    e = rng().normal(0, 0.3, 30)
    f = rng().normal(0, 1, (30, 3))
    p = rng().uniform(0, 50, 30)
    return parity_panels(
        [
            ("energy", "eV/atom", e, e + 0.005),
            ("force", "eV/Å", f, f + 0.05),
            ("pressure", "GPa", p, p + 0.3),
        ],
        path,
        title="iteration 2",
    )


def draw_calibration(path: Path) -> Path:
    spread = np.exp(rng().normal(np.log(0.1), 0.8, 40))
    return calibration(spread, spread * np.exp(rng().normal(0, 0.3, 40)), 0.83, path)


def draw_comparison(path: Path) -> Path:
    return learning_curves_comparison(
        {
            "active": ([20, 45, 70, 95], [0.3, 0.18, 0.12, 0.09]),
            "random": ([20, 45, 70, 95], [0.3, 0.24, 0.2, 0.17]),
        },
        path,
        target=0.1,
    )


FULL: dict[str, Callable[[Path], Path]] = {
    "learning_curve": draw_learning_curve,
    "learning_curve_energy": draw_learning_curve_energy,
    "spread_histogram": draw_spread_histogram,
    "parity": draw_parity,
    "parity_panels": draw_parity_panels,
    "calibration": draw_calibration,
    "learning_curves_comparison": draw_comparison,
}

EMPTY: dict[str, Callable[[Path], Path]] = {
    "learning_curve": lambda p: learning_curve([], [], {"force RMSE (eV/Å)": []}, p),
    "learning_curve_energy": lambda p: learning_curve([], [], {}, p),
    "spread_histogram": lambda p: spread_histogram(np.empty(0), (0.05, 0.5), p),
    "parity": lambda p: parity(np.empty((0, 3)), np.empty((0, 3)), p),
    "parity_panels": lambda p: parity_panels([("energy", "eV/atom", [], [])], p),
    "calibration": lambda p: calibration(np.empty(0), np.empty(0), None, p),
    "learning_curves_comparison": lambda p: learning_curves_comparison({}, p),
    "learning_curves_comparison_empty_curve": lambda p: learning_curves_comparison(
        {"active": ([], [])}, p, target=0.1
    ),
}


@pytest.mark.parametrize("name", list(FULL))
def test_writes_png_of_expected_size(name: str, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / f"{name}.png"  # parents are created
    out = FULL[name](path)
    assert out == path
    check_png(out)


@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_data_draws_no_data_figure(name: str, tmp_path: Path) -> None:
    out = EMPTY[name](tmp_path / f"{name}.png")
    check_png(out)


def test_accepts_str_path_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "p.png"
    target.write_bytes(b"old")
    out = parity(np.arange(5.0), np.arange(5.0), str(target))  # type: ignore[arg-type]
    assert out == target
    check_png(out)


def test_degenerate_but_nonempty_inputs(tmp_path: Path) -> None:
    # all spreads non-finite, all parity pairs non-finite, non-positive calibration values,
    # constant parity data, and a comparison curve with only non-positive label counts
    check_png(spread_histogram(np.full(4, np.nan), (0.05, 0.5), tmp_path / "a.png"))
    check_png(parity(np.array([np.nan, 1.0]), np.array([0.0, np.inf]), tmp_path / "b.png"))
    check_png(
        calibration(np.array([0.0, 0.1, 0.2]), np.array([0.1, 0.0, 0.3]), 0.5, tmp_path / "c.png")
    )
    check_png(calibration(np.array([0.1]), np.array([0.1]), float("nan"), tmp_path / "d.png"))
    check_png(
        parity(np.ones(3), np.ones(3), tmp_path / "e.png", quantity="energy", unit="meV/atom")
    )
    check_png(learning_curves_comparison({"x": ([0], [0.2])}, tmp_path / "f.png"))


def test_mismatched_lengths_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        learning_curve([0, 1], [10], {"f": [0.1, 0.2]}, tmp_path / "a.png")
    with pytest.raises(ValueError):
        learning_curve([0, 1], [10, 20], {"f": [0.1, 0.2], "e": [1.0]}, tmp_path / "b.png")
    with pytest.raises(ValueError):
        parity(np.zeros(3), np.zeros(4), tmp_path / "c.png")
    with pytest.raises(ValueError):
        calibration(np.ones(3), np.ones(2), None, tmp_path / "d.png")
    with pytest.raises(ValueError):
        learning_curves_comparison({"a": ([1, 2], [0.1])}, tmp_path / "e.png")
    with pytest.raises(ValueError):
        spread_histogram(np.ones(3), (0.5, 0.05), tmp_path / "f.png")


def test_trust_fractions_come_from_selection() -> None:
    # one window rule: the histogram's fractions are selection.classify + selection.fractions
    assert not hasattr(plots, "trust_fractions")
    s = np.array([0.01, 0.05, 0.2, 0.5, 3.0, np.nan, np.inf, -np.inf])
    f = fractions(classify(s, 0.05, 0.5))
    # [lo, hi): 0.05 is a candidate, 0.5 failed; NaN/inf failed
    assert f == pytest.approx({"accurate": 1 / 8, "candidate": 2 / 8, "failed": 5 / 8})
    assert fractions(classify(np.empty(0), 0.05, 0.5)) == {
        "accurate": 0.0,
        "candidate": 0.0,
        "failed": 0.0,
    }


def test_spread_histogram_adaptive_window_with_lo_zero(tmp_path: Path) -> None:
    # exact zero spreads (e.g. a symmetric start frame) can move an adaptive lo to 0
    s = np.concatenate([np.zeros(5), np.geomspace(0.01, 2.0, 40), [np.nan]])
    window = trust_window(s, 0.05, 0.5, adaptive_percentile=0.0)
    assert window == (0.0, 0.5)
    check_png(spread_histogram(s, window, tmp_path / "adaptive.png"))
    with pytest.raises(ValueError, match="lo < hi"):
        spread_histogram(s, (-0.1, 0.5), tmp_path / "negative.png")


def test_thread_safe_concurrent_drawing(tmp_path: Path) -> None:
    names = ["learning_curve", "parity", "calibration", "learning_curves_comparison"]
    jobs = [(FULL[name], tmp_path / f"thread_{name}.png") for name in names]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        outs = list(pool.map(lambda job: job[0](job[1]), jobs))
    for out in outs:
        check_png(out)


def test_logs_not_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="al_loop.plots"):
        out = draw_parity(tmp_path / "p.png")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert any(str(out) in r.getMessage() for r in caplog.records)
