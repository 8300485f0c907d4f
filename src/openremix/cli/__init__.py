"""The `openremix` command line: argument parsing and exit codes; the work is in `server`,
`client` and the store."""

from openremix.cli import admin  # registers `keys`, `db` and `models` on the app
from openremix.cli.app import app, main

__all__ = ["admin", "app", "main"]
