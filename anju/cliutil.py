"""What every ``anju`` sub-command shares: the common options, JSON output, errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

__all__ = ["JsonOpt", "SiteOpt", "emit_json", "fail"]

SiteOpt = Annotated[Path, typer.Option("--site", help="site directory (site.yaml, devices.csv)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")]


def emit_json(obj: dict[str, Any]) -> None:
    """The one JSON object a ``--json`` command prints as its last line (CONTRACT §7)."""
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")


def fail(problem: object, code: int = 2) -> typer.Exit:
    """Prints ``error: …`` on stderr; ``raise fail(...) from None`` exits with ``code``."""
    typer.echo(f"error: {problem}", err=True)
    return typer.Exit(code)
