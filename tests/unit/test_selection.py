"""Frame selection: trust window, classes, farthest-point sampling, strategies, select()."""

from __future__ import annotations

import json

import numpy as np
import pytest

from al_loop.selection import (
    ACCURATE,
    CANDIDATE,
    DEFAULT_STRATEGY,
    FAILED,
    STRATEGIES,
    Candidates,
    Selection,
    candidates,
    classify,
    farthest_point_sampling,
    fractions,
    select,
    trust_window,
)

CENTRES = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])


def clusters(per_cluster: int = 10, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Points in 3 tight, well separated 2-D clusters, shuffled; and each point's cluster label."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_cluster)
    points = CENTRES[labels] + rng.normal(scale=0.5, size=(labels.size, 2))
    order = rng.permutation(labels.size)
    return points[order], labels[order]


# --- trust window and classes -------------------------------------------------------------


def test_window_boundaries_lo_inclusive_hi_exclusive() -> None:
    spreads = np.array([0.0999, 0.1, 0.2, 0.2999, 0.3, 5.0])
    assert list(classify(spreads, 0.1, 0.3)) == [
        ACCURATE,
        CANDIDATE,
        CANDIDATE,
        CANDIDATE,
        FAILED,
        FAILED,
    ]


def test_non_finite_spreads_are_failed() -> None:
    spreads = np.array([np.nan, 0.05, np.inf, 0.2, -np.inf])
    assert list(classify(spreads, 0.1, 0.3)) == [FAILED, ACCURATE, FAILED, CANDIDATE, FAILED]


def test_window_fixed_and_invalid() -> None:
    assert trust_window(np.array([0.5, 0.6]), 0.1, 0.3) == (0.1, 0.3)
    with pytest.raises(ValueError, match="lo < hi"):
        trust_window(np.array([0.1]), 0.3, 0.3)
    with pytest.raises(ValueError, match="lo < hi"):
        trust_window(np.array([0.1]), 0.4, 0.3)
    with pytest.raises(ValueError, match="percentile"):
        trust_window(np.array([0.1]), 0.1, 0.3, adaptive_percentile=150.0)


def test_adaptive_percentile_moves_lo() -> None:
    # finite spreads below hi=1.0 are 0.0 .. 0.9; spreads >= hi and NaN are ignored
    spreads = np.concatenate([np.linspace(0.0, 0.9, 10), [1.0, 3.0, 50.0, np.nan, np.inf]])
    lo, hi = trust_window(spreads, 0.05, 1.0, adaptive_percentile=50.0)
    assert hi == 1.0
    assert lo == pytest.approx(0.45)
    lo90, _ = trust_window(spreads, 0.05, 1.0, adaptive_percentile=90.0)
    assert lo90 == pytest.approx(np.percentile(np.linspace(0.0, 0.9, 10), 90.0))
    # lo may also move down
    lo0, _ = trust_window(spreads, 0.05, 1.0, adaptive_percentile=0.0)
    assert lo0 == 0.0


def test_adaptive_percentile_clipped_below_hi() -> None:
    # almost everything sits at or above hi: the percentile must not use those values
    spreads = np.array([0.2, 0.25, 0.29, 0.3, 0.3, 0.8, 1.5, 7.0, 9.0])
    lo, hi = trust_window(spreads, 0.05, 0.3, adaptive_percentile=100.0)
    assert lo == pytest.approx(0.29)
    assert lo < hi == 0.3


def test_adaptive_percentile_keeps_lo_without_spreads_below_hi() -> None:
    spreads = np.array([0.5, 0.7, np.nan])
    assert trust_window(spreads, 0.1, 0.3, adaptive_percentile=50.0) == (0.1, 0.3)
    assert trust_window(np.array([]), 0.1, 0.3, adaptive_percentile=50.0) == (0.1, 0.3)


def test_fractions() -> None:
    classes = classify(np.array([0.0, 0.2, 0.2, 0.5, np.nan]), 0.1, 0.3)
    assert fractions(classes) == {ACCURATE: 0.2, CANDIDATE: 0.4, FAILED: 0.4}
    assert fractions(np.array([], dtype=str)) == {ACCURATE: 0.0, CANDIDATE: 0.0, FAILED: 0.0}


# --- farthest-point sampling -----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_fps_one_pick_per_cluster(seed: int) -> None:
    points, labels = clusters(seed=seed + 10)
    picks = farthest_point_sampling(points, 3, seed=seed)
    assert len(picks) == 3
    assert sorted(labels[picks]) == [0, 1, 2]


def test_fps_first_pick_from_seed_and_reproducible() -> None:
    points, _ = clusters()
    expected_first = int(np.random.default_rng(7).integers(len(points)))
    picks = farthest_point_sampling(points, 5, seed=7)
    assert picks[0] == expected_first
    assert picks == farthest_point_sampling(points, 5, seed=7)
    assert len(set(picks)) == 5


def test_fps_picks_farthest_each_step() -> None:
    points = np.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
    reference = np.array([[0.0]])
    # from reference 0: 10 first, then the point farthest from {0, 10}: 4 or 6 (4 -> 4, 6 -> 4),
    # first index of the tie wins (4.0 at row 3); then 6.0 (distance 2), then 1.0 (distance 1)
    assert farthest_point_sampling(points, 10, reference=reference) == [2, 3, 4, 1]


def test_fps_duplicates_never_picked_twice() -> None:
    base = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    points = np.concatenate([base, base, base])  # every row three times
    for seed in range(5):
        picks = farthest_point_sampling(points, 9, seed=seed)
        assert len(picks) == 3
        assert len({tuple(points[i]) for i in picks}) == 3


def test_fps_min_distance_stops_early() -> None:
    points, labels = clusters()
    # the clusters are ~100 apart and ~0.5 wide: beyond one point per cluster nothing is > 10 away
    picks = farthest_point_sampling(points, 20, min_distance=10.0)
    assert len(picks) == 3
    assert sorted(labels[picks]) == [0, 1, 2]
    # without min_distance it keeps going up to k
    assert len(farthest_point_sampling(points, 20)) == 20


def test_fps_reference_avoids_points_near_it() -> None:
    points, labels = clusters()
    reference = CENTRES[:2] + 0.1  # clusters 0 and 1 are already in the training set
    picks = farthest_point_sampling(points, 1, reference=reference)
    assert labels[picks[0]] == 2
    # with a threshold, points close to the reference are not picked at all
    picks = farthest_point_sampling(points, 30, reference=reference, min_distance=10.0)
    assert [labels[i] for i in picks] == [2]
    # everything near the reference: nothing to pick
    assert farthest_point_sampling(points, 5, reference=CENTRES, min_distance=10.0) == []


def test_fps_first_pick_is_farthest_from_reference() -> None:
    points = np.array([[1.0, 0.0], [5.0, 0.0], [3.0, 0.0], [-2.0, 0.0]])
    reference = np.array([[0.0, 0.0], [6.0, 0.0]])
    # distances to the reference: 1, 1, 3, 2
    for seed in range(5):
        assert farthest_point_sampling(points, 1, reference=reference, seed=seed) == [2]


def test_fps_empty_and_nonpositive_k() -> None:
    points, _ = clusters()
    assert farthest_point_sampling(points, 0) == []
    assert farthest_point_sampling(points, -3) == []
    assert farthest_point_sampling(np.empty((0, 4)), 5) == []
    assert farthest_point_sampling(points, 100) == farthest_point_sampling(points, len(points))
    assert sorted(farthest_point_sampling(points, 100)) == list(range(len(points)))


def test_fps_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        farthest_point_sampling(np.zeros(5), 2)
    with pytest.raises(ValueError, match="features"):
        farthest_point_sampling(np.zeros((5, 3)), 2, reference=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        farthest_point_sampling(np.array([[0.0], [np.nan]]), 2)
    with pytest.raises(ValueError, match="min_distance"):
        farthest_point_sampling(np.zeros((5, 3)), 2, min_distance=-1.0)


# --- select ------------------------------------------------------------------------------------


def frames(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 frames in 3 descriptor clusters with spreads spanning all three classes."""
    points, labels = clusters(per_cluster=20, seed=seed)
    rng = np.random.default_rng(seed)
    spreads = rng.uniform(0.0, 0.6, size=len(points))
    spreads[::7] = np.nan
    return spreads, points, labels


def test_select_only_candidates_and_cap() -> None:
    spreads, points, _ = frames()
    sel = select(spreads, points, 0.1, 0.3, cap=5)
    assert isinstance(sel, Selection)
    assert sel.window == (0.1, 0.3)
    candidates = set(np.flatnonzero((spreads >= 0.1) & (spreads < 0.3)))
    assert sel.n_candidates == len(candidates) > 5
    assert len(sel.indices) == 5
    assert len(set(sel.indices)) == 5
    assert set(sel.indices) <= candidates
    assert all(sel.classes[i] == CANDIDATE for i in sel.indices)
    assert list(sel.classes) == list(classify(spreads, 0.1, 0.3))


def test_select_diverse_among_candidates() -> None:
    spreads, points, labels = frames()
    sel = select(spreads, points, 0.1, 0.3, cap=3)
    assert sorted(labels[sel.indices]) == [0, 1, 2]


def test_select_cap_larger_than_candidates_and_zero() -> None:
    spreads, points, _ = frames()
    sel = select(spreads, points, 0.1, 0.3, cap=1000)
    assert sorted(sel.indices) == sorted(np.flatnonzero((spreads >= 0.1) & (spreads < 0.3)))
    assert select(spreads, points, 0.1, 0.3, cap=0).indices == []
    with pytest.raises(ValueError, match="cap"):
        select(spreads, points, 0.1, 0.3, cap=-1)


def test_select_candidates_that_duplicate_are_picked_once() -> None:
    spreads = np.array([0.2, 0.2, 0.2, 0.05, 0.2])
    points = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [9.0, 9.0], [3.0, 0.0]])
    sel = select(spreads, points, 0.1, 0.3, cap=10)
    assert len(sel.indices) == 2
    assert {tuple(points[i]) for i in sel.indices} == {(0.0, 0.0), (3.0, 0.0)}


def test_select_adaptive_window_and_reference() -> None:
    spreads, points, labels = frames()
    sel = select(spreads, points, 0.01, 0.3, cap=10, adaptive_percentile=50.0)
    finite_below = spreads[np.isfinite(spreads) & (spreads < 0.3)]
    assert sel.window == pytest.approx((np.percentile(finite_below, 50.0), 0.3))
    assert all(spreads[i] >= sel.window[0] for i in sel.indices)
    # clusters 0 and 2 already labelled: with a threshold only cluster 1 is picked
    reference = CENTRES[[0, 2]]
    sel = select(spreads, points, 0.1, 0.3, cap=10, reference=reference, min_distance=10.0)
    assert [labels[i] for i in sel.indices] == [1]


def test_select_empty_input() -> None:
    sel = select(np.array([]), np.empty((0, 8)), 0.1, 0.3, cap=5, adaptive_percentile=50.0)
    assert sel.indices == []
    assert sel.n_candidates == 0
    assert sel.classes.shape == (0,)
    assert sel.window == (0.1, 0.3)
    report = sel.report()
    json.dumps(report)
    assert report["fractions"] == {ACCURATE: 0.0, CANDIDATE: 0.0, FAILED: 0.0}
    assert report["n_selected"] == 0


def test_select_no_candidates() -> None:
    sel = select(np.array([0.01, 0.02, 0.9, np.nan]), np.eye(4), 0.1, 0.3, cap=5)
    assert sel.indices == []
    assert sel.n_candidates == 0


@pytest.mark.parametrize(
    ("spreads", "descriptors", "match"),
    [
        (np.zeros(5), np.zeros((4, 3)), "rows"),
        (np.zeros(5), np.zeros(5), "2-D"),
        (np.zeros((5, 1)), np.zeros((5, 3)), "1-D"),
        (np.zeros(2), np.array([[0.0], [np.inf]]), "non-finite"),
    ],
)
def test_select_bad_shapes_raise(spreads: np.ndarray, descriptors: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        select(spreads, descriptors, 0.1, 0.3, cap=3)


def test_select_bad_window_raises() -> None:
    with pytest.raises(ValueError, match="lo < hi"):
        select(np.zeros(3), np.zeros((3, 2)), 0.3, 0.1, cap=3)


def test_report_is_json_and_consistent() -> None:
    spreads, points, _ = frames()
    sel = select(spreads, points, 0.1, 0.3, cap=4, adaptive_percentile=20.0)
    report = sel.report()
    decoded = json.loads(json.dumps(report))
    assert decoded == report
    assert sum(report["fractions"].values()) == pytest.approx(1.0)
    assert sum(report["counts"].values()) == len(spreads)
    assert report["counts"][FAILED] >= int(np.isnan(spreads).sum())
    assert report["counts"][CANDIDATE] == report["n_candidates"] == sel.n_candidates
    assert report["n_selected"] == len(sel.indices) == 4
    assert report["window"] == [sel.window[0], sel.window[1]]


def test_report_has_strategy_and_window() -> None:
    spreads, points, _ = frames()
    report = select(spreads, points, 0.1, 0.3, cap=4, adaptive_percentile=20.0).report()
    assert report["strategy"] == "window_fps"
    finite_below = spreads[np.isfinite(spreads) & (spreads < 0.3)]
    assert report["window"] == pytest.approx([np.percentile(finite_below, 20.0), 0.3])
    report = select(spreads, points, 0.1, 0.3, cap=4, strategy="top_spread_fps").report()
    assert report["strategy"] == "top_spread_fps"
    assert report["window"] == [0.1, 0.3]
    assert report["n_candidates"] == 8  # the pool: 2 x cap
    assert report["n_selected"] == 4
    json.dumps(report)


# --- strategies ----------------------------------------------------------------------------------


def test_strategy_names() -> None:
    assert DEFAULT_STRATEGY == "window_fps" == STRATEGIES[0]
    assert set(STRATEGIES) == {"window_fps", "top_spread_fps"}
    assert len(set(STRATEGIES)) == len(STRATEGIES)


def test_unknown_strategy_raises_naming_the_known_ones() -> None:
    spreads, points, _ = frames()
    for call in (
        lambda: candidates(spreads, 0.1, 0.3, 3, strategy="random"),
        lambda: select(spreads, points, 0.1, 0.3, 3, strategy="random"),
    ):
        with pytest.raises(ValueError, match="random") as err:
            call()
        assert all(name in str(err.value) for name in STRATEGIES)


def test_candidates_window_fps() -> None:
    spreads, _, _ = frames()
    c = candidates(spreads, 0.1, 0.3, cap=2)
    assert isinstance(c, Candidates)
    assert c.strategy == "window_fps"
    assert c.window == (0.1, 0.3)
    assert list(c.indices) == list(np.flatnonzero((spreads >= 0.1) & (spreads < 0.3)))
    assert c.indices.size > 2  # the window is not capped: FPS caps
    assert list(c.classes) == list(classify(spreads, 0.1, 0.3))
    # adaptive: the moved window is reported and used
    c = candidates(spreads, 0.01, 0.3, cap=2, adaptive_percentile=50.0)
    lo = np.percentile(spreads[np.isfinite(spreads) & (spreads < 0.3)], 50.0)
    assert c.window == pytest.approx((lo, 0.3))
    assert list(c.indices) == list(np.flatnonzero((spreads >= c.window[0]) & (spreads < 0.3)))
    assert list(c.classes) == list(classify(spreads, *c.window))


def test_candidates_top_spread_fps() -> None:
    spreads = np.array([0.05, 0.9, np.nan, 0.29, 0.01, 0.3, np.inf, 0.2, 0.02, 0.2, 0.1, -np.inf])
    # finite and below hi=0.3, by spread: 0.29 (3), 0.2 (7), 0.2 (9), 0.1 (10), 0.05 (0), ...
    c = candidates(spreads, 0.25, 0.3, cap=2, strategy="top_spread_fps")
    assert c.strategy == "top_spread_fps"
    assert c.window == (0.25, 0.3)
    assert list(c.classes) == list(classify(spreads, 0.25, 0.3))
    assert list(c.indices) == [3, 7, 9, 10]  # 2 x cap, in frame order, accurate ones included
    assert list(candidates(spreads, 0.25, 0.3, 1, "top_spread_fps", pool_factor=3).indices) == [
        3,
        7,
        9,
    ]
    # ties broken by frame index: 0.2 at 7 before 0.2 at 9
    assert list(candidates(spreads, 0.25, 0.3, 1, "top_spread_fps", pool_factor=2).indices) == [
        3,
        7,
    ]
    # a pool larger than the eligible frames: all finite frames below hi, never failed ones
    every = candidates(spreads, 0.25, 0.3, cap=50, strategy="top_spread_fps")
    assert list(every.indices) == [0, 3, 4, 7, 8, 9, 10]
    assert candidates(spreads, 0.25, 0.3, cap=0, strategy="top_spread_fps").indices.size == 0
    # lo does not matter (fixed or adaptive); the window is still reported as used
    for lo in (0.001, 0.1, 0.2999):
        assert list(candidates(spreads, lo, 0.3, 2, "top_spread_fps").indices) == [3, 7, 9, 10]
    adaptive = candidates(spreads, 0.001, 0.3, 2, "top_spread_fps", adaptive_percentile=50.0)
    assert list(adaptive.indices) == [3, 7, 9, 10]
    assert adaptive.window == pytest.approx(
        (np.percentile([0.05, 0.29, 0.01, 0.2, 0.02, 0.2, 0.1], 50.0), 0.3)
    )
    assert list(adaptive.classes) == list(classify(spreads, *adaptive.window))


def test_candidates_bad_arguments() -> None:
    spreads, _, _ = frames()
    with pytest.raises(ValueError, match="cap"):
        candidates(spreads, 0.1, 0.3, cap=-1, strategy="top_spread_fps")
    with pytest.raises(ValueError, match="pool_factor"):
        candidates(spreads, 0.1, 0.3, cap=2, strategy="top_spread_fps", pool_factor=0)
    with pytest.raises(ValueError, match="lo < hi"):
        candidates(spreads, 0.3, 0.1, cap=2, strategy="top_spread_fps")


def top_spread_frames(seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """60 frames in 3 descriptor clusters, all below lo = 0.1 except the failed ones; the 12
    highest spreads below hi = 0.3 (the pool for cap 3 x pool_factor 4) are 4 per cluster.

    Every frame outside the pool has a descriptor row far from everything (so FPS would pick it
    first if it were read). Returns spreads, descriptors, cluster labels and the pool.
    """
    points, labels = clusters(per_cluster=20, seed=seed)
    rng = np.random.default_rng(seed)
    spreads = rng.uniform(0.0, 0.05, size=len(points))
    pool = np.sort(np.concatenate([np.flatnonzero(labels == k)[:4] for k in range(3)]))
    spreads[pool] = rng.uniform(0.06, 0.09, size=pool.size)
    rest = np.setdiff1d(np.arange(len(points)), pool)
    spreads[rest[:3]] = [0.3, 5.0, np.nan]  # failed, above every pool spread
    spreads[rest[3]] = np.inf
    descriptors = points.copy()
    descriptors[rest] = 1e4 + 1e3 * np.arange(rest.size)[:, None]
    return spreads, descriptors, labels, pool


def test_select_top_spread_picks_diverse_frames_from_the_pool_only() -> None:
    spreads, descriptors, labels, pool = top_spread_frames()
    kw = {"strategy": "top_spread_fps", "pool_factor": 4}
    sel = select(spreads, descriptors, 0.1, 0.3, cap=3, **kw)
    assert sel.strategy == "top_spread_fps"
    assert sel.n_candidates == pool.size == 12
    assert len(sel.indices) == 3
    assert set(sel.indices) <= set(pool)
    assert sorted(labels[sel.indices]) == [0, 1, 2]  # FPS spreads the picks out
    assert all(np.isfinite(spreads[i]) and spreads[i] < 0.3 for i in sel.indices)
    assert all(sel.classes[i] == ACCURATE for i in sel.indices)  # lo is ignored
    assert list(sel.classes) == list(classify(spreads, 0.1, 0.3))
    # the same frames with the window strategy: nothing in [0.1, 0.3)
    assert select(spreads, descriptors, 0.1, 0.3, cap=3).indices == []
    # cap respected, never a failed frame, even when the pool takes every eligible frame
    for cap in (1, 5, 40, 100):
        sel = select(spreads, descriptors, 0.1, 0.3, cap=cap, strategy="top_spread_fps")
        assert len(sel.indices) == min(cap, 56) == len(set(sel.indices))
        assert all(np.isfinite(spreads[i]) and spreads[i] < 0.3 for i in sel.indices)


def test_select_top_spread_default_pool_and_reference() -> None:
    spreads, descriptors, labels, pool = top_spread_frames()
    top4 = np.argsort(-np.where(np.isfinite(spreads) & (spreads < 0.3), spreads, -1.0))[:4]
    sel = select(spreads, descriptors, 0.1, 0.3, cap=2, strategy="top_spread_fps")
    assert sel.n_candidates == 4
    assert set(sel.indices) <= set(top4)
    # with the labelled set's descriptors as reference: the pool frames far from it come first
    reference = CENTRES[[0, 2]]
    sel = select(
        spreads,
        descriptors,
        0.1,
        0.3,
        cap=3,
        strategy="top_spread_fps",
        pool_factor=4,
        reference=reference,
        min_distance=10.0,
    )
    assert sorted(labels[sel.indices]) == [1]
    assert set(sel.indices) <= set(pool)


def test_select_top_spread_deterministic_with_seed() -> None:
    spreads, descriptors, _, pool = top_spread_frames()
    for seed in range(4):
        runs = [
            select(spreads, descriptors, 0.1, 0.3, 3, "top_spread_fps", seed=seed, pool_factor=4)
            for _ in range(2)
        ]
        assert runs[0].indices == runs[1].indices
        # no reference: the first pick is the seed's draw among the pool (in frame order)
        first = int(np.random.default_rng(seed).integers(pool.size))
        assert runs[0].indices[0] == pool[first]


def test_select_default_strategy_is_window_fps() -> None:
    spreads, points, _ = frames()
    for kw in ({}, {"adaptive_percentile": 30.0}, {"reference": CENTRES[:1], "seed": 4}):
        default = select(spreads, points, 0.1, 0.3, cap=4, **kw)
        named = select(spreads, points, 0.1, 0.3, cap=4, strategy="window_fps", **kw)
        assert default.indices == named.indices
        assert default.strategy == named.strategy == "window_fps"
        assert default.report() == named.report()
