"""Choosing which MD frames get labelled (DP-GEN convention).

Each frame has a committee force spread (eV/Å). Frames below the trust window are *accurate*
(the committee agrees, nothing to learn), frames inside it are *candidates* for labelling, and
frames at or above it (or with a non-finite spread, e.g. an MD run that blew up) are *failed*
(too far from the training data to be trusted, usually unphysical).

A *strategy* (:data:`STRATEGIES`) names which frames may be picked (:func:`candidates`); a
diverse subset of those is then picked by farthest-point sampling on structure descriptors
(:func:`select`). The window rule (:func:`trust_window`, :func:`classify`) lives here only.

Pure numpy: no MACE, no database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"
CLASSES = (ACCURATE, CANDIDATE, FAILED)

#: Rows of the reference set handled at once when computing distances (bounds memory use).
_CHUNK = 4096


def _as_spreads(spreads: np.ndarray) -> np.ndarray:
    """Spreads as a 1-D float array, or ValueError."""
    s = np.asarray(spreads, dtype=float)
    if s.ndim != 1:
        raise ValueError(f"spreads must be 1-D (one value per frame), got shape {s.shape}")
    return s


def _as_descriptors(descriptors: np.ndarray, name: str = "descriptors") -> np.ndarray:
    """Descriptors as a finite 2-D float array (n, d), or ValueError."""
    d = np.asarray(descriptors, dtype=float)
    if d.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_frames, n_features), got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"{name} contain non-finite values")
    return d


def trust_window(
    spreads: np.ndarray,
    lo: float,
    hi: float,
    adaptive_percentile: float | None = None,
) -> tuple[float, float]:
    """The window [lo, hi) in eV/Å.

    With ``adaptive_percentile``, lo becomes that percentile of the finite spreads below hi
    (never above hi; if no spreads are below hi, lo is kept). Raises ValueError if lo >= hi.
    """
    lo, hi = float(lo), float(hi)
    if not lo < hi:
        raise ValueError(f"trust window needs lo < hi, got lo={lo}, hi={hi}")
    if adaptive_percentile is None:
        return lo, hi
    p = float(adaptive_percentile)
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"adaptive_percentile must be in [0, 100], got {p}")
    s = _as_spreads(spreads)
    below = s[np.isfinite(s) & (s < hi)]
    if below.size == 0:
        log.debug("adaptive trust window: no finite spread below hi=%g, keeping lo=%g", hi, lo)
        return lo, hi
    new_lo = min(float(np.percentile(below, p)), hi)
    if not new_lo < hi:  # cannot happen for values strictly below hi; guard against rounding
        new_lo = lo
    log.debug("adaptive trust window: lo %g -> %g (percentile %g)", lo, new_lo, p)
    return new_lo, hi


def classify(spreads: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Labels per frame: accurate (spread < lo), candidate (lo <= spread < hi), failed (else).

    Failed includes spread >= hi and non-finite spreads (NaN, inf).
    """
    s = _as_spreads(spreads)
    finite = np.isfinite(s)
    with np.errstate(invalid="ignore"):
        accurate = finite & (s < lo)
        candidate = finite & (s >= lo) & (s < hi)
    classes = np.full(s.shape, FAILED, dtype=f"<U{max(map(len, CLASSES))}")
    classes[accurate] = ACCURATE
    classes[candidate] = CANDIDATE
    return classes


def fractions(classes: np.ndarray) -> dict[str, float]:
    """Fraction of frames in each class ({accurate, candidate, failed}; 0.0 each when empty)."""
    c = np.asarray(classes)
    n = c.size
    return {name: (float(np.count_nonzero(c == name)) / n if n else 0.0) for name in CLASSES}


