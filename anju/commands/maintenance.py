"""``anju maintenance add|list|end``: maintenance windows from the terminal (issue 18).

A thin wrapper over :class:`anju.alarms.maintenance.MaintenanceBook` on the state dir's
``alarms.sqlite3``: each command is one short transaction, so it is safe while ``anju run``
runs; the pipeline reads the windows from the file at every batch and tick, so a window
added here takes effect within a tick. Heavy imports happen inside the commands.

Times (``--from``, ``--to``, ``--at``) are ``now``, ``now+2h`` / ``+90m`` / ``-1d`` (s, m,
h, d), epoch milliseconds, or ISO 8601 (without an offset: China time, UTC+8).
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from anju.cliutil import emit_json, fail

__all__ = ["app", "parse_time", "register"]

app = typer.Typer(no_args_is_help=True)

_CST = timezone(timedelta(hours=8))  # the sites' local time (DESIGN.md, "Time")
_REL = re.compile(r"^(?:now)?\s*([+-])\s*(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="Directory of alarms.sqlite3 (default: ANJU_STATE_DIR).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Last line of stdout: one JSON object.")]


def register(root: typer.Typer) -> None:
    """Adds ``anju maintenance`` to the root app."""
    root.add_typer(app, name="maintenance",
                   help="Maintenance windows: alarms inside them are recorded, not delivered.")


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms of ``now``, ``now+2h``/``+90m``/``-1d``, epoch ms, or ISO 8601 (naive: UTC+8);
    ValueError says what was expected."""
    t = text.strip()
    if t == "now":
        return now_ms
    m = _REL.match(t)
    if m:
        sign = 1 if m.group(1) == "+" else -1
        return now_ms + sign * round(float(m.group(2)) * _UNIT_MS[m.group(3)])
    if t.isdigit():
        return int(t)
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: say now, now+2h, +90m, -1d, epoch ms or "
                         "ISO 8601 (2026-03-02T08:00, China time unless it has an offset)"
                         ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_CST)
    return int(dt.timestamp() * 1000)


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, _CST).strftime("%Y-%m-%d %H:%M:%S")


def _book(state_dir: Path | None, *, create: bool) -> Any:
    from anju.alarms.maintenance import MaintenanceBook
    from anju.alarms.sqlite_store import DB_NAME
    from anju.config import load_settings

    directory = state_dir if state_dir is not None else load_settings().state_dir
    path = directory / DB_NAME
    if not path.exists():
        if not create:
            raise fail(f"no alarm store at {path} (has `anju run` used this --state-dir?)")
        directory.mkdir(parents=True, exist_ok=True)
    return MaintenanceBook(path)


def _now() -> int:
    return int(time.time() * 1000)


def _line(w: Any, now_ms: int) -> str:
    state = ("active" if w.active(now_ms) else "planned" if now_ms < w.from_ms else "over")
    ended = f", ended by {w.ended_by}" if w.ended_by else ""
    return (f"#{w.id} {w.scope} {w.target} {_iso(w.from_ms)} → {_iso(w.to_ms)} [{state}] "
            f"by {w.by}{ended}" + (f": {w.reason}" if w.reason else ""))


