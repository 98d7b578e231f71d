"""Choosing which MD frames get labelled (DP-GEN convention).

Each frame has a committee force spread (eV/Å). Frames below the trust window are *accurate*
(the committee agrees, nothing to learn), frames inside it are *candidates* for labelling, and
frames at or above it (or with a non-finite spread, e.g. an MD run that blew up) are *failed*
(too far from the training data to be trusted, usually unphysical). Among candidates, a diverse
subset is picked by farthest-point sampling on structure descriptors.

Pure numpy: no MACE, no database.
"""

from __future__ import annotations

import logging
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


@dataclass(frozen=True, eq=False)
class Selection:
    """Outcome of :func:`select`."""

    indices: list[int]  #: frames chosen for labelling, in pick order
    classes: np.ndarray  #: class per frame
    window: tuple[float, float]  #: the (lo, hi) actually used
    n_candidates: int

    def report(self) -> dict[str, Any]:
        """JSON-able summary: fractions, counts per class, n_candidates, n_selected, window."""
        c = np.asarray(self.classes)
        return {
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
    adaptive_percentile: float | None = None,
    reference: np.ndarray | None = None,
    min_distance: float = 0.0,
    seed: int = 0,
) -> Selection:
    """Window (:func:`trust_window`), classify, then FPS among candidates only, at most ``cap``.

    Indices refer to rows of the input arrays.
    """
    s = _as_spreads(spreads)
    x = _as_descriptors(descriptors)
    if x.shape[0] != s.shape[0]:
        raise ValueError(
            f"descriptors have {x.shape[0]} rows but there are {s.shape[0]} spreads; "
            "need one descriptor row per frame"
        )
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    window = trust_window(s, lo, hi, adaptive_percentile)
    classes = classify(s, *window)
    candidates = np.flatnonzero(classes == CANDIDATE)
    picked = farthest_point_sampling(
        x[candidates], cap, reference=reference, min_distance=min_distance, seed=seed
    )
    indices = [int(candidates[i]) for i in picked]
    classes.setflags(write=False)
    selection = Selection(indices, classes, window, int(candidates.size))
    log.info(
        "selection: window [%.4g, %.4g) eV/Å, %d frames, %d candidates, %d selected (cap %d)",
        window[0],
        window[1],
        s.size,
        candidates.size,
        len(indices),
        cap,
    )
    return selection
