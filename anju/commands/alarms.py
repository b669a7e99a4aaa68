"""``anju alarms``: look at the delivery outbox, requeue parked deliveries, sign a test body.

Heavy imports happen inside the commands so that ``anju --help`` stays instant.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app", "register"]

app = typer.Typer(no_args_is_help=True)

StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="Directory of alarms.sqlite3 (default: ANJU_STATE_DIR).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Last line of stdout: one JSON object.")]


def register(root: typer.Typer) -> None:
    """Adds ``anju alarms`` to the root app."""
    root.add_typer(app, name="alarms", help="Alarm store, webhook outbox and signatures.")


def _open_store(state_dir: Path | None) -> Any:
    from anju.alarms.sqlite_store import DB_NAME, SqliteAlarmStore
    from anju.config import load_settings

    directory = state_dir if state_dir is not None else load_settings().state_dir
    path = directory / DB_NAME
    if not path.exists():
        typer.echo(f"no alarm store at {path}", err=True)
        raise typer.Exit(2)
    return SqliteAlarmStore(path)


def _emit(obj: dict[str, Any]) -> None:
    import orjson

    typer.echo(orjson.dumps(obj).decode())


@app.command("outbox")
def outbox(state_dir: StateDir = None, json_out: JsonOut = False) -> None:
    """Deliveries by destination and state, and the parked ones with their last error."""
    with _open_store(state_dir) as store:
        rows = store.outbox()
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        by_state = counts.setdefault(r["team"], {})
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    parked = [{k: r[k] for k in ("delivery_id", "team", "event_id", "attempts", "last_status",
                                 "last_error")} for r in rows if r["state"] == "parked"]
    if json_out:
        _emit({"teams": counts, "parked": parked})
        return
    for team, by_state in sorted(counts.items()):
        typer.echo(f"{team}: " + ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())))
    for d in parked:
        typer.echo(f"parked {d['delivery_id']} {d['team']} {d['event_id']} after "
                   f"{d['attempts']} attempts: {d['last_error']}")


@app.command("requeue")
def requeue(
    state_dir: StateDir = None,
    team: Annotated[str | None, typer.Option(
        "--team", help="This team's parked deliveries (its webhook and its robots).")] = None,
    delivery: Annotated[list[str] | None, typer.Option(
        "--delivery", help="Only this delivery id (repeatable).")] = None,
    all_teams: Annotated[bool, typer.Option("--all", help="Every team's.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Sends parked deliveries again, under their delivery ids, once a receiver is fixed.

    Works on the state dir's SQLite file, also while `anju run` is running: its dispatcher
    sees the requeued rows on its next poll (about a second).
    """
    if not (team or delivery or all_teams):
        typer.echo("say which: --team ID, --delivery ID or --all", err=True)
        raise typer.Exit(2)
    now = int(time.time() * 1000)
    with _open_store(state_dir) as store:
        n = 0
        if team is not None:  # the team's webhook rows carry its id, its robots' team/name
            keys = {r["team"] for r in store.outbox(state="parked")
                    if r["team"] == team or r["team"].startswith(team + "/")}
            for key in sorted(keys):
                n += store.requeue(now, team=key, delivery_ids=delivery)
        else:
            n = store.requeue(now, delivery_ids=delivery)
    if json_out:
        _emit({"requeued": n})
    else:
        typer.echo(f"requeued {n} deliveries")


@app.command("backup")
def backup(
    file: Annotated[Path, typer.Argument(help="The backup file to write (replaced if present).")],
    state_dir: StateDir = None,
    json_out: JsonOut = False,
) -> None:
    """Copies the alarm store (alarms, events, webhook outbox) to FILE, consistently, while
    the pipeline runs (SQLite's online backup API, never a file copy)."""
    from anju.alarms.backup import backup_store
    from anju.alarms.errors import AlarmStoreError
    from anju.config import load_settings

    directory = state_dir if state_dir is not None else load_settings().state_dir
    try:
        report = backup_store(directory, file)
    except AlarmStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        _emit(report.summary())
    else:
        typer.echo(f"backed up {report.alarms} alarms ({report.open_alarms} open), "
                   f"{report.events} events, {report.outbox} deliveries to {file} "
                   f"({report.bytes} bytes, schema {report.schema_version})")


@app.command("restore")
def restore(
    file: Annotated[Path, typer.Argument(help="A file written by `anju alarms backup`.")],
    state_dir: StateDir = None,
    json_out: JsonOut = False,
) -> None:
    """Replaces the alarm store with FILE. Stop the pipeline first; the current store is
    saved beside it as alarms.sqlite3.before-restore-<time>."""
    from anju.alarms.backup import restore_store
    from anju.alarms.errors import AlarmStoreError
    from anju.config import load_settings

    directory = state_dir if state_dir is not None else load_settings().state_dir
    try:
        report, saved = restore_store(file, directory)
    except AlarmStoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        _emit({**report.summary(), "saved": str(saved) if saved else None})
    else:
        typer.echo(f"restored {report.alarms} alarms ({report.open_alarms} open), "
                   f"{report.events} events, {report.outbox} deliveries from {file}"
                   + (f"; the previous store is {saved}" if saved else ""))


@app.command("sign")
def sign(
    secret_env: Annotated[str, typer.Option("--secret-env", help="Env var holding the secret.")],
    timestamp: Annotated[int | None, typer.Option(help="ms; default now")] = None,
    body: Annotated[Path | None, typer.Option(help="Body file; default stdin")] = None,
) -> None:
    """Prints the X-Anju-Timestamp and X-Anju-Signature headers of a body, to test a receiver."""
    import os

    from anju.alarms.signing import signature

    secret = os.environ.get(secret_env)
    if not secret:
        typer.echo(f"{secret_env} is not set", err=True)
        raise typer.Exit(2)
    data = body.read_bytes() if body is not None else sys.stdin.buffer.read()
    ts = timestamp if timestamp is not None else int(time.time() * 1000)
    typer.echo(f"X-Anju-Timestamp: {ts}")
    typer.echo(f"X-Anju-Signature: {signature(secret.encode(), ts, data)}")


# The console's terminal twin (list, show, ack, assign, comment) registers itself on `app`.
from anju.commands import alarms_remote as _remote_cli  # noqa: E402,F401
