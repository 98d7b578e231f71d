"""Seed: iteration 0's structures, generated on lattice prototypes and read from the user's
files, stored before anything runs."""

from __future__ import annotations

from typing import Any

from al_loop.phase.candidates import prototype_candidates
from al_loop.seeds import candidate_seeds, file_seeds, lattice_seeds
from al_loop.stages.base import Stage


class SeedStage(Stage):
    name = "seed"

    def compute(self, iteration: int) -> dict[str, Any]:
        cfg = self.session.config
        seeds = lattice_seeds(
            cfg.system.elements,
            cfg.seeds.prototypes,
            cfg.seeds.n_structures,
            cfg.seeds.max_atoms,
            cfg.seeds.rattle_A,
            cfg.seeds.volume_scale_range,
            seed=cfg.seed,
        )
        if cfg.seeds.phase_candidates:
            found = prototype_candidates(list(cfg.system.elements), cfg.phase.prototypes)
            seeds += candidate_seeds(
                [(c.name, c.atoms) for c in found],
                cfg.seeds.phase_candidates,
                cfg.seeds.rattle_A,
                cfg.seeds.volume_scale_range,
                seed=cfg.seed,
            )
        seeds += file_seeds(cfg.seeds.files, cfg.system.elements)
        store = self.session.store
        ids = [store.add_structure(s.atoms, self.session.name, iteration, s.source) for s in seeds]
        return {"structures": len(set(ids))}

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        return {"structures": result["structures"]}
