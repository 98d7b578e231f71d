"""Distil: the converged committee (the teacher) labels a large MD sample; a fast student is
fitted to it and to the DFT labels, checked (model validator, LAMMPS agreement), measured
(:func:`al_loop.distillation.report`), and stored with its provenance.

The stage is keyed by the teacher's iteration. The sample goes to the database (GridFS, with
the teacher's model ids) before the fit starts, so a run stopped during the fit reuses it. The
student's file, its LAMMPS include file and the parity plots are in ``<workdir>/student``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import numpy as np
from ase import Atoms

from al_loop import plots
from al_loop.committee import labelled_structures, load_committee
from al_loop.distillation import (
    crystal_cells,
    crystal_factors,
    crystal_window_GPa,
    frames_bytes,
    frames_read,
    grown,
    report,
    sample_conditions,
    sample_key,
    split,
    student_settings,
    teacher_frames,
    usable,
    weighted,
)
from al_loop.exploration import MDSettings, explore
from al_loop.phase.candidates import file_candidates, prototype_candidates, structure_sha256
from al_loop.stages.base import Stage
from calculators.models import ModelValidationError, Tolerances, validate_model
from calculators.models.student import routes
from calculators.models.student.training import settings_record
from database.documents import software_versions

log = logging.getLogger(__name__)

#: The parity panels of the report: (quantity, unit, reference key, predicted key).
PARITY = (
    ("energy", "eV/atom", "energy_reference_eV_atom", "energy_predicted_eV_atom"),
    ("force", "eV/Å", "forces_reference", "forces_predicted"),
    ("pressure", "GPa", "pressure_reference_GPa", "pressure_predicted_GPa"),
)


def teacher_iteration(session: Any) -> int:
    """The iteration of the last trained committee."""
    trained = [r["iteration"] for r in session.log.records("train")]
    if not trained:
        raise ValueError(
            f"campaign {session.name!r} has no trained committee yet: run `al-loop run` first"
        )
    return max(trained)


class DistilStage(Stage):
    name = "distil"

    def __init__(self, *args: Any, threads: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads = threads

    def start_figures(self, iteration: int) -> dict[str, Any]:
        return {
            "teacher_iteration": iteration,
            "trajectories": len(sample_conditions(self.session.config)),
        }

    def crystals(self) -> list[tuple[str, Atoms]]:
        """The phase stage's prototypes and files, named, for the sample (none when
        ``student.sample_crystal_volumes`` is 0)."""
        cfg = self.session.config
        if not cfg.student.sample_crystal_volumes:
            return []
        elements = list(cfg.system.elements)
        found = prototype_candidates(elements, cfg.phase.prototypes)
        found += file_candidates(cfg.phase.files, elements)
        return [(c.name, c.atoms) for c in found]

    def sample_key(self, docs: list[dict[str, Any]], crystals: list[tuple[str, Atoms]]) -> str:
        """The sample's identity: the teacher's files, the settings, the crystals' cells."""
        identities = [f"{name}:{structure_sha256(atoms)}" for name, atoms in crystals]
        return sample_key([d.get("sha256", "") for d in docs], self.session.config, identities)

    def sample(
        self, iteration: int, teacher: Any, docs: list[dict[str, Any]]
    ) -> tuple[str, list[Atoms]]:
        """The teacher's labelled MD frames: stored ones if this sample exists, else run now and
        stored before anything else."""
        session, cfg = self.session, self.session.config
        crystals = self.crystals()
        key = self.sample_key(docs, crystals)
        stored = session.store.distillations(session.name, "sample", key)
        if stored:
            frames = frames_read(session.store.read_file(stored[0]["file_id"]))
            self.emit(iteration, "step", sample="reused", frames=len(frames))
            return key, frames
        train, held_out = labelled_structures(session)
        pool = train + held_out
        todo = sample_conditions(cfg)
        rng = np.random.default_rng([cfg.seed, iteration, 7])
        starts = [
            grown(pool[int(i)], cfg.student.sample_min_atoms)
            for i in rng.integers(len(pool), size=len(todo))
        ]
        st, exp = cfg.student, cfg.exploration
        settings = MDSettings(
            steps=st.sample_steps,
            timestep_fs=exp.timestep_fs,
            frame_interval=st.sample_frame_interval,
            max_spread_eV_A=max(exp.max_spread_eV_A, st.max_teacher_spread_eV_A),
            heat_factor=exp.heat_factor,
        )

        def report_trajectory(trajectory: list[Atoms]) -> None:
            last = trajectory[-1].info
            self.emit(
                iteration,
                "step",
                trajectory=last["trajectory"],
                frames=len(trajectory),
                P_GPa=last["P_GPa"],
            )

        frames = explore(
            starts,
            teacher,
            todo,
            settings,
            cfg.seed * 1000 + 500 + iteration,
            report_trajectory,
            teacher.first_member(),
        )
        factors: dict[str, list[float]] = {}
        if crystals:
            window = crystal_window_GPa(cfg)
            n = st.sample_crystal_volumes
            factors = {name: crystal_factors(teacher, atoms, window, n) for name, atoms in crystals}
            named = [(name, atoms, factors[name]) for name, atoms in crystals]
            cells = crystal_cells(named, cfg.seeds.rattle_A, cfg.seed * 1000 + 600)
            frames += teacher_frames(teacher, cells)
            self.emit(iteration, "step", crystals=len(crystals), crystal_frames=len(cells))
        session.store.add_distillation(
            "sample",
            {
                "campaign": session.name,
                "key": key,
                "teacher_iteration": iteration,
                "teacher_models": [str(d["_id"]) for d in docs],
                "teacher_sha256": [d.get("sha256") for d in docs],
                "frames": len(frames),
                "settings": {k: v for k, v in st.model_dump().items() if k.startswith("sample")},
                "conditions": todo,
                "crystals": [name for name, _ in crystals],
                "crystal_volume_factors": factors,
                "software": software_versions(),
            },
            frames_bytes(frames),
        )
        return key, frames

    def compute(self, iteration: int) -> dict[str, Any]:
        session, cfg = self.session, self.session.config
        st = cfg.student
        teacher = load_committee(session, iteration, cfg.exploration.dtype)  # as in exploration
        docs = session.store.models(session.name, teacher_iteration_of(session, iteration))
        key, frames = self.sample(iteration, teacher, docs)
        reasons = [usable(f, st.max_teacher_spread_eV_A) for f in frames]
        kept = [f for f, r in zip(frames, reasons, strict=True) if not r]
        dropped = {r: reasons.count(r) for r in sorted(set(reasons)) if r}
        if len(kept) < 2:
            raise ValueError(
                f"campaign {session.name!r}: {len(kept)} of {len(frames)} sample frames are usable "
                f"({dropped}); raise student.sample_steps or student.max_teacher_spread_eV_A"
            )
        fit_frames, test_frames = split(kept, st.test_fraction, cfg.seed)
        fit_frames = weighted(fit_frames, st)
        train_labels, held_labels = labelled_structures(session)
        if st.label_source == "teacher" and train_labels:
            train_labels = teacher_frames(teacher, train_labels)
        for atoms in train_labels:
            atoms.info["weight"] = st.label_weight
        settings = student_settings(st, cfg.seed, self.threads)
        self.emit(
            iteration,
            "step",
            fitting_frames=len(fit_frames),
            labels=len(train_labels),
            test_frames=len(test_frames),
        )
        every = max(1, st.epochs // 10)

        def fitting(epoch: int, train: float, validation: float) -> None:
            if epoch % every == 0 or epoch == st.epochs - 1:
                self.emit(
                    iteration, "step", epoch=epoch, train_loss=train, validation_loss=validation
                )

        folder = session.workdir / "student"
        elements = list(cfg.system.elements)
        files, history = routes.fit(
            fit_frames + train_labels,
            elements,
            settings,
            folder / f"student-{session.name}-{iteration:03d}",
            on_epoch=fitting,
        )
        calc = routes.calculator(settings.route, files, elements)
        checked = validate_model(calc, [test_frames[0]], tolerances=Tolerances.stiff())
        if not checked.ok:
            raise ModelValidationError(checked.summary())
        agreement = routes.lammps_agreement(settings.route, files, elements, test_frames[0])
        if agreement["max_relative_difference"] is None:
            log.warning("student not checked in LAMMPS: %s", agreement["reason"])
        figures, full = report(calc, teacher, test_frames, held_labels)
        for name, value in full.items():
            if value.get("n"):
                panels = [
                    (q, u, np.asarray(value[r]).ravel(), np.asarray(value[p]).ravel())
                    for q, u, r, p in PARITY
                ]
                plots.parity_panels(
                    panels,
                    folder / f"parity-{name.replace('_', '-')}.png",
                    title=name.replace("_", " "),
                )
        lammps_file = routes.write_lammps_inputs(settings.route, files, elements, folder / "lammps")
        data = files[0].read_bytes()
        document = {
            "campaign": session.name,
            "key": student_key(key, fit_record(st, settings)),
            "teacher_iteration": iteration,
            "teacher_models": [str(d["_id"]) for d in docs],
            "sample_key": key,
            "route": settings.route,
            "sha256": hashlib.sha256(data).hexdigest(),
            # the file in GridFS is the model; the other files (route mliap: the descriptor)
            # are small text, kept here
            "companion_files": {p.name: p.read_text() for p in files[1:]},
            "elements": elements,
            "settings": fit_record(st, settings),
            "fit": {
                **history.to_document(),
                "wall_s": history.wall_s,
                "final_validation_loss": history.validation_loss[history.best_epoch],
                "grad_norm_max": max(history.grad_norm_max),
                "clipped_steps": sum(history.clipped_steps),
            },
            "frames": {
                "sample": len(frames),
                "fit": len(fit_frames),
                "test": len(test_frames),
                "dropped": dropped,
                "labels": len(train_labels),
                "held_out_labels": len(held_labels),
            },
            "validator_seconds": checked.seconds,
            "lammps_agreement": agreement,
            "report": figures,
            "software": software_versions(),
        }
        file_id = session.store.add_distillation("student", document, data)
        return {
            **{k: v for k, v in document.items() if k != "software"},
            "file_id": file_id,
            "model_files": [str(p) for p in files],
            "lammps_input": str(lammps_file),
            "threads": self.threads or os.cpu_count(),
        }

    def current(self, result: dict[str, Any]) -> bool:
        """A recorded student holds while the teacher, the sample settings and the fit settings
        are the same (a changed ``student:`` section distils again; ``threads`` aside)."""
        cfg = self.session.config
        settings = fit_record(cfg.student, student_settings(cfg.student, cfg.seed))
        teacher = teacher_iteration_of(self.session, result["teacher_iteration"])
        docs = self.session.store.models(self.session.name, teacher)
        key = self.sample_key(docs, self.crystals())
        return result.get("key") == student_key(key, settings)

    def summarize(self, result: dict[str, Any]) -> dict[str, Any]:
        vs = result["report"]["student_vs_teacher"]
        return {
            "frames": result["frames"]["fit"],
            "energy_mae_meV_atom": vs.get("energy_mae_meV_atom"),
            "force_rmse_eV_A": vs.get("force_rmse_eV_A"),
            "pressure_mae_GPa": vs.get("pressure_mae_GPa"),
        }


def fit_record(st: Any, settings: Any) -> dict[str, Any]:
    """The fit's settings as stored and keyed: the fit's own and what the stage adds to its
    frames (the labels' source and weight, the crystals' weight)."""
    return {
        **settings_record(settings),
        "label_source": st.label_source,
        "label_weight": st.label_weight,
        "crystal_weight": st.crystal_weight,
    }


def student_key(sample: str, settings: dict[str, Any]) -> str:
    """What identifies a student: its sample's key and its fit settings (not the threads)."""
    fit = {k: v for k, v in settings.items() if k != "threads"}
    return hashlib.sha256(json.dumps([sample, fit], sort_keys=True).encode()).hexdigest()[:16]


def teacher_iteration_of(session: Any, iteration: int) -> int:
    """The iteration whose stored models the committee of ``iteration`` is (a train stage that
    selected nothing reuses an earlier one)."""
    trained = session.log.result(iteration, "train")
    if trained and trained.get("reused_from") is not None:
        return int(trained["reused_from"])
    return iteration
