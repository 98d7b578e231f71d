"""Route 1: the student as LAMMPS's ML-IAP ``nn`` model on its SNAP (``sna``) descriptor.

For LAMMPS builds that know ML-IAP (``pair_style mliap model nn M descriptor sna D``) but not
the project's plugin. The same kind of per-element network as the default student, on the
bispectrum components B_i. LAMMPS computes the descriptor for the fit too, so PyTorch learns on
the numbers LAMMPS will run:

- B_i and dB_i/dr_j of every pair from ``compute snap ... bikflag 1 dgradflag 1`` (its rows
  hold -dB_i/dr_j, periodic images folded onto their atoms);
- the strain derivatives dB_i/d(epsilon) (for the stress) by central differences of
  ``compute sna/atom`` on strained cells, step :data:`STRAIN_STEP`.

The fit holds every pair's dB_i/dr_j in memory: about frames x atoms x partners x 3 x K x 4 bytes
(64-atom cells, where each atom sees nearly every other within 5 Å: 1.5 MB a frame, 0.7 GB for
the demo's 486), where the pair route's fit needs only the pair vectors.

The files are LAMMPS's own formats: the descriptor file (``rcutfac``, ``twojmax``, ``elems``,
``radelems``, ``welems``...) and the model file (``NET`` header; per element the descriptor
means ``Scale0``, their deviations ``Scale1``, then per layer and node the bias and weights).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers

from calculators.models.student.lammps_run import create_cell, lammps_instance
from calculators.models.student.network import ACTIVATIONS, ElementNetworks, element_indices
from calculators.models.student.training import (
    Batch,
    FitHistory,
    StudentSettings,
    held_out,
    reference_energies,
    targets_of,
    train,
)

#: Central-difference step of the strain derivatives (relative strain).
STRAIN_STEP = 1e-5
#: Voigt pairs, in ASE's order.
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


class MliapFileError(ValueError):
    """An ML-IAP model or descriptor file that cannot be used; the message names file and fix."""


@dataclass(frozen=True)
class SnapSpec:
    """The SNAP descriptor: ``cutoff`` (Å, every pair: radii 0.5 and ``rcutfac`` = cutoff),
    ``twojmax`` (the bispectrum's band limit), ``rfac0``; neighbour weights are Z/Z_max."""

    cutoff: float = 5.0
    twojmax: int = 6
    rfac0: float = 0.99363

    @property
    def n_descriptors(self) -> int:
        return sum(
            1
            for j1 in range(self.twojmax + 1)
            for j2 in range(j1 + 1)
            for j in range(j1 - j2, min(self.twojmax, j1 + j2) + 1, 2)
            if j >= j1
        )

    def weights(self, elements: Sequence[str]) -> list[float]:
        z = [atomic_numbers[e] for e in elements]
        return [value / max(z) for value in z]

    def compute_args(self, elements: Sequence[str]) -> str:
        """The arguments of ``compute sna/atom`` and ``compute snap`` for ``elements``."""
        radii = " ".join("0.5" for _ in elements)
        weights = " ".join(repr(w) for w in self.weights(elements))
        return (
            f"{self.cutoff!r} {self.rfac0!r} {self.twojmax} {radii} {weights} "
            "rmin0 0 bzeroflag 0 switchflag 1"
        )

    def descriptor_text(self, elements: Sequence[str]) -> str:
        """The ML-IAP ``sna`` descriptor file."""
        return "\n".join(
            [
                "# al-loop student, route 1: ML-IAP SNAP descriptor",
                f"rcutfac {self.cutoff!r}",
                f"twojmax {self.twojmax}",
                f"rfac0 {self.rfac0!r}",
                "rmin0 0",
                "bzeroflag 0",
                "switchflag 1",
                f"nelems {len(elements)}",
                f"elems {' '.join(elements)}",
                f"radelems {' '.join('0.5' for _ in elements)}",
                f"welems {' '.join(repr(w) for w in self.weights(elements))}",
                "",
            ]
        )


@dataclass
class SnapFrame:
    """One structure's descriptors and their derivatives, float64, ASE's frame."""

    species: np.ndarray  # (atoms,) element index
    B: np.ndarray  # (atoms, K)
    pair_i: np.ndarray  # (pairs,) whose descriptor
    pair_j: np.ndarray  # (pairs,) which atom moves
    grad: np.ndarray  # (pairs, 3, K) dB_i/dr_j
    strain: np.ndarray  # (atoms, 3, 3, K) dB_i/d(epsilon)
    volume: float


def _descriptors(
    atoms: Atoms, elements: Sequence[str], spec: SnapSpec, gradients: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """B (atoms, K), and with ``gradients`` the rows (i, j, a, -dB_i/dr_j^a) in LAMMPS's
    frame."""
    from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY

    lmp = lammps_instance()
    try:
        create_cell(lmp, atoms, elements)
        lmp.command(f"pair_style zero {spec.cutoff!r}")
        lmp.command("pair_coeff * *")
        args = spec.compute_args(elements)
        if gradients:
            lmp.command(f"compute d all snap {args} bikflag 1 dgradflag 1")
        else:
            lmp.command(f"compute d all sna/atom {args}")
        lmp.command("run 0")
        n = len(atoms)
        if gradients:
            array = np.array(lmp.numpy.extract_compute("d", LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY))
            return array[:n, 3:], array[n : n + 3 * n * n]
        ids = np.array(lmp.numpy.extract_atom("id")[:n], dtype=int)
        b = np.array(lmp.numpy.extract_compute("d", LMP_STYLE_ATOM, LMP_TYPE_ARRAY)[:n])
        return b[np.argsort(ids)], None
    finally:
        lmp.close()


def snap_frame(atoms: Atoms, elements: Sequence[str], spec: SnapSpec) -> SnapFrame:
    """The descriptors of ``atoms`` and their position and strain derivatives (14 ``run 0``)."""
    from ase.calculators.lammps import Prism

    species = element_indices(atoms, elements)
    b, rows = _descriptors(atoms, elements, spec, gradients=True)
    assert rows is not None
    rows = rows[np.abs(rows[:, 3:]).max(1) > 0]
    i, j, a = (rows[:, k].astype(np.int64) for k in range(3))
    pairs, inverse = np.unique(i * len(atoms) + j, return_inverse=True)
    lammps_grad = np.zeros((len(pairs), 3, b.shape[1]))
    lammps_grad[inverse, a] = -rows[:, 3:]
    prism = Prism(atoms.cell.array, atoms.pbc)
    grad = prism.vector_to_ase(lammps_grad.transpose(0, 2, 1)).transpose(0, 2, 1)
    strain = np.zeros((len(atoms), 3, 3, b.shape[1]))
    for p, q in VOIGT:
        sides = []
        for sign in (1, -1):
            deformation = np.eye(3)
            deformation[p, q] += sign * STRAIN_STEP / (1 if p == q else 2)
            deformation[q, p] += 0 if p == q else sign * STRAIN_STEP / 2
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
            sides.append(_descriptors(strained, elements, spec, gradients=False)[0])
        strain[:, p, q] = strain[:, q, p] = (sides[0] - sides[1]) / (2 * STRAIN_STEP)
    return SnapFrame(
        species=species,
        B=b,
        pair_i=pairs // len(atoms),
        pair_j=pairs % len(atoms),
        grad=grad,
        strain=strain,
        volume=float(atoms.get_volume()),
    )


@dataclass
class SnapInputs:
    """Frames' descriptors concatenated, in torch: the model's inputs."""

    species: torch.Tensor
    B: torch.Tensor
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    grad: torch.Tensor
    strain: torch.Tensor
    structure: torch.Tensor
    volumes: torch.Tensor


def snap_inputs(frames: Sequence[SnapFrame], dtype: torch.dtype) -> SnapInputs:
    starts = np.cumsum([0] + [len(f.species) for f in frames])[:-1]

    def cat(name: str, shift: bool = False) -> np.ndarray:
        return np.concatenate(
            [getattr(f, name) + (s if shift else 0) for f, s in zip(frames, starts, strict=True)]
        )

    ints = {
        "species": cat("species"),
        "pair_i": cat("pair_i", shift=True),
        "pair_j": cat("pair_j", shift=True),
        "structure": np.repeat(np.arange(len(frames)), [len(f.species) for f in frames]),
    }
    floats = {
        "B": cat("B"),
        "grad": cat("grad"),
        "strain": cat("strain"),
        "volumes": np.array([f.volume for f in frames]),
    }
    return SnapInputs(
        **{k: torch.as_tensor(v, dtype=torch.int64) for k, v in ints.items()},
        **{k: torch.as_tensor(v, dtype=dtype) for k, v in floats.items()},
    )


class SnapNetwork(torch.nn.Module):
    """One network per element on the standardised bispectrum: ``E_i = NN_a((B_i - mean_a) /
    std_a)``, the output layer's bias holding the element's reference energy."""

    def __init__(
        self,
        elements: Sequence[str],
        spec: SnapSpec | None = None,
        hidden: Sequence[int] = (32, 32),
        activation: str = "tanh",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.elements = list(elements)
        self.spec = spec or SnapSpec()
        self.hidden = list(hidden)
        self.activation = activation
        k = self.spec.n_descriptors
        generator = torch.Generator().manual_seed(seed)
        self.networks = ElementNetworks(len(self.elements), k, self.hidden, activation, generator)
        self.register_buffer("mean", torch.zeros(len(self.elements), k, dtype=torch.float64))
        self.register_buffer("std", torch.ones(len(self.elements), k, dtype=torch.float64))

    def forward(
        self, inputs: SnapInputs, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energy (structures,), forces (atoms, 3), stress (structures, 3, 3), ASE's sign."""
        b = inputs.B.detach().requires_grad_(True)
        atom_energies = self.networks.energies(b, inputs.species, self.mean, self.std)
        n_structures = len(inputs.volumes)
        energy = b.new_zeros(n_structures).index_add(0, inputs.structure, atom_energies)
        (beta,) = torch.autograd.grad(atom_energies.sum(), b, create_graph=create_graph)
        per_pair = (inputs.grad * beta[inputs.pair_i][:, None, :]).sum(2)
        forces = -b.new_zeros((len(inputs.species), 3)).index_add(0, inputs.pair_j, per_pair)
        per_atom = (inputs.strain * beta[:, None, None, :]).sum(3)
        virial = b.new_zeros((n_structures, 3, 3)).index_add(0, inputs.structure, per_atom)
        return energy, forces, virial / inputs.volumes[:, None, None]

    def set_normalisation(self, b: np.ndarray, species: np.ndarray) -> None:
        """Descriptor means and deviations per element, from the training set's atoms."""
        with torch.no_grad():
            for a in range(len(self.elements)):
                mine = torch.as_tensor(b[species == a])
                if len(mine) < 2:
                    continue
                self.mean[a] = mine.mean(0)
                self.std[a] = mine.std(0).clamp_min(1e-6)


def fit_snap_student(
    frames: Sequence[Atoms],
    elements: Sequence[str],
    settings: StudentSettings | None = None,
    spec: SnapSpec | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[SnapNetwork, FitHistory]:
    """An ML-IAP nn student fitted to ``frames`` (energies, forces, stress) like the default
    student (:func:`~calculators.models.student.training.train`: same loss and schedule)."""
    settings = settings or StudentSettings()
    spec = spec or SnapSpec(cutoff=settings.cutoff)
    rng = np.random.default_rng(settings.seed)
    fit, validation = held_out(list(frames), settings, rng)
    if not fit:
        raise ValueError("student: no frames to fit")
    # the pair gradients are most of the memory (atoms x neighbours x 3 x K per frame): kept in
    # the fit's dtype, and each frame's handed over to its batch
    described = {}
    for atoms in [*fit, *validation]:
        frame = snap_frame(atoms, elements, spec)
        frame.grad = frame.grad.astype(settings.dtype)
        frame.strain = frame.strain.astype(settings.dtype)
        described[id(atoms)] = frame
    model = SnapNetwork(elements, spec, settings.hidden, seed=settings.seed)
    model.set_normalisation(
        np.concatenate([described[id(a)].B for a in fit]),
        np.concatenate([described[id(a)].species for a in fit]),
    )
    with torch.no_grad():
        for a, e0 in enumerate(reference_energies(fit, elements)):
            model.networks[a][-1].bias.fill_(e0)
    dtype = getattr(torch, settings.dtype)

    def batch(chunk: Sequence[Atoms]) -> Batch:
        inputs = snap_inputs([described.pop(id(a)) for a in chunk], dtype)
        return Batch(inputs, targets_of(chunk, dtype))

    history = train(model, fit, validation, batch, settings, rng, on_epoch)
    return model, history


def predict(model: SnapNetwork, atoms: Atoms) -> dict[str, Any]:
    """The PyTorch model on ``atoms`` (descriptors from LAMMPS): energy, forces, Voigt stress."""
    from ase.stress import full_3x3_to_voigt_6_stress

    inputs = snap_inputs([snap_frame(atoms, model.elements, model.spec)], torch.float64)
    energy, forces, stress = model(inputs)
    return {
        "energy": float(energy[0].detach()),
        "forces": forces.detach().numpy().copy(),
        "stress": full_3x3_to_voigt_6_stress(stress[0].detach().numpy()),
    }


def _numbers(values: Sequence[float] | np.ndarray, per_line: int = 5) -> list[str]:
    values = [f"{float(v):.17g}" for v in values]
    return [" ".join(values[k : k + per_line]) for k in range(0, len(values), per_line)]


def write_mliap(model: SnapNetwork, stem: Path | str) -> tuple[Path, Path]:
    """``<stem>.mliap.model`` and ``<stem>.mliap.descriptor``; returns their paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    k = model.spec.n_descriptors
    sizes = [*model.hidden, 1]
    layers = " ".join(f"{model.activation} {n}" for n in model.hidden) + " linear 1"
    n_params = sum((a + 1) * b for a, b in itertools.pairwise([k, *sizes]))
    lines = [
        f"# al-loop student, route 1 (ML-IAP nn on SNAP): elements {' '.join(model.elements)}",
        "# total_species nparams",
        f"{len(model.elements)} {n_params}",
        "# NET ndescriptors nlayers (activation nodes) per layer",
        f"NET {k} {len(sizes)} {layers}",
    ]
    for a, element in enumerate(model.elements):
        coefficients: list[float] = []
        for layer in model.networks[a]:
            weight = layer.weight.detach().numpy()
            bias = layer.bias.detach().numpy()
            for n in range(len(bias)):
                coefficients += [bias[n], *weight[n]]
        lines += [f"# {element}: Scale0 (descriptor means)", *_numbers(model.mean[a].numpy())]
        lines += ["# Scale1 (descriptor deviations)", *_numbers(model.std[a].numpy())]
        lines += ["# Coefficients (per layer and node: bias, weights)", *_numbers(coefficients)]
    model_file = stem.with_name(stem.name + ".mliap.model")
    model_file.write_text("\n".join(lines) + "\n")
    descriptor_file = stem.with_name(stem.name + ".mliap.descriptor")
    descriptor_file.write_text(model.spec.descriptor_text(model.elements))
    return model_file, descriptor_file


def _words(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise MliapFileError(f"{path}: cannot be read ({error})") from error
    return [line.split("#")[0].split() for line in text.splitlines() if line.split("#")[0].strip()]


def read_descriptor(path: Path | str) -> tuple[SnapSpec, list[str]]:
    """The spec and elements of an ML-IAP ``sna`` descriptor file that this route can fit."""
    path = Path(path)
    values: dict[str, list[str]] = {w[0]: w[1:] for w in _words(path)}
    for key in ("rcutfac", "twojmax", "elems", "radelems", "welems"):
        if key not in values:
            raise MliapFileError(f"{path}: no {key!r} line; write it with al-loop's write_mliap")
    for key, expected in (("bzeroflag", "0"), ("switchflag", "1"), ("rmin0", "0")):
        if values.get(key, [None])[0] not in (expected, str(float(expected))):
            raise MliapFileError(f"{path}: {key} must be {expected} for an al-loop student")
    try:
        spec = SnapSpec(
            float(values["rcutfac"][0]),
            int(values["twojmax"][0]),
            float(values.get("rfac0", ["0.99363"])[0]),
        )
    except ValueError as error:
        raise MliapFileError(f"{path}: {error}") from error
    return spec, values["elems"]


def read_mliap(model_file: Path | str, descriptor_file: Path | str) -> SnapNetwork:
    """The model of a pair of ML-IAP files, after checking that they match each other (element
    count, descriptor count: LAMMPS itself does not check the latter)."""
    model_file, descriptor_file = Path(model_file), Path(descriptor_file)
    spec, elements = read_descriptor(descriptor_file)
    words = _words(model_file)
    try:
        n_elements, n_params = int(words[0][0]), int(words[0][1])
        net = words[1]
        if net[0] != "NET":
            raise ValueError("the second line is not the NET header")
        k, n_layers = int(net[1]), int(net[2])
        shape = [(net[3 + 2 * m], int(net[4 + 2 * m])) for m in range(n_layers)]
    except (IndexError, ValueError) as error:
        raise MliapFileError(f"{model_file}: not an ML-IAP nn model file ({error})") from error
    if n_elements != len(elements):
        raise MliapFileError(
            f"{model_file}: {n_elements} elements, but {descriptor_file} has "
            f"{len(elements)} ({' '.join(elements)}); use the descriptor file written with it"
        )
    if k != spec.n_descriptors:
        raise MliapFileError(
            f"{model_file}: {k} descriptors, but twojmax {spec.twojmax} in {descriptor_file} "
            f"gives {spec.n_descriptors}; use the descriptor file written with the model"
        )
    activations = {a for a, _ in shape[:-1]}
    if shape[-1] != ("linear", 1) or len(activations) > 1 or not activations <= set(ACTIVATIONS):
        raise MliapFileError(
            f"{model_file}: layers {shape}: this reader takes tanh hidden layers and one linear "
            "output node"
        )
    numbers = np.array([float(x) for w in words[2:] for x in w])
    per_element = 2 * k + n_params
    if len(numbers) != n_elements * per_element:
        raise MliapFileError(
            f"{model_file}: {len(numbers)} numbers after the header, expected "
            f"{n_elements * per_element} ({n_elements} x (2 x {k} scales + {n_params}))"
        )
    hidden = [n for _, n in shape[:-1]]
    model = SnapNetwork(elements, spec, hidden, activation=shape[0][0] if hidden else "tanh")
    with torch.no_grad():
        for a in range(n_elements):
            block = numbers[a * per_element : (a + 1) * per_element]
            model.mean[a] = torch.from_numpy(block[:k])
            model.std[a] = torch.from_numpy(block[k : 2 * k])
            offset = 2 * k
            for layer in model.networks[a]:
                n_in, n_out = layer.in_features, layer.out_features
                table = block[offset : offset + n_out * (n_in + 1)].reshape(n_out, n_in + 1)
                layer.bias.copy_(torch.from_numpy(table[:, 0]))
                layer.weight.copy_(torch.from_numpy(table[:, 1:]))
                offset += n_out * (n_in + 1)
    return model


def mliap_pair_commands(
    model_file: Path | str, descriptor_file: Path | str, type_elements: Sequence[str]
) -> list[str]:
    """``pair_style mliap`` and ``pair_coeff`` for atom types 1..n holding ``type_elements``,
    after :func:`read_mliap` checked the files."""
    model = read_mliap(model_file, descriptor_file)
    unknown = sorted(set(type_elements) - set(model.elements))
    if unknown:
        raise MliapFileError(
            f"{descriptor_file}: elements {' '.join(model.elements)}, not {' '.join(unknown)}"
        )
    model_file, descriptor_file = Path(model_file).resolve(), Path(descriptor_file).resolve()
    return [
        f"pair_style mliap model nn {model_file} descriptor sna {descriptor_file}",
        f"pair_coeff * * {' '.join(type_elements)}",
    ]
