"""The value types of oracle settings: strict numbers (a quoted "8" or "1h" is refused, an int
is accepted as a float) and element symbols."""

from __future__ import annotations

from typing import Annotated

from ase.data import chemical_symbols
from pydantic import AfterValidator, Field, Strict

#: Strict scalar types: a quoted "8" or "1h" is refused, ints are accepted as floats.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]


def _element(symbol: str) -> str:
    if symbol not in chemical_symbols[1:]:
        raise ValueError(f"{symbol!r} is not an element symbol (symbols are case-sensitive: Fe)")
    return symbol


Element = Annotated[str, AfterValidator(_element)]
