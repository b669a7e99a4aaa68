"""Sub-commands of the alarms area (none at the top level yet)."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds alarm commands to the root app."""
