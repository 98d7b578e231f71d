"""The student as an ASE calculator, in PyTorch (small cells; LAMMPS for large ones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from calculators.models.interface import ModelCalculator
from calculators.models.student.model_file import read_student
from calculators.models.student.network import StudentModel, build_graph


class StudentCalculator(ModelCalculator):
    """The student in PyTorch, float64: a :class:`ModelCalculator` (passes the validator)."""

    def __init__(self, model: StudentModel | Path | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model if isinstance(model, StudentModel) else read_student(model)
        self.model.eval()

    def predict(self, atoms: Atoms) -> dict[str, Any]:
        graph = build_graph([atoms], self.model.elements, self.model.spec.cutoff, torch.float64)
        energy, forces, stress = self.model(graph)
        e = float(energy[0].detach())
        return {
            "energy": e,
            "free_energy": e,
            "forces": forces.detach().numpy().copy(),
            "stress": full_3x3_to_voigt_6_stress(stress[0].detach().numpy()),
        }
