"""Per-iteration PNG plots of an active-learning campaign.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas (no pyplot
state, no windows, safe to call from worker threads), writes one PNG of a fixed pixel size
(:data:`FIGSIZE_IN` x :data:`DPI`) to the given path, creating parent folders, and returns that
path. Empty input gives a labelled figure that says "no data" instead of raising.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from al_loop.selection import ACCURATE, CANDIDATE, FAILED, classify, fractions

log = logging.getLogger(__name__)

#: Figure size in inches and resolution: every PNG is 800 x 600 pixels (width x height).
FIGSIZE_IN: tuple[float, float] = (8.0, 6.0)
DPI: int = 100
#: Pixel size (width, height) of every PNG written here.
SIZE_PX: tuple[int, int] = (round(FIGSIZE_IN[0] * DPI), round(FIGSIZE_IN[1] * DPI))

FORCE_UNIT = "eV/Å"
ENERGY_UNIT = "meV/atom"

# Colours of the trust-window regions of the spread histogram.
_REGION_COLOURS = {ACCURATE: "tab:green", CANDIDATE: "tab:orange", FAILED: "tab:red"}


def _new_figure() -> tuple[Figure, Axes]:
    """A fresh Agg-backed figure with one axes and constrained layout."""
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    log.debug("wrote plot %s", path)
    return path


def _no_data(ax: Axes, message: str = "no data") -> None:
    """Mark an axes as empty with a centred message."""
    ax.text(
        0.5,
        0.5,
        message,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=16,
        color="0.4",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _as_float_array(values: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """``values`` as a flat float array (empty for None)."""
    if values is None:
        return np.empty(0)
    return np.asarray(values, dtype=float).ravel()


def _fmt(x: float) -> str:
    """Compact number for labels."""
    return f"{x:.3g}"


def learning_curve(
    iterations: Sequence[int],
    n_labels: Sequence[int],
    series: dict[str, Sequence[float | None]],
    path: Path,
    title: str = "Learning curve: held-out error",
) -> Path:
    """Errors against iteration, one panel per entry of ``series`` (name with its unit, e.g.
    ``"force RMSE (eV/Å)"``: values, None or NaN where unknown), sharing the x axis.

    The number of training labels is annotated at each point of the first panel.
    """
    it = _as_float_array(iterations)
    labels = np.asarray(n_labels).ravel()
    values = {
        name: np.array([np.nan if v is None else v for v in ys], dtype=float)
        for name, ys in series.items()
    }
    sizes = {len(it), len(labels)} | {len(v) for v in values.values()}
    if len(sizes) != 1:
        raise ValueError(
            "learning_curve: iterations, n_labels and every series must have equal lengths, got "
            + ", ".join(str(n) for n in [len(it), len(labels), *map(len, values.values())])
        )
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(1, len(values)), 1, sharex=True, squeeze=False)[:, 0]
    axes[0].set_title(title)
    axes[-1].set_xlabel("Iteration (index)")
    if it.size == 0 or not values:
        _no_data(axes[0])
        return _save(fig, path)
    for k, (ax, (name, ys)) in enumerate(zip(axes, values.items(), strict=True)):
        colour = f"C{k}"
        ax.plot(it, ys, "o-", color=colour)
        ax.set_ylabel(name, fontsize=9)
        ax.grid(alpha=0.3)
        if k == 0:
            for x, y, n in zip(it, ys, labels, strict=True):
                if math.isfinite(y):
                    ax.annotate(
                        f"{int(n)}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(0, 5),
                        ha="center",
                        fontsize=8,
                        color=colour,
                    )
            ax.text(
                0.99,
                0.95,
                "numbers: training labels",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                color="0.3",
            )
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def spread_histogram(
    spreads_eV_A: np.ndarray,
    window: tuple[float, float],
    path: Path,
    title: str = "",
) -> Path:
    """Histogram of the committee's max force spread over explored frames.

    ``window`` is the trust window ``[lo, hi)`` actually used (with an adaptive lo, the moved
    one: ``Selection.window``). Frames are classified by :func:`al_loop.selection.classify`, the
    one window rule. Log-spaced bins; NaN/inf spreads count as failed (their number is stated in
    the legend). The window is drawn as vertical lines and shaded (lo = 0, possible with an
    adaptive lo, sits at the left edge of the log axis); the fractions accurate / candidate /
    failed are given in the legend.
    """
    lo, hi = float(window[0]), float(window[1])
    if not (0 <= lo < hi):
        raise ValueError(f"spread_histogram: need 0 <= lo < hi, got window {window!r}")
    s = _as_float_array(spreads_eV_A)

    fig, ax = _new_figure()
    ax.set_title(title or "Committee force spread over explored frames")
    ax.set_xlabel(f"Max force spread ({FORCE_UNIT})")
    ax.set_ylabel("Frames (count)")
    if s.size == 0:
        _no_data(ax)
        return _save(fig, path)

    is_finite = np.isfinite(s)
    finite = s[is_finite]
    n_nonfinite = int(s.size - finite.size)
    classes = classify(s, lo, hi)  # the window rule, from al_loop.selection
    shares = fractions(classes)

    # Log-spaced bins covering the data and the window; zeros/negatives go to the first bin.
    positive = finite[finite > 0]
    low = [float(positive.min())] if positive.size else []
    low += [lo] if lo > 0 else []
    lo_edge = (min(low) if low else hi / 10) / 1.5
    hi_edge = max(float(positive.max()) if positive.size else hi, hi) * 1.5
    bins = np.geomspace(lo_edge, hi_edge, 41)
    clipped = np.clip(finite, lo_edge, hi_edge)

    finite_classes = classes[is_finite]
    names = [ACCURATE, CANDIDATE, FAILED]
    groups = [clipped[finite_classes == name] for name in names]
    labels = [
        f"accurate (< {_fmt(lo)}): {shares[ACCURATE]:.1%}",
        f"candidate [{_fmt(lo)}, {_fmt(hi)}): {shares[CANDIDATE]:.1%}",
        f"failed (≥ {_fmt(hi)} or NaN/inf): {shares[FAILED]:.1%} ({n_nonfinite} NaN/inf)",
    ]
    ax.hist(
        groups,
        bins=bins,
        stacked=True,
        color=[_REGION_COLOURS[n] for n in names],
        label=labels,
        edgecolor="white",
        linewidth=0.4,
    )
    ax.axvspan(max(lo, lo_edge), hi, color=_REGION_COLOURS[CANDIDATE], alpha=0.12, zorder=0)
    if lo > 0:
        ax.axvline(lo, color="k", linestyle="--", linewidth=1)
    ax.axvline(hi, color="k", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlim(lo_edge, hi_edge)
    if finite.size == 0:
        ax.text(
            0.5,
            0.5,
            "no finite spreads",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=14,
            color="0.4",
        )
    ax.legend(title=f"{s.size} frames", loc="upper right", fontsize=8, title_fontsize=8)
    return _save(fig, path)


def parity(
    reference: np.ndarray,
    predicted: np.ndarray,
    path: Path,
    quantity: str = "force",
    unit: str = "eV/Å",
) -> Path:
    """Predicted vs reference (flattened), with the y = x line and RMSE and MAE in the legend.

    Pairs with a non-finite value are left out (and counted in the title).
    """
    fig, ax = _new_figure()
    _draw_parity(ax, reference, predicted, quantity, unit)
    return _save(fig, path)


def parity_panels(
    panels: Sequence[tuple[str, str, np.ndarray, np.ndarray]], path: Path, title: str = ""
) -> Path:
    """Several parity plots side by side in one PNG: ``(quantity, unit, reference, predicted)``
    each (energy, force and pressure, for example)."""
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    rows = 1 if len(panels) <= 2 else 2
    cols = max(1, math.ceil(len(panels) / rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (quantity, unit, reference, predicted) in zip(axes, panels, strict=False):
        _draw_parity(ax, reference, predicted, quantity, unit, fontsize=8)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _draw_parity(
    ax: Axes,
    reference: np.ndarray,
    predicted: np.ndarray,
    quantity: str,
    unit: str,
    fontsize: float = 9,
) -> None:
    ref = _as_float_array(reference)
    pred = _as_float_array(predicted)
    if ref.size != pred.size:
        raise ValueError(f"parity: reference and predicted have {ref.size} and {pred.size} values")
    ok = np.isfinite(ref) & np.isfinite(pred)
    n_dropped = int(ref.size - ok.sum())
    ref, pred = ref[ok], pred[ok]

    ax.set_xlabel(f"Reference {quantity} ({unit})", fontsize=fontsize)
    ax.set_ylabel(f"Predicted {quantity} ({unit})", fontsize=fontsize)
    if ref.size == 0:
        ax.set_title(f"Parity: {quantity}", fontsize=fontsize + 1)
        _no_data(ax)
        return

    err = pred - ref
    rmse = float(np.sqrt(np.mean(err**2)))
    mae = float(np.mean(np.abs(err)))
    title = f"Parity: {quantity}, {ref.size} values"
    if n_dropped:
        title += f" ({n_dropped} non-finite dropped)"
    ax.set_title(
        f"{title}\nRMSE {_fmt(rmse)} {unit}, MAE {_fmt(mae)} {unit}", fontsize=fontsize + 1
    )

    lo = float(min(ref.min(), pred.min()))
    hi = float(max(ref.max(), pred.max()))
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    lims = (lo - pad, hi + pad)
    ax.scatter(
        ref,
        pred,
        s=6,
        alpha=0.5,
        linewidths=0,
        rasterized=True,
        label=f"RMSE = {_fmt(rmse)} {unit}\nMAE = {_fmt(mae)} {unit}",
    )
    ax.plot(lims, lims, "k--", linewidth=1, label="y = x")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_aspect("equal", adjustable="box")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=fontsize)


def calibration(
    spread_eV_A: np.ndarray,
    true_error_eV_A: np.ndarray,
    spearman: float | None,
    path: Path,
) -> Path:
    """Committee force spread vs the true max force error on newly labelled frames.

    Log-log when all (finite) values are positive, with the y = x line; the Spearman rank
    correlation is given in the title.
    """
    spread = _as_float_array(spread_eV_A)
    error = _as_float_array(true_error_eV_A)
    if spread.size != error.size:
        raise ValueError(
            f"calibration: spread and true error have {spread.size} and {error.size} values"
        )
    ok = np.isfinite(spread) & np.isfinite(error)
    spread, error = spread[ok], error[ok]

    rho = "n/a" if spearman is None or not math.isfinite(spearman) else f"{spearman:.2f}"
    fig, ax = _new_figure()
    ax.set_title(f"Calibration of the committee spread (Spearman rank correlation = {rho})")
    ax.set_xlabel(f"Committee max force spread ({FORCE_UNIT})")
    ax.set_ylabel(f"True max force error ({FORCE_UNIT})")
    if spread.size == 0:
        _no_data(ax)
        return _save(fig, path)

    ax.scatter(spread, error, s=14, alpha=0.7, label=f"{spread.size} labelled frames")
    log_log = bool(np.all(spread > 0) and np.all(error > 0))
    lo = float(min(spread.min(), error.min()))
    hi = float(max(spread.max(), error.max()))
    if log_log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        lims = (lo / 1.5, hi * 1.5)
    else:
        pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
        lims = (lo - pad, hi + pad)
    ax.plot(lims, lims, "k--", linewidth=1, label="y = x")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.grid(alpha=0.3, which="both" if log_log else "major")
    ax.legend(loc="upper left", fontsize=9)
    return _save(fig, path)


def learning_curves_comparison(
    curves: dict[str, tuple[Sequence[int], Sequence[float]]],
    path: Path,
    target: float | None = None,
    quantity: str = f"Force RMSE ({FORCE_UNIT})",
) -> Path:
    """Several ``(n_labels, error)`` curves on one axis (e.g. 'active' vs 'random'); the error
    is ``quantity`` (a force RMSE unless told).

    Log x axis (points with fewer than one label are left out); optional horizontal target line.
    """
    fig, ax = _new_figure()
    ax.set_title(f"Learning curves: {quantity.split(' (')[0]} vs training labels")
    ax.set_xlabel("Training labels (frames)")
    ax.set_ylabel(quantity)

    drawn = 0
    for name, (n_labels, rmse) in curves.items():
        x = _as_float_array(n_labels)
        y = _as_float_array(rmse)
        if x.size != y.size:
            raise ValueError(
                f"learning_curves_comparison: curve {name!r} has {x.size} x and {y.size} y values"
            )
        keep = (x > 0) & np.isfinite(x) & np.isfinite(y)
        if not keep.any():
            log.debug("learning_curves_comparison: curve %r has no plottable points", name)
            continue
        order = np.argsort(x[keep], kind="stable")
        ax.plot(x[keep][order], y[keep][order], "o-", label=name)
        drawn += 1

    if drawn == 0:
        _no_data(ax)
        return _save(fig, path)

    ax.set_xscale("log")
    # plain numbers (20, 50, 100) rather than 2x10^1 on the label axis
    ax.xaxis.set_major_formatter(LogFormatter())
    ax.xaxis.set_minor_formatter(LogFormatter())
    if target is not None:
        ax.axhline(target, color="k", linestyle=":", linewidth=1.2, label=f"target {_fmt(target)}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper right")
    return _save(fig, path)


# -- phase stability ------------------------------------------------------------------------------


def _panels(n: int) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` panels (at least one), the unused ones hidden."""
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    cols = min(max(n, 1), 3)
    rows = math.ceil(max(n, 1) / cols)
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig, axes


