"""`python -m openremix.cli`: the `openremix` command."""

from openremix.cli.app import main

main()
