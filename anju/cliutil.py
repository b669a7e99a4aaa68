"""What every ``anju`` sub-command shares: the common options, JSON output, errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

__all__ = ["JsonOpt", "SiteOpt", "emit_json", "fail", "quiet_flag_types"]

SiteOpt = Annotated[Path, typer.Option("--site", help="site directory (site.yaml, devices.csv)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object as the last line")]


def emit_json(obj: dict[str, Any]) -> None:
    """The one JSON object a ``--json`` command prints as its last line (CONTRACT §7)."""
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")


def fail(problem: object, code: int = 2) -> typer.Exit:
    """Prints ``error: …`` on stderr; ``raise fail(...) from None`` exits with ``code``."""
    typer.echo(f"error: {problem}", err=True)
    return typer.Exit(code)


def quiet_flag_types() -> None:
    """Help shows no type for a flag (``--json``, ``--help``), which takes no value.

    Typer 0.2x labels every option with its type, flags included (``--help <bool>``),
    which reads as if the flag wanted a value. Its ``display_type_rich`` is wrapped once:
    a flag without an explicit metavar shows nothing; everything else is unchanged.
    """
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_anju_quiet_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._anju_quiet_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
