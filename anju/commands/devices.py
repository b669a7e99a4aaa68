"""``anju devices``: check a site registry, issue broker credentials, print a kind's
JSON Schema, measure decoding (CONTRACT §7).

An invalid registry exits 2 with ``error: FILE:LINE [FIELD]: problem`` on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from anju.cliutil import JsonOpt, SiteOpt, emit_json, fail

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)





def _load(site_dir: Path) -> Any:
    from anju.devices.registry import load_site
    from anju.errors import RegistryError

    try:
        return load_site(site_dir)
    except RegistryError as exc:
        raise fail(exc) from None


@app.command("check")
def check(site: SiteOpt, json: JsonOpt = False) -> None:
    """Validate the registry: site.yaml (with its rule overrides), devices.csv, gateways.csv."""
    from anju.errors import RuleError
    from anju.rules.model import load_rules

    s = _load(site)
    try:
        load_rules(s)  # site.yaml's rule overrides must name real rules and parameters
    except RuleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    summary = s.summary()
    summary["load_s"] = round(s.load_s, 4)
    if json:
        emit_json(summary)
        return
    kinds = ", ".join(f"{k} {n}" for k, n in summary["by_kind"].items())
    typer.echo(f"{site}: OK — {summary['estates']} estates, {summary['buildings']} buildings, "
               f"{summary['devices']} devices ({kinds}), {len(s.gateways)} gateways, "
               f"{len(s.teams)} teams; loaded in {summary['load_s']:.3f} s")


@app.command("credentials")
def credentials(
    site: SiteOpt,
    out: Annotated[Path, typer.Option(
        "--out", help="directory for passwd, acl, credentials.csv and mosquitto.conf")],
    pipeline_password_env: Annotated[str | None, typer.Option(
        "--pipeline-password-env", metavar="VAR",
        help="take anju-pipeline's password from this environment variable")] = None,
    rotate: Annotated[bool, typer.Option(
        "--rotate", help="new passwords for everyone (default: keep those in credentials.csv)"
    )] = False,
    group: Annotated[str | None, typer.Option(
        "--group", metavar="NAME",
        help="the broker's group: may read passwd, acl and mosquitto.conf (mode 0640) "
             "[default: mosquitto, when that group exists; else every file is 0600]")] = None,
    listen: Annotated[str, typer.Option(
        "--listen", metavar="[HOST:]PORT", help="the broker's listener")] = "1883",
    persistence_dir: Annotated[Path, typer.Option(
        "--persistence-dir", metavar="DIR",
        help="the broker's persistence_location (writable by its user)")] = Path(
            "/var/lib/mosquitto"),
    log_dest: Annotated[str, typer.Option(
        "--log-dest", metavar="DEST", help="the broker's log_dest (e.g. 'stderr', 'syslog')"
    )] = "file /var/log/mosquitto/mosquitto.log",
    json: JsonOpt = False,
) -> None:
    """Write a Mosquitto password file, ACL file and complete mosquitto.conf, readable by
    the broker's group, and credentials.csv (plaintext passwords, mode 0600)."""
    from anju.devices.broker import BrokerConfig, parse_listen
    from anju.devices.credentials import group_id, write_credentials
    from anju.errors import AnjuError

    s = _load(site)
    pipeline_password = None
    if pipeline_password_env is not None:
        pipeline_password = os.environ.get(pipeline_password_env)
        if not pipeline_password:
            raise fail(f"--pipeline-password-env: {pipeline_password_env} is not set")
    if group is None and group_id("mosquitto") is not None:
        group = "mosquitto"
    try:
        parse_listen(listen)
        broker = BrokerConfig(listen=listen, persistence_dir=persistence_dir,
                              log_dest=log_dest)
        report = write_credentials(s, out, rotate=rotate, pipeline_password=pipeline_password,
                                   group=group, broker=broker)
    except AnjuError as exc:
        raise fail(exc) from None
    except OSError as exc:
        raise fail(f"{exc.filename or out}: {exc.strerror}", 1) from None
    for w in report.warnings:
        typer.echo(f"warning: {w}", err=True)
    if json:
        emit_json(report.summary())
        return
    roles = ", ".join(f"{n} {r}" for r, n in report.by_role.items())
    typer.echo(f"{report.users} broker users ({roles}): {report.new} new passwords, "
               f"{report.kept} kept, {report.removed} removed")
    if report.group is not None:
        typer.echo(f"wrote {out}/passwd, acl, mosquitto.conf (mode 0640, group "
                   f"{report.group}) and credentials.csv (mode 0600)")
    else:
        typer.echo(f"wrote {out}/passwd, acl, mosquitto.conf and credentials.csv (mode 0600: "
                   "no group mosquitto here; give the broker's with --group)")
    typer.echo(f"run the broker on it: mosquitto -c {out.resolve()}/mosquitto.conf "
               "(docs/operations.md)")


@app.command("schema")
def schema(kind: Annotated[str, typer.Argument(help="a device kind")]) -> None:
    """Print the JSON Schema of one kind's readings."""
    from anju.devices.schema import json_schema
    from anju.kinds import KINDS

    if kind not in KINDS:
        raise fail(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    sys.stdout.write(orjson.dumps(json_schema(kind), option=orjson.OPT_INDENT_2).decode() + "\n")


@app.command("bench-decode")
def bench_decode(
    messages: Annotated[int, typer.Option(min=100, help="single-reading messages")] = 20_000,
    batch: Annotated[int, typer.Option(min=2, help="readings per gateway batch")] = 100,
    repeat: Annotated[int, typer.Option(min=1, help="runs; the best is reported")] = 5,
    json: JsonOpt = False,
) -> None:
    """Measure decoding cost per message and per reading."""
    from anju.devices.bench import bench_decode as run

    result = run(messages=messages, batch=batch, repeat=repeat)
    if json:
        emit_json(result)
        return
    for name in ("single", f"batch{batch}"):
        r = result[name]
        typer.echo(f"{name:>9}: {r['us_per_message']:8.2f} µs/message  "
                   f"{r['us_per_reading']:6.2f} µs/reading  ({r['messages']} messages)")
    typer.echo(f"{'':>9}  batches on the reference path alone: "
               f"{result[f'batch{batch}']['reference_us_per_reading']:6.2f} µs/reading")
    typer.echo(f" pydantic: {result['pydantic_us_per_reading']:6.2f} µs/reading "
               "(the strict reference models, for comparison)")
