"""``anju run``: the live pipeline."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Adds ``anju run`` to the root app."""
