"""The student's one file: a plain text format read by PyTorch and by the LAMMPS pair style.

Whitespace-separated tokens, doubles written with 17 significant digits (they read back to the
same bits)::

    alloop-student 2
    elements 2 Cu Ni
    descriptor <cutoff> <n_basis> <n_channels> <lmax> <decay> <n_features>
    network <activation> <n_hidden> <width> ...
    mixing <n_elements^2 * n_channels * n_basis numbers>       # W[a*n+b][c][k]
    element Cu <e0>
      shift <n_features numbers> scale <n_features numbers>
      layer <in> <out> <out*in weights, row-major> <out biases>  # once per layer
    element Ni ...
    end

Lines starting with ``#`` are comments. The reader checks the header, every count, and that
the file ends where it should; a mismatch names the file and what was expected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from calculators.models.student.descriptor import DescriptorSpec
from calculators.models.student.network import StudentModel

MAGIC, VERSION = "alloop-student", 2


class StudentFileError(ValueError):
    """A student file that cannot be read: the message names the file and what is wrong."""


def _numbers(values: torch.Tensor | np.ndarray) -> str:
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    return " ".join(f"{v:.17g}" for v in array.ravel())


def write_student(model: StudentModel, path: Path | str) -> Path:
    """Write ``model`` to ``path``; returns the path."""
    spec = model.spec
    lines = [
        f"{MAGIC} {VERSION}",
        f"elements {len(model.elements)} {' '.join(model.elements)}",
        f"descriptor {spec.cutoff!r} {spec.n_basis} {spec.n_channels} {spec.lmax} "
        f"{spec.decay} {spec.n_features}",
        f"network {model.activation} {len(model.hidden)} {' '.join(map(str, model.hidden))}",
        f"mixing {_numbers(model.mixing)}",
    ]
    for a, element in enumerate(model.elements):
        lines.append(f"element {element} {_numbers(model.e0[a : a + 1])}")
        lines.append(f"shift {_numbers(model.shift[a])}")
        lines.append(f"scale {_numbers(model.scale[a])}")
        for layer in model.networks[a]:
            lines.append(
                f"layer {layer.in_features} {layer.out_features} "
                f"{_numbers(layer.weight)} {_numbers(layer.bias)}"
            )
    lines.append("end")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


class _Tokens:
    def __init__(self, path: Path) -> None:
        self.path = path
        text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        self.tokens = text.split()
        self.at = 0

    def fail(self, what: str) -> StudentFileError:
        return StudentFileError(
            f"{self.path}: {what} (token {self.at}); write it again with "
            "al-loop distil or calculators.models.student.write_student"
        )

    def word(self, expected: str | None = None) -> str:
        if self.at >= len(self.tokens):
            raise self.fail(f"ends early, expected {expected or 'more'}")
        token = self.tokens[self.at]
        self.at += 1
        if expected is not None and token != expected:
            raise self.fail(f"expected {expected!r}, found {token!r}")
        return token

    def integer(self) -> int:
        token = self.word()
        try:
            return int(token)
        except ValueError:
            raise self.fail(f"expected an integer, found {token!r}") from None

    def floats(self, count: int) -> np.ndarray:
        if self.at + count > len(self.tokens):
            raise self.fail(f"ends early, expected {count} numbers")
        try:
            values = np.array(self.tokens[self.at : self.at + count], dtype=np.float64)
        except ValueError:
            raise self.fail("expected numbers") from None
        self.at += count
        return values


def read_student(path: Path | str) -> StudentModel:
    """The model in ``path``, in float64."""
    tokens = _Tokens(Path(path))
    tokens.word(MAGIC)
    if (version := tokens.integer()) != VERSION:
        raise tokens.fail(f"format version {version}, this al-loop reads {VERSION}")
    tokens.word("elements")
    elements = [tokens.word() for _ in range(tokens.integer())]
    tokens.word("descriptor")
    cutoff = float(tokens.floats(1)[0])
    shape = [tokens.integer() for _ in range(4)]
    try:
        spec = DescriptorSpec(cutoff, *shape)
    except ValueError as error:
        raise tokens.fail(str(error)) from None
    if (declared := tokens.integer()) != spec.n_features:
        raise tokens.fail(
            f"the descriptor declares {declared} features; its shape (channels "
            f"{spec.n_channels}, lmax {spec.lmax}) gives {spec.n_features}"
        )
    tokens.word("network")
    activation = tokens.word()
    hidden = [tokens.integer() for _ in range(tokens.integer())]
    model = StudentModel(elements, spec, hidden, activation)
    tokens.word("mixing")
    with torch.no_grad():
        model.mixing.copy_(
            torch.from_numpy(tokens.floats(model.mixing.numel())).view_as(model.mixing)
        )
        for a, element in enumerate(elements):
            tokens.word("element")
            tokens.word(element)
            model.e0[a] = float(tokens.floats(1)[0])
            tokens.word("shift")
            model.shift[a] = torch.from_numpy(tokens.floats(spec.n_features))
            tokens.word("scale")
            model.scale[a] = torch.from_numpy(tokens.floats(spec.n_features))
            for layer in model.networks[a]:
                tokens.word("layer")
                shape = (tokens.integer(), tokens.integer())
                if shape != (layer.in_features, layer.out_features):
                    raise tokens.fail(
                        f"layer of {element} is {shape[0]}x{shape[1]}, the descriptor and "
                        f"network declared {layer.in_features}x{layer.out_features}"
                    )
                layer.weight.copy_(
                    torch.from_numpy(tokens.floats(layer.weight.numel())).view_as(layer.weight)
                )
                layer.bias.copy_(torch.from_numpy(tokens.floats(layer.bias.numel())))
    tokens.word("end")
    if tokens.at != len(tokens.tokens):
        raise tokens.fail("has tokens after 'end'")
    return model
