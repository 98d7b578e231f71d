"""The student in PyTorch: its descriptor's invariances, its file, its errors, the validator."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from calculators.models import Tolerances, validate_model
from calculators.models.student.calculator import StudentCalculator
from calculators.models.student.descriptor import DescriptorSpec, features
from calculators.models.student.model_file import StudentFileError, read_student, write_student
from calculators.models.student.network import StudentModel, build_graph, pairs_within


def alloy(seed: int = 0, scale: float = 1.0) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6 * scale, cubic=True) * (2, 1, 1)
    atoms.symbols[rng.random(len(atoms)) < 0.5] = "Ni"
    atoms.rattle(0.1, seed=seed)
    return atoms


def atom_features(model: StudentModel, atoms: Atoms) -> np.ndarray:
    graph = build_graph([atoms], model.elements, model.spec.cutoff, torch.float64)
    return model.atom_features(graph, graph.vectors()).detach().numpy()


def test_monomials_and_feature_count() -> None:
    spec = DescriptorSpec(n_channels=3, lmax=2)
    assert spec.monomials[:4] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)]
    assert len(spec.monomials) == 10
    assert spec.multiplicities[4:10] == [1, 2, 2, 1, 2, 1]  # xx xy xz yy yz zz
    assert spec.n_features == 3 + 3 * 6


def test_features_do_not_change_under_rotation_or_permutation(random_student) -> None:
    model = random_student(["Cu", "Ni"])
    atoms = alloy()
    reference = atom_features(model, atoms)
    rotated = atoms.copy()
    matrix = Rotation.random(random_state=3).as_matrix()
    rotated.set_cell(atoms.cell.array @ matrix.T)
    rotated.positions = atoms.positions @ matrix.T
    np.testing.assert_allclose(atom_features(model, rotated), reference, rtol=1e-10, atol=1e-10)
    order = np.random.default_rng(0).permutation(len(atoms))
    np.testing.assert_allclose(
        atom_features(model, atoms[order]), reference[order], rtol=1e-12, atol=1e-12
    )
    # and they do see the angles: a shear that keeps every first-shell distance changes them
    assert np.abs(atom_features(model, alloy(scale=0.95)) - reference).max() > 1e-3


def test_student_passes_the_model_validator(random_student) -> None:
    # the compressed cell (nearest neighbours 2.0 Å) is stiff: a 1e-3 Å step errs by 3e-4 eV/Å
    # in the central difference (h^2 truncation: 3e-5 at 3e-4 Å), so the step is smaller here
    report = validate_model(
        StudentCalculator(random_student(["Cu", "Ni"])),
        [alloy(), alloy(1, 0.8)],
        tolerances=Tolerances.stiff(),
    )
    assert report.ok, report.summary()


@pytest.mark.parametrize("kind", ["one atom", "skewed", "slab", "molecule"])
def test_the_neighbour_list_finds_the_pairs_ase_finds(kind: str) -> None:
    from ase.build import molecule
    from ase.neighborlist import primitive_neighbor_list

    atoms = {
        "one atom": bulk("Ca", "fcc", a=5.4),
        "skewed": alloy(2, 0.9),
        "slab": bulk("Ni", "fcc", a=3.5, cubic=True) * (1, 1, 2),
        "molecule": molecule("CH4"),
    }[kind]
    if kind == "slab":
        atoms.pbc = [True, True, False]
        atoms.center(vacuum=3.0, axis=2)
    i, j, shift = pairs_within(atoms, 5.0)
    ref = primitive_neighbor_list(
        "ijS", atoms.pbc, atoms.cell.array, atoms.positions, 5.0, use_scaled_positions=False
    )
    found = sorted(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist()), strict=True))
    expected = sorted(
        zip(ref[0].tolist(), ref[1].tolist(), map(tuple, ref[2].tolist()), strict=True)
    )
    assert found == expected and len(found) > 0


def autograd_reference(model: StudentModel, graph, create_graph: bool):
    """Energy, forces and stress by autograd through the pair vectors of the reference
    descriptor (``features``): what the model's written-out chain rule must equal."""
    vectors = graph.vectors().detach().requires_grad_(True)
    species = graph.numbers_index
    pairs = species[graph.centre] * len(model.elements) + species[graph.neighbour]
    g = features(vectors, graph.centre, pairs, model.mixing, len(species), model.spec)
    atom_e = model.e0[species] + model.networks.energies(g, species, model.shift, model.scale)
    energy = atom_e.new_zeros(graph.n_structures).index_add(0, graph.structure, atom_e)
    (d_vectors,) = torch.autograd.grad(energy.sum(), vectors, create_graph=create_graph)
    forces = torch.zeros_like(graph.positions).index_add(0, graph.centre, d_vectors)
    forces = forces.index_add(0, graph.neighbour, -d_vectors)
    virial = torch.zeros((graph.n_structures, 3, 3), dtype=forces.dtype).index_add(
        0, graph.pair_structure, vectors.detach().unsqueeze(2) * d_vectors.unsqueeze(1)
    )
    return energy, forces, virial / graph.volumes[:, None, None]