def _binary_pairs(elements: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(elements) for b in elements[i + 1 :]]


def _fraction_in_pair(formula: str, pair: tuple[str, str]) -> float | None:
    """The fraction of ``pair[1]`` in ``formula`` if it holds nothing but the pair's elements."""
    from pymatgen.core import Composition

    composition = Composition(formula)
    if not {str(e) for e in composition.elements} <= set(pair):
        return None
    return composition.get_atomic_fraction(pair[1])


def enthalpy_differences(
    rows: Sequence[dict], transitions: Sequence[dict], path: Path, formulas: Sequence[str]
) -> Path:
    """ΔH(P) of each of ``formulas`` (at most 9 panels; meV/atom), against its phase with the
    most converged pressures (the lowest at the first pressure among equals), with the
    transition pressures as dotted lines."""
    by_formula: dict[str, dict[str, dict[float, float]]] = {}
    for r in rows:
        curves = by_formula.setdefault(r["formula"], {})
        curves.setdefault(r["name"], {})[r["pressure_GPa"]] = r["enthalpy_eV_atom"]
    shown = [f for f in formulas if f in by_formula][:9]
    fig, axes = _panels(len(shown))
    if not shown:
        _no_data(axes[0], "no composition with two phases")
        return _save(fig, path)
    for ax, formula in zip(axes, shown, strict=False):
        curves = by_formula[formula]
        reference = min(curves, key=lambda n: (-len(curves[n]), curves[n][min(curves[n])], n))
        for name, curve in sorted(curves.items()):
            pressures = sorted(set(curve) & set(curves[reference]))
            y = [1000 * (curve[p] - curves[reference][p]) for p in pressures]
            ax.plot(pressures, y, "o-", markersize=3, label=name.split(":", 1)[1])
        for t in transitions:
            if t["from"].split(":")[0] == formula and t["pressure_GPa"] is not None:
                ax.axvline(t["pressure_GPa"], color="k", linestyle=":", linewidth=1)
        ax.set_title(f"{formula} (vs {reference.split(':', 1)[1]})", fontsize=9)
        ax.set_xlabel("P (GPa)", fontsize=8)
        ax.set_ylabel("ΔH (meV/atom)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def hull_at(table: Sequence[dict], pressure: float, elements: Sequence[str], path: Path) -> Path:
    """Formation enthalpy against composition at ``pressure``, one panel per pair of elements:
    every candidate, and the hull through the stable ones."""
    pairs = _binary_pairs(elements)
    fig, axes = _panels(len(pairs))
    here = [r for r in table if r["pressure_GPa"] == pressure]
    for ax, pair in zip(axes, pairs, strict=False):
        points = [(x, r) for r in here if (x := _fraction_in_pair(r["formula"], pair)) is not None]
        if not points:
            _no_data(ax, "-".join(pair))
            continue
        ax.scatter(
            [x for x, _ in points],
            [1000 * r["formation_enthalpy_eV_atom"] for _, r in points],
            s=10,
            c="tab:grey",
        )
        stable = sorted(
            (x, 1000 * r["formation_enthalpy_eV_atom"]) for x, r in points if r["stable"]
        )
        ax.plot([x for x, _ in stable], [y for _, y in stable], "o-", color="tab:blue")
        for x, r in points:
            if r["stable"] and 0 < x < 1:
                ax.annotate(r["name"], (x, 1000 * r["formation_enthalpy_eV_atom"]), fontsize=6)
        ax.set_title(f"{pair[0]}-{pair[1]} at {pressure:g} GPa", fontsize=9)
        ax.set_xlabel(f"x({pair[1]})", fontsize=8)
        ax.set_ylabel("ΔH_f (meV/atom)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def stability_map(table: Sequence[dict], elements: Sequence[str], path: Path) -> Path:
    """Pressure against composition, one panel per pair of elements: a marker per phase on the
    hull at each grid pressure, one colour per phase."""
    pairs = _binary_pairs(elements)
    fig, axes = _panels(len(pairs))
    names = sorted({r["name"] for r in table if r["stable"]})
    colours = {n: f"C{k % 10}" for k, n in enumerate(names)}
    markers = {n: "osD^v<>ph*"[(k // 10) % 10] for k, n in enumerate(names)}
    for ax, pair in zip(axes, pairs, strict=False):
        drawn = set()
        for r in table:
            x = _fraction_in_pair(r["formula"], pair)
            if x is None or not r["stable"]:
                continue
            label = None if r["name"] in drawn else r["name"]
            drawn.add(r["name"])
            ax.scatter(
                x,
                r["pressure_GPa"],
                c=colours[r["name"]],
                marker=markers[r["name"]],
                s=18,
                label=label,
            )
        if not drawn:
            _no_data(ax, "-".join(pair))
            continue
        ax.set_title(f"{pair[0]}-{pair[1]}: phases on the hull", fontsize=9)
        ax.set_xlabel(f"x({pair[1]})", fontsize=8)
        ax.set_ylabel("P (GPa)", fontsize=8)
        ax.set_xlim(-0.05, 1.05)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=5, loc="upper center", ncols=2)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def liquid_rdfs(results: Sequence[dict], path: Path) -> Path:
    """The radial distribution functions of liquid runs, one curve per (formula, T, P)."""
    fig, ax = _new_figure()
    for r in results:
        at = r["settings"]
        label = f"{r['formula']} {at['temperature_K']:g} K {at['pressure_GPa']:g} GPa"
        ax.plot(r["rdf"]["r_A"], r["rdf"]["g"], label=label + ("" if r["liquid"] else " (solid)"))
    if not results:
        _no_data(ax)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def diffusion_coefficients(results: Sequence[dict], path: Path) -> Path:
    """Self-diffusion coefficients (with their error bars) against temperature, one line per
    (formula, element, pressure)."""
    fig, ax = _new_figure()
    lines: dict[tuple[str, str, float], list[tuple[float, float, float]]] = {}
    for r in results:
        for element, d in r["diffusion"].items():
            key = (r["formula"], element, r["settings"]["pressure_GPa"])
            lines.setdefault(key, []).append(
                (r["settings"]["temperature_K"], d["D_m2_s"], d["D_error_m2_s"])
            )
    for (formula, element, pressure), points in sorted(lines.items()):
        t, d, e = (np.array(v) for v in zip(*sorted(points), strict=True))
        ax.errorbar(
            t,
            d * 1e9,
            yerr=e * 1e9,
            marker="o",
            capsize=3,
            label=f"{element} in {formula}, {pressure:g} GPa",
        )
    if not lines:
        _no_data(ax)
    ax.set_xlabel("T (K)")
    ax.set_ylabel("D (10⁻⁹ m²/s)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def melting_line(rows: Sequence[dict], path: Path) -> Path:
    """T_m(P) with error bars; pressures where no coexistence was reached are marked."""
    fig, ax = _new_figure()
    found = [r for r in rows if r["T_m_K"] is not None]
    if found:
        ax.errorbar(
            [r["P_GPa"] for r in found],
            [r["T_m_K"] for r in found],
            yerr=[r["T_m_error_K"] for r in found],
            marker="o",
            capsize=3,
            label=f"{found[0]['element']}, coexistence",
        )
        ax.legend(fontsize=8)
    for r in rows:
        if r["T_m_K"] is None:
            ax.axvline(r["P_target_GPa"], color="0.7", linestyle=":", lw=1)
    if not rows:
        _no_data(ax)
    ax.set_xlabel("P (GPa)")
    ax.set_ylabel("T_m (K)")
    return _save(fig, path)
