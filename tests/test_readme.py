"""The README is the front door: its configuration table is the Settings object's."""

from __future__ import annotations

import re
from pathlib import Path

from openremix.config import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_table_matches_settings():
    assert settings_table() in README.read_text(), "run scripts/update_readme_settings.py"


def test_readme_names_the_two_setup_commands():
    text = README.read_text()
    assert ".venv/bin/openremix serve" in text
    assert "bash scripts/test.sh" in text


def test_the_layout_table_names_every_module_in_its_folders_row():
    """'How it works' is the map of the package: every public module is named in its folder's
    row (a module of a subfolder is covered by the subfolder's name there)."""
    text = README.read_text()
    start = text.index("## How it works")
    section = text[start:text.index("\n## ", start)]
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, flags=re.MULTILINE))
    package = README.parent / "src" / "openremix"
    unnamed = []
    for module in sorted(package.rglob("*.py")):
        parts = module.relative_to(package).parts
        if module.stem.startswith("_"):  # __init__, __main__ and the SDK's private modules
            continue
        if len(parts) == 1:
            named = module.name in rows
        else:
            row = rows.get(f"{parts[0]}/", "")
            named = f"`{module.stem}`" in row or (len(parts) > 2 and f"`{parts[1]}/`" in row)
        if not named:
            unnamed.append("/".join(parts))
    assert unnamed == [], "name these modules in README's 'How it works' table"
