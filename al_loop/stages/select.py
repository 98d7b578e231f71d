"""Select: the frames of an iteration's exploration that get labelled, by the campaign's
selection strategy (al_loop/selection.py): candidates by force spread, then farthest-point
sampling on the committee's descriptors away from what is labelled, at most
``max_per_iteration``. The chosen frames are stored as structures of the iteration."""

from __future__ import annotations

from typing import Any

import numpy as np

from al_loop.committee import labelled_structures, load_committee
from al_loop.selection import candidates, select
from al_loop.stages.base import Stage
from al_loop.stages.explore import frames_from_bytes


class SelectStage(Stage):
    name = "select"

    def compute(self, iteration: int) -> dict[str, Any]:
        session, cfg, store = self.session, self.session.config, self.session.store
        explored = session.log.result(iteration, "explore")
        if explored is None:
            raise RuntimeError(f"iteration {iteration}: select needs the explore stage first")
        frames = frames_from_bytes(store.read_file(explored["frames_file"]))
        table = explored["table"]
        spreads = np.asarray(table["force_spread"], dtype=float)
        sel = cfg.selection
        rule = dict(
            lo=sel.trust_lo_eV_A,
            hi=sel.trust_hi_eV_A,
            cap=sel.max_per_iteration,
            strategy=sel.strategy,
            adaptive_percentile=sel.adaptive_percentile,
            pool_factor=sel.top_spread_pool,
        )
        pickable = candidates(spreads, **rule).indices
        descriptors, reference = np.zeros((len(frames), 1)), None
        if pickable.size:  # only the frames that can be picked need a descriptor
            calc = load_committee(session, iteration - 1, cfg.exploration.dtype)
            rows = {int(i): calc.descriptor(frames[i]) for i in pickable}
            descriptors = np.zeros((len(frames), len(next(iter(rows.values())))))
            for i, row in rows.items():
                descriptors[i] = row
            train, held_out = labelled_structures(session)
            reference = np.array([calc.descriptor(a) for a in train + held_out])
        choice = select(
            spreads, descriptors, reference=reference, seed=cfg.seed * 1000 + iteration, **rule
        )
        ids = []
        for i in choice.indices:
            source = {
                "kind": "md",
                **{k: table[k][i] for k in ("trajectory", "step", "target_T_K", "target_P_GPa")},
                "force_spread": float(spreads[i]),
            }
            ids.append(store.add_structure(frames[i], session.name, iteration, source))
        return {**choice.report(), "structure_ids": ids}

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "strategy": result["strategy"],
            "window_eV_A": result["window"],
            "candidates": result["n_candidates"],
            "selected": result["n_selected"],
        }
