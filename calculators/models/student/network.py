"""The student: one fully connected network per element on the descriptor's invariants.

``E = sum_i (e0[a_i] + NN_{a_i}((G_i - shift_a) / scale_a))``; forces and stress are exact
derivatives of E, by the chain rule the LAMMPS pair style uses: autograd gives dE/dM for the
per-atom moments M, and dE/dr_ij = sum_cm dE/dM[i,c,m] d(R_c u^m)/dr_ij is written out on
the pair geometry (:class:`PairTerms`), which holds no parameters and is computed once per
graph. The moments are batched matrix products over each atom's neighbours, so a fit step
never builds a (pairs x channels x monomials) tensor. The model is saved as one text file
(:mod:`calculators.models.student.model_file`) that the LAMMPS pair style reads too.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list
from matscipy.neighbours import neighbour_list

from calculators.models.student.descriptor import (
    DescriptorSpec,
    chebyshev_basis,
    chebyshev_basis_slope,
    features,
    invariants,
    monomial_values,
)

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
    terms: dict[tuple[DescriptorSpec, int], PairTerms] = field(default_factory=dict, repr=False)

    @property
    def n_structures(self) -> int:
        return len(self.volumes)

    def vectors(self) -> torch.Tensor:
        return self.positions[self.neighbour] - self.positions[self.centre] + self.offsets

    def pair_terms(self, spec: DescriptorSpec, n_elements: int) -> PairTerms:
        """The pair geometry for ``spec``, computed on first use and kept."""
        key = (spec, n_elements)
        if key not in self.terms:
            self.terms[key] = PairTerms.of(self, spec, n_elements)
        return self.terms[key]


@dataclass
class PairTerms:
    """A graph's pair geometry for one descriptor: no parameters, so computed once per graph.

    Pairs are sorted by element pair (``segments``: species, start, stop), so that each
    species' radial channels are one matrix product; ``slot`` places each pair in a padded
    (atoms x ``width``) layout of its centre's neighbours, where the moments and their
    derivatives are batched matrix products."""

    centre: torch.Tensor  # (pairs,)
    neighbour: torch.Tensor  # (pairs,)
    pair_structure: torch.Tensor  # (pairs,)
    vectors: torch.Tensor  # (pairs, 3) r_ij
    direction: torch.Tensor  # (pairs, 3) u = r_ij / r
    basis: torch.Tensor  # (pairs, n_basis)
    slope: torch.Tensor  # (pairs, n_basis) dB/dr
    monomial_slopes: torch.Tensor  # (pairs, 3, n_monomials) d(u^m)/dr_ij
    padded_monomials: torch.Tensor  # (atoms, width, n_monomials), zero in empty slots
    slot: torch.Tensor  # (pairs,) index into the flattened (atoms * width) layout
    segments: list[tuple[int, int, int]]

    @classmethod
    def of(cls, graph: Graph, spec: DescriptorSpec, n_elements: int) -> PairTerms:
        with torch.no_grad():
            species = graph.numbers_index
            pair_species = species[graph.centre] * n_elements + species[graph.neighbour]
            order = torch.argsort(pair_species, stable=True)
            centre = graph.centre[order]
            vectors = graph.vectors()[order]
            r = torch.linalg.vector_norm(vectors, dim=1)
            u = vectors / r.unsqueeze(1)
            monomials = monomial_values(u, spec)
            n_atoms = len(species)
            counts = torch.bincount(centre, minlength=n_atoms)
            width = int(counts.max()) if len(centre) else 1
            first = torch.cumsum(counts, 0) - counts  # each centre's first pair, by centre
            by_centre = torch.argsort(centre, stable=True)
            rank = torch.empty_like(centre)
            rank[by_centre] = torch.arange(len(centre)) - first[centre[by_centre]]
            slot = centre * width + rank
            padded = monomials.new_zeros((n_atoms * width, len(spec.monomials)))
            padded[slot] = monomials
            found = torch.bincount(pair_species, minlength=n_elements**2).tolist()
            bounds = [0, *itertools.accumulate(found)]
            segments = [(s, bounds[s], bounds[s + 1]) for s in range(n_elements**2) if found[s]]
            return cls(
                centre=centre,
                neighbour=graph.neighbour[order],
                pair_structure=graph.pair_structure[order],
                vectors=vectors,
                direction=u,
                basis=chebyshev_basis(r, spec),
                slope=chebyshev_basis_slope(r, spec),
                monomial_slopes=monomial_slopes(monomials, u, r, spec),
                padded_monomials=padded.view(n_atoms, width, -1),
                slot=slot,
                segments=segments,
            )

    def radial(self, mixing: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """``sum_k W[s, c, k] basis[p, k]`` for every pair: (pairs, n_channels)."""
        parts = [basis[a:b] @ mixing[s].T for s, a, b in self.segments]
        return torch.cat(parts) if parts else basis.new_zeros((0, mixing.shape[1]))

    def padded(self, values: torch.Tensor) -> torch.Tensor:
        """Per-pair ``values`` (pairs, k) in the padded layout (atoms, width, k)."""
        n_atoms, width = self.padded_monomials.shape[:2]
        out = values.new_zeros((n_atoms * width, values.shape[1]))
        return out.index_copy(0, self.slot, values).view(n_atoms, width, -1)

    def unpadded(self, values: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`padded`: (pairs, k)."""
        return values.reshape(-1, values.shape[-1])[self.slot]


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


