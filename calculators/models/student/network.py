"""The student: one fully connected network per element on the descriptor's invariants.

``E = sum_i (e0[a_i] + NN_{a_i}((G_i - shift_a) / scale_a))``; forces and stress are exact
derivatives of E (autograd through the pair vectors). The model is saved as one text file
(:mod:`calculators.models.student.model_file`) that the LAMMPS pair style reads too.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list

from calculators.models.student.descriptor import DescriptorSpec, features

#: Activations the LAMMPS pair style implements, by name.
ACTIVATIONS = {"tanh": torch.tanh}


@dataclass
class Graph:
    """One or more structures as pairs within the cutoff: what the model needs, in torch."""

    numbers_index: torch.Tensor  # (atoms,) element index of each atom
    centre: torch.Tensor  # (pairs,) i
    neighbour: torch.Tensor  # (pairs,) j
    offsets: torch.Tensor  # (pairs, 3) Cartesian image shift of j, Å
    positions: torch.Tensor  # (atoms, 3)
    structure: torch.Tensor  # (atoms,) index of each atom's structure
    pair_structure: torch.Tensor  # (pairs,)
    volumes: torch.Tensor  # (structures,)

    @property
    def n_structures(self) -> int:
        return len(self.volumes)

    def vectors(self) -> torch.Tensor:
        return self.positions[self.neighbour] - self.positions[self.centre] + self.offsets


def element_indices(atoms: Atoms, elements: Sequence[str]) -> np.ndarray:
    """Each atom's index in ``elements``; an element the model does not know is a clear error."""
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(elements))
    if unknown:
        raise ValueError(
            f"student model: it knows {', '.join(elements)}, not {', '.join(unknown)}; "
            "distil a student on a campaign with these elements"
        )
    lookup = {symbol: k for k, symbol in enumerate(elements)}
    return np.array([lookup[s] for s in atoms.get_chemical_symbols()], dtype=np.int64)


