"""Rewrite the README's configuration table from `Settings` (run after adding a setting)."""

from __future__ import annotations

import re
from pathlib import Path

from openremix.config import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"
TABLE = re.compile(r"\| variable \| default \| what \|\n(?:\|.*\|\n?)+")

text = README.read_text()
new, count = TABLE.subn(settings_table() + "\n", text, count=1)
assert count == 1, "README has no configuration table"
README.write_text(new)
