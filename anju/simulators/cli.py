"""Sub-commands of this area."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


def register_demo(root: typer.Typer) -> None:
    """Adds ``anju demo`` to the root app."""
