"""Label: the structures an iteration asked for, through FireWorks (submitted once, then local
rockets until no Firework is ready), labelled with the campaign's oracle.

The stage is done when every Firework of the iteration has ended (COMPLETED, FIZZLED, ...): the
labels, failed ones included, are then all in the database. It also labels every structure of
the campaign that has no label with the current physics: after an accepted physics change, the
first label stage run again (its record holds the old physics) labels the whole campaign anew.
"""

from __future__ import annotations

import logging
from typing import Any

from al_loop.stages.base import Stage

log = logging.getLogger(__name__)


class LabelStage(Stage):
    name = "label"

    def __init__(self, *args: Any, workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers

    def wanted(self, iteration: int) -> bool:
        """Iteration 0 labels its seeds; a later one only what it selected."""
        if iteration == 0:
            return True
        selected = self.session.log.result(iteration, "select")
        return bool(selected and selected["structure_ids"])

    def structure_ids(self, iteration: int) -> list[str]:
        """What the iteration asked for, then any structure of the campaign without a label
        with the current physics."""
        store, name = self.session.store, self.session.name
        asked = store.structure_ids(name, iteration)
        missing = store.unlabelled_structure_ids(name, self.session.label_hashes)
        return list(dict.fromkeys([*asked, *missing]))

    def compute(self, iteration: int) -> dict[str, Any]:
        session, cfg = self.session, self.session.config
        oracle, fireworks = session.oracle, session.fireworks
        ids = self.structure_ids(iteration)
        added = fireworks.submit_labels(
            ids, iteration, oracle, session.elements, cfg.launcher.batch_size
        )
        repaired = fireworks.rerun_lost()
        states = fireworks.states(iteration)
        self.emit(
            iteration,
            "step",
            structures=len(ids),
            fireworks=states,
            submitted="now" if added else "before",
            repaired_lost_runs=len(repaired),
        )
        pending = fireworks.pending(states)
        if pending:
            workers = self.workers or cfg.launcher.workers
            self.emit(iteration, "step", local_launchers=workers, pending_fireworks=pending)
            codes = fireworks.run_local(workers)
            if any(codes):
                log.warning(
                    "rocket launchers exited with codes %s; see %s", codes, fireworks.launch_dir
                )
            states = fireworks.states(iteration)
        return {
            "structures": len(ids),
            "fireworks": states,
            "physics_hash": session.physics_hash,
            "labels_by_status": session.store.label_counts(ids, session.label_hashes),
        }

    def current(self, result: dict[str, Any]) -> bool:
        return result.get("physics_hash") in self.session.label_hashes

    def complete(self, result: dict[str, Any]) -> bool:
        if self.session.fireworks.pending(result["fireworks"]):
            log.warning(
                "some labelling Fireworks are not finished (%s): run `al-loop launch` or "
                "`lpad detect_lostruns --rerun` and then `al-loop run` again",
                result["fireworks"],
            )
            return False
        return True

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        return {"labels": result["labels_by_status"], "fireworks": result["fireworks"]}

    def reuse(self, iteration: int, result: dict[str, Any]) -> dict[str, Any]:
        """What is true now (a rerun may have changed it), not the counts recorded then."""
        ids = self.session.store.structure_ids(self.session.name, iteration)
        return {
            **result,
            "fireworks": self.session.fireworks.states(iteration),
            "labels_by_status": self.session.store.label_counts(ids, self.session.label_hashes),
        }
