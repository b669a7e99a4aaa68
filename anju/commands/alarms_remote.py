"""``anju alarms list|show|ack|assign|comment``: the console's terminal twin, for scripts.

They talk to a running pipeline's API (``--api``, default ``http://`` + ANJU_API_ADDR)
with a team's token from an environment variable (``--token-env``, default
ANJU_API_TOKEN): the token never appears on a command line. Scoping is the API's.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

import orjson
import typer

from anju.commands.alarms import JsonOut, app

__all__ = ["request"]

Api = Annotated[str | None, typer.Option(
    "--api", help="The pipeline's API, e.g. http://127.0.0.1:8080 (default: ANJU_API_ADDR).")]
TokenEnv = Annotated[str, typer.Option(
    "--token-env", help="Environment variable holding the team's API token.")]
By = Annotated[str, typer.Option("--by", help="Your name.")]


def request(api: str | None, token_env: str, method: str, path: str,
            body: dict[str, Any] | None = None) -> Any:
    """One API call; exits 2 with the API's error (401, 404, 409, …) on failure."""
    token = os.environ.get(token_env)
    if not token:
        typer.echo(f"{token_env} is not set (a team's API token)", err=True)
        raise typer.Exit(2)
    if api is None:
        from anju.config import load_settings

        api = f"http://{load_settings().api_addr}"
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(
        api.rstrip("/") + path, data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            msg = orjson.loads(exc.read()).get("error", exc.reason)
        except orjson.JSONDecodeError:
            msg = exc.reason
        typer.echo(f"{method} {path}: {exc.code} {msg}", err=True)
        raise typer.Exit(2) from exc
    except (urllib.error.URLError, OSError) as exc:
        typer.echo(f"{api}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _line(row: dict[str, Any]) -> str:
    where = "/".join(str(x) for x in (row["estate"], row["building"], row.get("floor"),
                                      row.get("zone")) if x is not None)
    who = f" → {row['assigned_to']}" if row.get("assigned_to") else ""
    return (f"{row['alarm_id']}  {row['severity']:<8} {row['state']:<12} {row['rule']:<28} "
            f"{where} {row.get('device') or ''}{who}  {row['message']}")


def _out(obj: Any, json_out: bool, text: str) -> None:
    typer.echo(orjson.dumps(obj).decode() if json_out else text)


@app.command("list")
def list_(
    api: Api = None, token_env: TokenEnv = "ANJU_API_TOKEN",
    state: Annotated[str, typer.Option(help="open, cleared or all")] = "open",
    estate: Annotated[str | None, typer.Option()] = None,
    building: Annotated[str | None, typer.Option()] = None,
    kind: Annotated[str | None, typer.Option()] = None,
    severity: Annotated[str | None, typer.Option()] = None,
    json_out: JsonOut = False,
) -> None:
    """Alarms of your team's estates, from a running pipeline."""
    q = {k: v for k, v in (("state", state), ("estate", estate), ("building", building),
                           ("kind", kind), ("severity", severity)) if v}
    rows = request(api, token_env, "GET", "/alarms?" + urllib.parse.urlencode(q))["alarms"]
    _out({"alarms": rows}, json_out, "\n".join(_line(r) for r in rows) or "no alarms")


@app.command("show")
def show(alarm_id: str, api: Api = None, token_env: TokenEnv = "ANJU_API_TOKEN",
         json_out: JsonOut = False) -> None:
    """One alarm with its timeline and webhook deliveries."""
    doc = request(api, token_env, "GET", f"/alarms/{urllib.parse.quote(alarm_id)}")
    lines = [_line(doc["alarm"])]
    for ev in doc["events"]:
        d = ev.get("details", {})
        extra = d.get("ack") or d.get("assign") or d.get("comment") or d.get("escalation") or ""
        lines.append(f"  {ev['seq']:>3} {ev['ts']} {ev['event']:<12} {extra}")
    for dl in doc["deliveries"]:
        lines.append(f"  delivery {dl['event_id']} → {dl['team']}: {dl['state']} "
                     f"({dl['attempts']} attempts)")
    _out(doc, json_out, "\n".join(lines))


@app.command("ack")
def ack(alarm_id: str, by: By, note: Annotated[str, typer.Option()] = "",
        api: Api = None, token_env: TokenEnv = "ANJU_API_TOKEN",
        json_out: JsonOut = False) -> None:
    """Acknowledges an alarm."""
    ev = request(api, token_env, "POST", f"/alarms/{urllib.parse.quote(alarm_id)}/ack",
                 {"by": by, "note": note})
    _out(ev, json_out, f"acknowledged {alarm_id}")


@app.command("assign")
def assign(alarm_id: str, to: Annotated[str, typer.Option("--to", help="Who takes it.")],
           by: By, note: Annotated[str, typer.Option()] = "", api: Api = None,
           token_env: TokenEnv = "ANJU_API_TOKEN", json_out: JsonOut = False) -> None:
    """Assigns an open alarm to a named person."""
    ev = request(api, token_env, "POST", f"/alarms/{urllib.parse.quote(alarm_id)}/assign",
                 {"to": to, "by": by, "note": note})
    _out(ev, json_out, f"assigned {alarm_id} to {to}")


@app.command("comment")
def comment(alarm_id: str, text: str, by: By, api: Api = None,
            token_env: TokenEnv = "ANJU_API_TOKEN", json_out: JsonOut = False) -> None:
    """Adds a comment to an alarm's history."""
    ev = request(api, token_env, "POST", f"/alarms/{urllib.parse.quote(alarm_id)}/comments",
                 {"by": by, "text": text})
    _out(ev, json_out, f"commented on {alarm_id}")
