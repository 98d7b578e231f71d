"""The layering of the product code, read from its imports (every import, function-level and
type-checking ones included): al_loop → launchers → calculators, everything → database; no
module imports another that imports it back; al_loop never speaks FireWorks."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("al_loop", "launchers", "calculators", "database")
#: Which product packages each one may import (itself always).
ALLOWED = {
    "al_loop": {"launchers", "calculators", "database"},
    "launchers": {"calculators", "database"},
    "calculators": {"database"},
    "database": set(),
}


def module_files() -> dict[str, Path]:
    """Dotted module name → file, for every module of the product packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(path: Path, name: str, modules: dict[str, Path]) -> Iterator[str]:
    """The modules ``name`` (file ``path``) imports: the most specific one that exists, for
    ``from package import submodule`` as well as ``from module import object``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in modules else base


def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {
        name: {
            m for m in imports(path, name, modules) if m.split(".")[0] in (*PACKAGES, "fireworks")
        }
        for name, path in modules.items()
    }


def test_the_scan_sees_the_product() -> None:
    edges = graph()
    assert {"al_loop.cli", "launchers.tasks", "calculators.oracles.base", "database.store"} <= set(
        edges
    )
    assert "al_loop.config" in edges["al_loop.campaign"]  # imports are found
    assert "fireworks" in {m.split(".")[0] for m in edges["launchers.launchpad"]}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_runs_back_up_the_layering(package: str) -> None:
    wrong = sorted(
        (module, target)
        for module, targets in graph().items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in PACKAGES
        and target.split(".")[0] != package
        and target.split(".")[0] not in ALLOWED[package]
    )
    assert wrong == []


def test_al_loop_never_imports_fireworks() -> None:
    speaking = sorted(
        module
        for module, targets in graph().items()
        if module.startswith("al_loop") and any(t.split(".")[0] == "fireworks" for t in targets)
    )
    assert speaking == []


def test_no_two_modules_import_each_other() -> None:
    """No cycle of any length in the module graph (Tarjan's strongly connected components)."""
    edges = {m: {t for t in ts if t in module_files()} for m, ts in graph().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges[node]:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []
