"""Bounds on the YAML files a user hands al-loop (campaign files, oracle presets).

A settings file is small. Two kinds of file are refused before they cost time or memory: a file
larger than :data:`MAX_BYTES`, and a document whose aliases expand to more than
:data:`MAX_NODES` values (a "billion laughs" alias bomb: ten nested aliases of ten items each
make 10^10 values out of 200 bytes; PyYAML builds them as shared references, but anything that
walks the data, validation included, walks every one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: A campaign file or preset is a few kB; this is a thousand times more.
MAX_BYTES = 1_000_000
#: Values (mapping entries, list items, scalars) of the expanded document.
MAX_NODES = 100_000


class YamlTooLarge(ValueError):
    """A YAML file over :data:`MAX_BYTES`, or expanding to more than :data:`MAX_NODES` values."""


def check_size(path: Path) -> None:
    """Refuse a file over :data:`MAX_BYTES` before reading it."""
    size = Path(path).stat().st_size
    if size > MAX_BYTES:
        raise YamlTooLarge(
            f"{size / 1e6:.1f} MB is too large for a settings file (at most {MAX_BYTES / 1e6:g} "
            "MB); keep structures and data in files of their own (seeds.files, phase.files)"
        )


def check_expansion(node: yaml.Node | None) -> None:
    """Refuse a composed document whose aliases expand to more than :data:`MAX_NODES` values;
    a recursive alias counts once."""
    count = 0
    stack: list[tuple[yaml.Node, frozenset[int]]] = [(node, frozenset())] if node else []
    while stack:
        current, above = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise YamlTooLarge(
                f"the document expands to more than {MAX_NODES:,} values (nested YAML aliases, "
                "'*name'); write the values out, or use fewer levels of aliases"
            )
        if id(current) in above:
            continue
        inside = above | {id(current)}
        if isinstance(current, yaml.MappingNode):
            stack.extend((child, inside) for pair in current.value for child in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((child, inside) for child in current.value)


def load_settings_file(path: Path) -> Any:
    """``yaml.safe_load`` of ``path``, within the bounds above."""
    check_size(path)
    loader = yaml.SafeLoader(Path(path).read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        check_expansion(node)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()
