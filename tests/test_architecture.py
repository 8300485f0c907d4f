"""The package's layers import in one direction only (ARCHITECTURE.md), checked on the source.

`contract` <- `media`, `jobs`, `engine` <- `worker` <- `server` <- `cli`; `api` <- `server`. The
API never imports the worker or an engine; the SDK (`client`) depends only on `contract`. A new
import that breaks this fails here, naming the module and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "openremix"

# For each layer: the other layers of ours it may import (top-level modules count as layers).
ALLOWED: dict[str, frozenset[str]] = {
    "contract": frozenset(),
    "config": frozenset(),
    "metrics": frozenset(),
    "media": frozenset({"contract", "config"}),
    "jobs": frozenset({"contract"}),
    "engine": frozenset({"contract", "media"}),
    "worker": frozenset({"contract", "media", "jobs", "engine", "metrics"}),
    "webhooks": frozenset({"contract", "config", "media", "jobs"}),
    "api": frozenset({"contract", "config", "media", "jobs", "webhooks", "metrics"}),
    "server": frozenset({"contract", "config", "media", "jobs", "engine", "worker", "webhooks",
                         "api", "metrics"}),
    "client": frozenset({"contract"}),
    "cli": frozenset({"contract", "config", "server", "client"}),
}


def _layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported_layers(path: Path) -> set[tuple[str, int]]:
    """(layer, line) for every `openremix.<layer>` this module imports, at any depth."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "openremix":  # `from openremix import metrics`
                names = [f"openremix.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "openremix" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name != "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"{layer}: a new top-level part; give it a place in ALLOWED"
    wrong = sorted(f"line {line}: openremix.{target}" for target, line in _imported_layers(path)
                   if target != layer and target not in ALLOWED[layer]
                   and target != "__version__")
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) may not import: {wrong}"


def test_the_rules_themselves_point_one_way() -> None:
    """No two layers may import each other (the table above has no cycle)."""
    for layer, allowed in ALLOWED.items():
        for other in allowed:
            assert layer not in ALLOWED[other], f"{layer} <-> {other}"