def test_the_chain_rule_equals_autograd_through_the_descriptor() -> None:
    elements = ["Ca", "Fe", "Ni"]
    cells = []
    for seed in range(2):
        atoms = bulk("Fe", "bcc", a=2.8, cubic=True) * (2, 2, 2)
        atoms.symbols[[1, 5, 9 + seed]] = "Ni"
        atoms.symbols[[2, 7]] = "Ca"
        atoms.rattle(0.1, seed=seed)
        atoms.set_cell(atoms.cell.array @ [[1.02, 0.01, 0], [0, 0.97, 0], [0, 0, 1]], True)
        cells.append(atoms)
    model = StudentModel(elements, DescriptorSpec(n_channels=4, lmax=3), (8, 8), seed=3)
    graph = build_graph(cells, elements, model.spec.cutoff, torch.float64)
    model.set_normalisation(graph)
    for ours, reference in zip(model(graph), autograd_reference(model, graph, False), strict=True):
        np.testing.assert_allclose(ours.detach(), reference.detach(), rtol=1e-10, atol=1e-11)
    # and the fit's gradients of a force and stress loss, through the second derivative
    parameters = [p for p in model.parameters()]

    def loss_gradient(outputs) -> list[torch.Tensor]:
        _, forces, stress = outputs
        value = (forces**2).sum() + 100 * (stress**2).sum()
        grads = torch.autograd.grad(value, parameters, allow_unused=True)
        return [
            torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads, strict=True)
        ]

    ours = loss_gradient(model(graph, create_graph=True))
    reference = loss_gradient(autograd_reference(model, graph, True))
    assert max(float(r.abs().max()) for r in reference) > 1e-3  # not all zero
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_file_reads_back_to_the_same_numbers(tmp_path: Path, random_student) -> None:
    model = random_student(["Cu", "Ni", "Al"])
    path = write_student(model, tmp_path / "m.student")
    again = read_student(path)
    assert again.elements == ["Cu", "Ni", "Al"]
    assert again.spec == model.spec and again.hidden == model.hidden
    for (name, a), (_, b) in zip(
        model.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    atoms = alloy()
    atoms.symbols[0] = "Al"
    first, second = (StudentCalculator(m).predict(atoms.copy()) for m in (model, again))
    assert first["energy"] == second["energy"]
    assert np.array_equal(first["forces"], second["forces"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("alloop-student 2", "alloop-student 1"), "format version 1"),
        (lambda t: t.replace("layer 44 16", "layer 40 16", 1), "declared 44x16"),  # 4 + 4 x 10
        (lambda t: t.replace(" 3 4 44\n", " 2 4 44\n", 1), "declares 44 features; its shape"),
        (lambda t: t[: len(t) // 2], "ends early"),
        (lambda t: t.replace("end\n", "end 1\n"), "after 'end'"),
        (lambda t: t.replace("mixing ", "mixing x", 1), "expected numbers"),
    ],
)
def test_a_broken_file_names_itself_and_what_is_wrong(
    tmp_path: Path, random_student, edit, message
) -> None:
    path = write_student(random_student(["Cu", "Ni"]), tmp_path / "m.student")
    path.write_text(edit(path.read_text()))
    with pytest.raises(StudentFileError, match=message) as error:
        read_student(path)
    assert str(path) in str(error.value)


def test_atoms_of_an_element_the_model_does_not_know_are_refused(random_student) -> None:
    atoms = alloy()
    atoms.symbols[0] = "Al"
    with pytest.raises(ValueError, match="knows Cu, Ni, not Al"):
        StudentCalculator(random_student(["Cu", "Ni"])).predict(atoms)


def emt_cells(n: int) -> list[Atoms]:
    """``n`` rattled Cu-Ni cells labelled by EMT, slightly compressed one by one."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    cells = []
    for k in range(n):
        atoms = alloy(k, scale=0.95 + 0.005 * k)
        atoms.calc = EMT()
        results = {key: atoms.calc.get_property(key, atoms) for key in ("energy", "forces")}
        results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        cells.append(atoms)
    return cells


def test_the_fit_learns_emt_and_returns_a_float64_model() -> None:
    from calculators.models.student.training import StudentSettings, fit_student

    cells = emt_cells(24)
    settings = StudentSettings(
        cutoff=4.5,
        n_channels=4,
        hidden=(16,),
        epochs=30,
        learning_rate=1e-2,
        final_learning_rate=5e-4,
        seed=3,
    )
    model, history = fit_student(cells, ["Cu", "Ni"], settings)
    assert history.validation_loss[history.best_epoch] < 0.2 * history.validation_loss[0]
    assert model.mixing.dtype == torch.float64 and model.shift.dtype == torch.float64
    forces = np.concatenate([a.get_forces() for a in cells[:4]])
    predicted = np.concatenate(
        [StudentCalculator(model).predict(a.copy())["forces"] for a in cells[:4]]
    )
    assert np.sqrt(np.mean((predicted - forces) ** 2)) < 0.5 * np.sqrt(np.mean(forces**2))


@pytest.mark.parametrize("limit", [None, 1e-3])
def test_the_fit_records_gradient_norms_and_clips_them_when_asked(limit: float | None) -> None:
    from calculators.models.student.training import StudentSettings, fit_student

    settings = StudentSettings(
        cutoff=4.5, n_channels=2, hidden=(8,), epochs=2, batch_size=4, clip_grad_norm=limit
    )
    _, history = fit_student(emt_cells(10), ["Cu", "Ni"], settings)  # 9 fit: 3 steps
    assert len(history.grad_norm_max) == 2 and min(history.grad_norm_max) > 1e-3
    assert history.clipped_steps == ([0, 0] if limit is None else [3, 3])


def test_the_fit_stops_after_patience_epochs_without_a_better_validation_loss() -> None:
    from calculators.models.student.training import StudentSettings, fit_student

    settings = StudentSettings(
        cutoff=4.5, n_channels=2, hidden=(8,), epochs=40, learning_rate=3e-2, patience=2, seed=1
    )
    _, history = fit_student(emt_cells(12), ["Cu", "Ni"], settings)
    run = len(history.validation_loss)
    assert history.stopped_early and run < 40  # 2 epochs without progress come long before 40
    assert run - 1 - history.best_epoch == 2  # it stopped exactly `patience` epochs past the best
    document = history.to_document()
    assert document["epochs_run"] == run and len(document["train_loss"]) == run


def test_a_fit_that_never_beats_its_first_epoch_says_so() -> None:
    from calculators.models.student.training import (
        EPOCHS_TO_JUDGE,
        StudentFitError,
        StudentSettings,
        fit_student,
    )

    frozen = StudentSettings(  # a rate so small the parameters cannot move in float32
        cutoff=4.5,
        n_channels=2,
        hidden=(8,),
        epochs=100,
        learning_rate=1e-30,
        final_learning_rate=1e-30,
        patience=EPOCHS_TO_JUDGE,
    )
    with pytest.raises(StudentFitError, match=r"lowest at epoch 0 .* student\.learning_rate"):
        fit_student(emt_cells(10), ["Cu", "Ni"], frozen)


def test_the_weight_average_follows_each_step_and_is_what_the_fit_keeps() -> None:
    """The average moves by (1 - decay) of the gap per step; swapped in and out, the model's
    own weights come back; a fit with it returns the average (not the last raw weights)."""
    from calculators.models.student.training import StudentSettings, WeightAverage, fit_student

    model = torch.nn.Linear(2, 1)
    average = WeightAverage(model, 0.9)
    old = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)
    assert torch.allclose(average.values["weight"], old + 0.1)
    raw = average.swap_in(model)
    assert torch.allclose(model.weight, old + 0.1)
    model.load_state_dict(raw)
    assert torch.allclose(model.weight, old + 1.0)

    settings = StudentSettings(
        cutoff=4.5, n_channels=2, hidden=(8,), epochs=6, learning_rate=1e-2, seed=2
    )
    plain, _ = fit_student(emt_cells(12), ["Cu", "Ni"], settings)
    averaged, history = fit_student(
        emt_cells(12), ["Cu", "Ni"], dataclasses.replace(settings, ema_decay=0.99)
    )
    assert len(history.validation_loss) == 6
    assert not torch.allclose(plain.mixing, averaged.mixing)  # same seed, same steps
