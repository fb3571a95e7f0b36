"""CLI command groups; each module registers its commands on the root Typer app in `cli.py`."""
