"""The README is the front door: its configuration table is the Settings object's."""

from __future__ import annotations

from pathlib import Path

from openremix.config import settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_table_matches_settings():
    assert settings_table() in README.read_text(), "run scripts/update_readme_settings.py"


def test_readme_names_the_two_setup_commands():
    text = README.read_text()
    assert ".venv/bin/openremix serve" in text
    assert "bash scripts/test.sh" in text