def build_graph(
    structures: Sequence[Atoms], elements: Sequence[str], cutoff: float, dtype: torch.dtype
) -> Graph:
    """The pairs of every structure (periodic images included), concatenated."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in Graph.__dataclass_fields__}
    start = 0
    for k, atoms in enumerate(structures):
        i, j, shift = primitive_neighbor_list(
            "ijS", atoms.pbc, atoms.cell.array, atoms.positions, cutoff, use_scaled_positions=False
        )
        parts["numbers_index"].append(element_indices(atoms, elements))
        parts["centre"].append(i + start)
        parts["neighbour"].append(j + start)
        parts["offsets"].append(shift @ atoms.cell.array)
        parts["positions"].append(atoms.positions)
        parts["structure"].append(np.full(len(atoms), k))
        parts["pair_structure"].append(np.full(len(i), k))
        parts["volumes"].append(np.array([atoms.get_volume() if atoms.pbc.all() else 0.0]))
        start += len(atoms)
    ints = {"numbers_index", "centre", "neighbour", "structure", "pair_structure"}
    return Graph(
        **{
            key: torch.as_tensor(np.concatenate(value), dtype=torch.int64 if key in ints else dtype)
            for key, value in parts.items()
        }
    )


class ElementNetworks(torch.nn.ModuleList):
    """One fully connected network per element, ``n_in -> hidden -> 1``, float64: Glorot-uniform
    weights and zero biases from ``generator``. Both student routes use it."""

    def __init__(
        self,
        n_elements: int,
        n_in: int,
        hidden: Sequence[int],
        activation: str,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"student: activation {activation!r} is not one of {list(ACTIVATIONS)}"
            )
        self.activation = activation
        sizes = [n_in, *hidden, 1]
        for _ in range(n_elements):
            layers = torch.nn.ModuleList(
                torch.nn.Linear(a, b, dtype=torch.float64) for a, b in itertools.pairwise(sizes)
            )
            for layer in layers:
                bound = (6.0 / (layer.in_features + layer.out_features)) ** 0.5
                with torch.no_grad():
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.zero_()
            self.append(layers)

    def energies(
        self, x: torch.Tensor, species: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        """Each atom's network output on its inputs ``x`` standardised by its element's
        ``shift`` and ``scale``: (atoms,)."""
        act = ACTIVATIONS[self.activation]
        out = x.new_zeros(len(species))
        for a, layers in enumerate(self):
            mine = species == a
            if not bool(mine.any()):
                continue
            h = (x[mine] - shift[a]) / scale[a]
            for layer in layers[:-1]:
                h = act(layer(h))
            out = out.index_add(0, mine.nonzero()[:, 0], layers[-1](h)[:, 0])
        return out


class StudentModel(torch.nn.Module):
    """The descriptor's trained mixing, and one network per element."""

    def __init__(
        self,
        elements: Sequence[str],
        spec: DescriptorSpec | None = None,
        hidden: Sequence[int] = (32, 32),
        activation: str = "tanh",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.elements = list(elements)
        self.spec = spec = spec or DescriptorSpec()
        self.hidden = list(hidden)
        self.activation = activation
        generator = torch.Generator().manual_seed(seed)
        n = len(self.elements)
        shape = (n * n, spec.n_channels, spec.n_basis)
        mixing = torch.randn(shape, generator=generator, dtype=torch.float64) / spec.n_basis**0.5
        self.mixing = torch.nn.Parameter(mixing)
        self.networks = ElementNetworks(n, spec.n_features, self.hidden, activation, generator)
        self.register_buffer("e0", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("shift", torch.zeros(n, spec.n_features, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(n, spec.n_features, dtype=torch.float64))

    def atom_features(self, graph: Graph, vectors: torch.Tensor) -> torch.Tensor:
        species = graph.numbers_index
        pair_species = species[graph.centre] * len(self.elements) + species[graph.neighbour]
        return features(vectors, graph.centre, pair_species, self.mixing, len(species), self.spec)

    def atom_energies(self, graph: Graph, vectors: torch.Tensor) -> torch.Tensor:
        """E_i of every atom, eV."""
        g = self.atom_features(graph, vectors)
        species = graph.numbers_index
        return self.e0[species] + self.networks.energies(g, species, self.shift, self.scale)

    def forward(
        self, graph: Graph, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energy (structures,), forces (atoms, 3) and stress (structures, 3, 3), ASE's sign:
        ``sigma = (1/V) sum_pairs r_ij (x) dE/dr_ij``."""
        vectors = graph.vectors().detach().requires_grad_(True)
        atom_energies = self.atom_energies(graph, vectors)
        energy = vectors.new_zeros(graph.n_structures).index_add(0, graph.structure, atom_energies)
        (d_vectors,) = torch.autograd.grad(
            energy.sum(), vectors, create_graph=create_graph, allow_unused=True
        )
        if d_vectors is None:  # no pairs at all
            d_vectors = torch.zeros_like(vectors)
        n_atoms = len(graph.numbers_index)
        forces = vectors.new_zeros((n_atoms, 3))
        forces = forces.index_add(0, graph.centre, d_vectors).index_add(
            0, graph.neighbour, -d_vectors
        )
        virial = vectors.new_zeros((graph.n_structures, 3, 3)).index_add(
            0, graph.pair_structure, vectors.unsqueeze(2) * d_vectors.unsqueeze(1)
        )
        volumes = graph.volumes.clamp_min(1e-12)
        return energy, forces, virial / volumes[:, None, None]

    def set_normalisation(self, graph: Graph) -> None:
        """Feature shift and scale per element from ``graph``'s atoms (the training set).

        Every feature is shifted by its mean. The degree-0 moments are scaled by their own
        standard deviations; the invariants, all of them, by one common scale (the mean standard
        deviation of the degree-0 invariants). Angular invariants of near-symmetric environments
        vary little: scaled by their own deviations, their tiny variations became large inputs and
        the fit stalled (EMT Cu-Ni, the same fit: force error 0.294 eV/Å, 0.091 with the common
        scale; benchmarks/student_fit.py)."""
        c = self.spec.n_channels
        pairs = c * (c + 1) // 2
        with torch.no_grad():
            g = self.atom_features(graph, graph.vectors())
            for a in range(len(self.elements)):
                mine = g[graph.numbers_index == a]
                if len(mine) < 2:
                    continue
                std = mine.std(0).clamp_min(1e-6)
                self.shift[a] = mine.mean(0)
                self.scale[a, :c] = std[:c]
                self.scale[a, c:] = std[c : c + pairs].mean()