def pairs_within(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """i, j and the image shift S (in cells) of every ordered pair closer than ``cutoff``.

    matscipy's neighbour list (C; mace's own dependency) where the cell has three dimensions:
    the same pairs as ASE's ``primitive_neighbor_list``, 40-260x faster on the student's cells
    (1-32 atoms at 5 Å, where ASE's took two thirds of a 3-epoch fit). ASE's for a cell
    without volume (a molecule)."""
    if abs(np.linalg.det(atoms.cell.array)) > 1e-9:
        i, j, shift = neighbour_list("ijS", atoms, cutoff)
    else:
        i, j, shift = primitive_neighbor_list(
            "ijS", atoms.pbc, atoms.cell.array, atoms.positions, cutoff, use_scaled_positions=False
        )
    return i, j, shift


def build_graph(
    structures: Sequence[Atoms], elements: Sequence[str], cutoff: float, dtype: torch.dtype
) -> Graph:
    """The pairs of every structure (periodic images included), concatenated."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in GRAPH_ARRAYS}
    start = 0
    for k, atoms in enumerate(structures):
        i, j, shift = pairs_within(atoms, cutoff)
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


def monomial_slopes(
    monomials: torch.Tensor, u: torch.Tensor, r: torch.Tensor, spec: DescriptorSpec
) -> torch.Tensor:
    """``d(u^m)/dr_ij = (d(u^m)/du - l u^m u) / r`` for the monomials u^m of degree l (Euler:
    u . d(u^m)/du = l u^m), shape (pairs, 3, n_monomials)."""
    lower, exponent = spec.lowered
    partial = monomials.new_tensor(exponent) * monomials[:, torch.tensor(lower)]
    radial = monomials.new_tensor(spec.degrees) * monomials
    return (partial - u.unsqueeze(2) * radial.unsqueeze(1)) / r[:, None, None]


GRAPH_ARRAYS = (
    "numbers_index",
    "centre",
    "neighbour",
    "offsets",
    "positions",
    "structure",
    "pair_structure",
    "volumes",
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

    def atom_energies(self, moments: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """E_i of every atom from its moments (atoms, n_channels, n_monomials), eV."""
        g = invariants(moments, self.spec)
        return self.e0[species] + self.networks.energies(g, species, self.shift, self.scale)

    def forward(
        self, graph: Graph, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Energy (structures,), forces (atoms, 3) and stress (structures, 3, 3), ASE's sign:
        ``sigma = (1/V) sum_pairs r_ij (x) dE/dr_ij``. With ``create_graph`` the forces and
        stress can be differentiated again (for a fit)."""
        terms = graph.pair_terms(self.spec, len(self.elements))
        species = graph.numbers_index
        with torch.enable_grad():
            radial = terms.padded(terms.radial(self.mixing, terms.basis))
            moments = radial.transpose(1, 2) @ terms.padded_monomials
            if not moments.requires_grad:  # frozen parameters: forces still need dE/dM
                moments.requires_grad_(True)
            atom_energies = self.atom_energies(moments, species)
            energy = atom_energies.new_zeros(graph.n_structures)
            energy = energy.index_add(0, graph.structure, atom_energies)
            (d_moments,) = torch.autograd.grad(
                atom_energies.sum(), moments, create_graph=create_graph
            )
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            d_vectors = self.pair_gradient(terms, radial, d_moments)
        n_atoms = len(species)
        forces = d_vectors.new_zeros((n_atoms, 3))
        forces = forces.index_add(0, terms.centre, d_vectors).index_add(
            0, terms.neighbour, -d_vectors
        )
        virial = d_vectors.new_zeros((graph.n_structures, 3, 3)).index_add(
            0, terms.pair_structure, terms.vectors.unsqueeze(2) * d_vectors.unsqueeze(1)
        )
        volumes = graph.volumes.clamp_min(1e-12)
        return energy, forces, virial / volumes[:, None, None]

    def pair_gradient(
        self, terms: PairTerms, radial: torch.Tensor, d_moments: torch.Tensor
    ) -> torch.Tensor:
        """dE/dr_ij of every pair (pairs, 3) from dE/dM (atoms, n_channels, n_monomials):
        ``sum_c dE/dR_c R_c'(r) u + sum_m dE/du^m d(u^m)/dr_ij``."""
        d_radial = terms.unpadded(terms.padded_monomials @ d_moments.transpose(1, 2))
        d_monomial = terms.unpadded(radial @ d_moments)  # (pairs, n_monomials)
        along = (terms.radial(self.mixing, terms.slope) * d_radial).sum(1, keepdim=True)
        across = (terms.monomial_slopes * d_monomial.unsqueeze(1)).sum(2)
        return terms.direction * along + across

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