@app.command("add")
def add(
    site: Annotated[Path, typer.Option("--site", help="site directory (site.yaml, "
                                       "devices.csv): the target must be in it")],
    device: Annotated[str | None, typer.Option("--device", help="a device id")] = None,
    building: Annotated[str | None, typer.Option(
        "--building", help="ESTATE/BUILDING (or BUILDING with --estate)")] = None,
    estate: Annotated[str | None, typer.Option("--estate", help="an estate id")] = None,
    from_: Annotated[str, typer.Option("--from", help="start (default now)")] = "now",
    to: Annotated[str, typer.Option("--to", help="end, e.g. now+2h or 2026-03-02T12:00")] = "",
    by: Annotated[str, typer.Option("--by", help="who asks for it (audited)")] = "",
    reason: Annotated[str, typer.Option("--reason", help="why (audited)")] = "",
    state_dir: StateDir = None,
    json_out: JsonOut = False,
) -> None:
    """Opens a maintenance window over a device, a building or an estate."""
    from pydantic import ValidationError

    from anju.alarms.maintenance import MaintenanceRequest, resolve
    from anju.devices.registry import load_site
    from anju.errors import AnjuError

    if not to:
        raise fail("--to is required (e.g. --to now+2h)")
    if not by.strip():
        raise fail("--by is required: who asks for the window")
    now = _now()
    try:
        from_ms, to_ms = parse_time(from_, now), parse_time(to, now)
    except ValueError as exc:
        raise fail(exc) from None
    if to_ms <= from_ms:
        raise fail(f"--to ({_iso(to_ms)}) must be after --from ({_iso(from_ms)})")
    try:
        req = MaintenanceRequest.model_validate({
            "device": device, "building": building, "estate": estate, "from": from_ms,
            "to": to_ms, "by": by.strip(), "reason": reason})
    except ValidationError as exc:
        raise fail(exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
                   ) from None
    try:
        the_site = load_site(site)
        scope, target, est = resolve(the_site, req)
    except (AnjuError, OSError) as exc:
        raise fail(exc) from None
    except ValueError as exc:
        raise fail(f"{exc} in the site {site}") from None
    book = _book(state_dir, create=True)
    try:
        w = book.add(scope, target, est, from_ms, to_ms, req.by, reason, now)
    except ValueError as exc:
        raise fail(exc) from None
    finally:
        book.close()
    if json_out:
        emit_json(w.row())
    else:
        typer.echo(f"added {_line(w, now)}")


@app.command("list")
def list_(
    state_dir: StateDir = None,
    all_: Annotated[bool, typer.Option("--all", help="also windows long over")] = False,
    json_out: JsonOut = False,
) -> None:
    """Windows (planned, active and, with --all, over) and elevator maintenance records."""
    book = _book(state_dir, create=False)
    try:
        windows = book.windows()
        maintained = book.maintained()
    finally:
        book.close()
    now = _now()
    if not all_:
        windows = [w for w in windows if w.to_ms > now]
    if json_out:
        emit_json({"windows": [w.row() for w in windows], "maintained": maintained})
        return
    if not windows:
        typer.echo("no maintenance windows" + ("" if all_ else " now or ahead (--all: past)"))
    for w in windows:
        typer.echo(_line(w, now))
    for dev, at in sorted(maintained.items()):
        typer.echo(f"{dev} last maintained {_iso(at)}")


@app.command("end")
def end(
    window: Annotated[int, typer.Argument(help="the window's id (anju maintenance list)")],
    by: Annotated[str, typer.Option("--by", help="who ends it (audited)")] = "",
    at: Annotated[str, typer.Option("--at", help="when it ended (default now)")] = "now",
    state_dir: StateDir = None,
    json_out: JsonOut = False,
) -> None:
    """Ends a window now (or --at): its held critical alarms are delivered and its
    elevators count as maintained at its end, on the pipeline's next tick."""
    if not by.strip():
        raise fail("--by is required: who ends the window")
    now = _now()
    try:
        at_ms = parse_time(at, now)
    except ValueError as exc:
        raise fail(exc) from None
    book = _book(state_dir, create=False)
    try:
        w = book.get(window)
        if w is None:
            raise fail(f"no maintenance window {window}")
        if w.ended_ms is not None:
            raise fail(f"window {window} was already ended by {w.ended_by} at "
                       f"{_iso(w.ended_ms)}")
        if w.to_ms <= at_ms:
            raise fail(f"window {window} is already over ({_iso(w.to_ms)})")
        w = book.end(window, by.strip(), at_ms)
    finally:
        book.close()
    if json_out:
        emit_json(w.row())
    else:
        typer.echo(f"ended {_line(w, now)}")