def _min_distances(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance from each row of ``points`` to its nearest row of ``reference``."""
    best = np.full(points.shape[0], np.inf)
    for start in range(0, reference.shape[0], _CHUNK):
        block = reference[start : start + _CHUNK]
        diff = points[:, None, :] - block[None, :, :]
        best = np.minimum(best, np.sqrt(np.einsum("ijk,ijk->ij", diff, diff)).min(axis=1))
    return best


def farthest_point_sampling(
    descriptors: np.ndarray,
    k: int,
    reference: np.ndarray | None = None,
    min_distance: float = 0.0,
    seed: int = 0,
) -> list[int]:
    """Greedy farthest-point sampling of up to k rows of ``descriptors`` (n, d), Euclidean.

    With ``reference`` (m, d), descriptors of structures already in the training set, distances
    start from it, so the first pick is the row farthest from the reference set; without it the
    first pick is chosen by ``np.random.default_rng(seed)``. Stops early when the largest
    remaining distance is <= ``min_distance`` (so an exact duplicate of a picked row is never
    picked). Returns indices in pick order; k <= 0 or n == 0 gives [].
    """
    x = _as_descriptors(descriptors)
    min_distance = float(min_distance)
    if min_distance < 0.0 or not np.isfinite(min_distance):
        raise ValueError(f"min_distance must be finite and >= 0, got {min_distance}")
    n = x.shape[0]
    if k <= 0 or n == 0:
        return []

    dist = np.full(n, np.inf)
    from_reference = False
    if reference is not None:
        ref = _as_descriptors(reference, "reference")
        if ref.shape[1] != x.shape[1]:
            raise ValueError(
                f"reference has {ref.shape[1]} features per row, descriptors have {x.shape[1]}"
            )
        if ref.shape[0] > 0:
            dist = _min_distances(x, ref)
            from_reference = True

    picks: list[int] = []
    taken = np.zeros(n, dtype=bool)
    if from_reference:
        first = int(np.argmax(dist))
        if dist[first] <= min_distance:
            return []
    else:  # an empty reference set is the same as none
        first = int(np.random.default_rng(seed).integers(n))
    while True:
        picks.append(first)
        taken[first] = True
        if len(picks) >= min(k, n):
            break
        diff = x - x[first]
        dist = np.minimum(dist, np.sqrt(np.einsum("ij,ij->i", diff, diff)))
        masked = np.where(taken, -np.inf, dist)
        first = int(np.argmax(masked))
        if masked[first] <= min_distance:
            break
    return picks


# --- strategies: which frames may be picked ---------------------------------------------------


def _window_candidates(
    spreads: np.ndarray, classes: np.ndarray, window: tuple[float, float], cap: int, pool: int
) -> np.ndarray:
    """The frames inside the trust window ``[lo, hi)``."""
    return np.flatnonzero(classes == CANDIDATE)


def _top_spread_candidates(
    spreads: np.ndarray, classes: np.ndarray, window: tuple[float, float], cap: int, pool: int
) -> np.ndarray:
    """The ``pool`` frames with the highest finite spreads strictly below hi, whatever lo.

    Ties are broken by frame index (lower first); the result is in frame order.
    """
    hi = window[1]
    with np.errstate(invalid="ignore"):
        eligible = np.flatnonzero(np.isfinite(spreads) & (spreads < hi))
    order = np.argsort(-spreads[eligible], kind="stable")
    return np.sort(eligible[order[:pool]])


#: Strategy name -> function(spreads, classes, window, cap, pool size) -> candidate indices.
_STRATEGIES: dict[
    str, Callable[[np.ndarray, np.ndarray, tuple[float, float], int, int], np.ndarray]
] = {
    "window_fps": _window_candidates,
    "top_spread_fps": _top_spread_candidates,
}

#: Names of the selection strategies, the default first. ``window_fps``: farthest-point sampling
#: among the frames in the trust window. ``top_spread_fps``: farthest-point sampling among the
#: ``pool_factor * cap`` frames with the highest finite spreads below hi, whatever lo.
STRATEGIES: tuple[str, ...] = tuple(_STRATEGIES)
DEFAULT_STRATEGY = "window_fps"


@dataclass(frozen=True, eq=False)
class Candidates:
    """Outcome of :func:`candidates`: the frames a strategy lets farthest-point sampling pick."""

    indices: np.ndarray  #: frames that may be picked (int, ascending); they need a descriptor
    window: tuple[float, float]  #: the (lo, hi) used to classify frames
    classes: np.ndarray  #: class per frame, ``classify(spreads, *window)`` (read-only)
    strategy: str


def _check_strategy(strategy: str) -> str:
    if strategy not in _STRATEGIES:
        raise ValueError(
            f"unknown selection strategy {strategy!r}; known strategies: {', '.join(STRATEGIES)}"
        )
    return strategy


def candidates(
    spreads: np.ndarray,
    lo: float,
    hi: float,
    cap: int,
    strategy: str = DEFAULT_STRATEGY,
    adaptive_percentile: float | None = None,
    pool_factor: int = 2,
) -> Candidates:
    """The window (:func:`trust_window`), the class of every frame, and the frames ``strategy``
    lets be picked. Frames failed by the window (spread >= hi, or non-finite) are never
    candidates. ``pool_factor`` sizes ``top_spread_fps``'s pool (``pool_factor * cap`` frames).

    Raises ValueError for an unknown strategy, cap < 0, pool_factor < 1 or a bad window.
    """
    _check_strategy(strategy)
    s = _as_spreads(spreads)
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    if pool_factor < 1:
        raise ValueError(f"pool_factor must be >= 1, got {pool_factor}")
    window = trust_window(s, lo, hi, adaptive_percentile)
    classes = classify(s, *window)
    classes.setflags(write=False)
    indices = _STRATEGIES[strategy](s, classes, window, int(cap), int(pool_factor * cap))
    indices = np.asarray(indices, dtype=np.intp)
    indices.setflags(write=False)
    return Candidates(indices, window, classes, strategy)


@dataclass(frozen=True, eq=False)
class Selection:
    """Outcome of :func:`select`."""

    indices: list[int]  #: frames chosen for labelling, in pick order
    classes: np.ndarray  #: class per frame
    window: tuple[float, float]  #: the (lo, hi) actually used
    n_candidates: int  #: frames the strategy let be picked
    strategy: str = DEFAULT_STRATEGY

    def report(self) -> dict[str, Any]:
        """JSON-able summary: strategy, fractions, counts per class, n_candidates, n_selected,
        window."""
        c = np.asarray(self.classes)
        return {
            "strategy": self.strategy,
            "n_frames": int(c.size),
            "fractions": fractions(c),
            "counts": {name: int(np.count_nonzero(c == name)) for name in CLASSES},
            "n_candidates": int(self.n_candidates),
            "n_selected": len(self.indices),
            "window": [float(self.window[0]), float(self.window[1])],
        }


def select(
    spreads: np.ndarray,
    descriptors: np.ndarray,
    lo: float,
    hi: float,
    cap: int,
    strategy: str = DEFAULT_STRATEGY,
    adaptive_percentile: float | None = None,
    reference: np.ndarray | None = None,
    min_distance: float = 0.0,
    seed: int = 0,
    pool_factor: int = 2,
) -> Selection:
    """:func:`candidates` for ``strategy``, then FPS among the candidates only (distances from
    ``reference``, the labelled set's descriptors, when given), at most ``cap``.

    ``descriptors`` has one row per frame; only candidates' rows are read (the others may be
    zeros). Indices refer to rows of the input arrays.
    """
    _check_strategy(strategy)
    s = _as_spreads(spreads)
    x = _as_descriptors(descriptors)
    if x.shape[0] != s.shape[0]:
        raise ValueError(
            f"descriptors have {x.shape[0]} rows but there are {s.shape[0]} spreads; "
            "need one descriptor row per frame"
        )
    chosen = candidates(s, lo, hi, cap, strategy, adaptive_percentile, pool_factor)
    pool = chosen.indices
    picked = farthest_point_sampling(
        x[pool], cap, reference=reference, min_distance=min_distance, seed=seed
    )
    indices = [int(pool[i]) for i in picked]
    selection = Selection(indices, chosen.classes, chosen.window, int(pool.size), strategy)
    log.info(
        "selection (%s): window [%.4g, %.4g) eV/Å, %d frames, %d candidates, %d selected (cap %d)",
        strategy,
        chosen.window[0],
        chosen.window[1],
        s.size,
        pool.size,
        len(indices),
        cap,
    )
    return selection
