"""``anju dashboards``: build the Grafana tree, push it to a Grafana, check its queries.

Heavy imports (the SDK, grafana-client) happen inside the commands so that
``anju --help`` stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from anju.config import Settings
    from anju.dashboards.provisioning import Targets
    from anju.rules.model import RuleSet

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)

_INFLUX_URL = typer.Option("--influx-url", help="InfluxDB URL [default: ANJU_INFLUX_URL]")
_INFLUX_DB = typer.Option("--influx-db", help="InfluxDB database [default: ANJU_INFLUX_DB]")
_PROM_URL = typer.Option("--prometheus-url",
                         help="Prometheus that scrapes the pipeline's /metrics "
                              "[default: http://127.0.0.1:9090]")
_JSON = typer.Option("--json", help="Last line of stdout: one JSON object.")
_SITE = typer.Option("--site", help="Site directory: its rule overrides (site.yaml rules:) set "
                                    "the limits drawn [default: the rule catalogue's].")
_TZ = typer.Option("--timezone", envvar="ANJU_GRAFANA_TIMEZONE",
                   help="Time zone the dashboards show: an IANA name, 'browser' or 'utc' "
                        "[env ANJU_GRAFANA_TIMEZONE].")
_DEFAULT_TZ = "Asia/Shanghai"  # anju.dashboards.build.DEFAULT_TIMEZONE, without the SDK import


def _rules(site: Path | None) -> RuleSet | None:
    """The rules in force at ``site`` (catalogue + overrides), or None for the catalogue."""
    if site is None:
        return None
    from anju.devices.registry import load_site
    from anju.errors import AnjuError
    from anju.rules.model import load_rules

    try:
        return load_rules(load_site(site))
    except AnjuError as exc:
        raise typer.BadParameter(str(exc), param_hint="--site") from None


def _targets(influx_url: str | None, influx_db: str | None,
             prometheus_url: str | None) -> tuple[Targets, Settings]:
    """Datasource targets from Settings (ANJU_* env, TOML) with the flags on top."""
    from anju.config import Settings
    from anju.dashboards.provisioning import Targets

    overrides = {k: v for k, v in (("influx_url", influx_url), ("influx_db", influx_db)) if v}
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return Targets.from_settings(settings, prometheus_url), settings


@app.command()
def build(
    out: Annotated[Path, typer.Option("--out", help="Directory to write into.")],
    influx_url: Annotated[str | None, _INFLUX_URL] = None,
    influx_db: Annotated[str | None, _INFLUX_DB] = None,
    prometheus_url: Annotated[str | None, _PROM_URL] = None,
    env_refs: Annotated[bool, typer.Option(
        "--env-refs",
        help="Write ${ANJU_INFLUX_URL}, ${ANJU_INFLUX_DB}, ${ANJU_PROMETHEUS_URL} for Grafana "
             "to expand from its environment, instead of values (the committed grafana/).",
    )] = False,
    dashboards_path: Annotated[str | None, typer.Option(
        "--dashboards-path",
        help="Where Grafana will find DIR/dashboards [default: /var/lib/grafana/dashboards/anju]"),
    ] = None,
    site: Annotated[Path | None, _SITE] = None,
    timezone: Annotated[str, _TZ] = _DEFAULT_TZ,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Write Grafana dashboard JSON and provisioning YAML (CONTRACT §7)."""
    from anju.dashboards.build import write_tree
    from anju.dashboards.provisioning import DEFAULT_DASHBOARDS_PATH, Targets

    if env_refs:
        targets = Targets.from_env_refs()
    else:
        targets, _ = _targets(influx_url, influx_db, prometheus_url)
    written = write_tree(out, targets, dashboards_path=dashboards_path or DEFAULT_DASHBOARDS_PATH,
                         timezone=timezone, rules=_rules(site))
    dashboards = sorted(p.stem for p in written if p.suffix == ".json")
    for p in written:
        typer.echo(f"wrote {p}")
    typer.echo(f"{len(dashboards)} dashboards; datasources → InfluxDB {targets.influx_url} "
               f"db {targets.influx_db}, Prometheus {targets.prometheus_url}")
    if as_json:
        typer.echo(json.dumps({"out": str(out), "dashboards": dashboards,
                               "files": len(written)}))


@app.command()
def push(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. http://grafana:3000")],
    token: Annotated[str | None, typer.Option(
        "--token", envvar="GRAFANA_TOKEN", show_default=False,
        help="Service-account token (or env GRAFANA_TOKEN).")] = None,
    influx_url: Annotated[str | None, _INFLUX_URL] = None,
    influx_db: Annotated[str | None, _INFLUX_DB] = None,
    prometheus_url: Annotated[str | None, _PROM_URL] = None,
    datasources: Annotated[bool, typer.Option(
        "--datasources/--no-datasources",
        help="Also create or update the InfluxDB and Prometheus datasources.")] = True,
    site: Annotated[Path | None, _SITE] = None,
    timezone: Annotated[str, _TZ] = _DEFAULT_TZ,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Save every dashboard into folder "anju" of a running Grafana (HTTP API)."""
    from pydantic import SecretStr

    from anju.dashboards.build import build_dashboards
    from anju.dashboards.push import push as do_push
    from anju.errors import SinkRejected, SinkUnavailable

    targets, settings = _targets(influx_url, influx_db, prometheus_url)
    try:
        built = build_dashboards(timezone=timezone, rules=_rules(site))
        report = do_push(url, SecretStr(token) if token else None, built,
                         targets=targets if datasources else None,
                         influx_token=settings.influx_token)
    except (SinkUnavailable, SinkRejected) as exc:
        typer.echo(f"push failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Grafana {report.grafana_version or '?'}: folder {report.folder}"
               f"{' (created)' if report.folder_created else ''}")
    for uid, what in report.datasources.items():
        typer.echo(f"datasource {uid}: {what}")
    typer.echo(f"{len(report.dashboards)} dashboards saved")
    if as_json:
        typer.echo(json.dumps({"grafana_version": report.grafana_version,
                               "folder": report.folder, "datasources": report.datasources,
                               "dashboards": report.dashboards}))


@app.command()
def check(
    influx_url: Annotated[str | None, _INFLUX_URL] = None,
    influx_db: Annotated[str | None, _INFLUX_DB] = None,
    last: Annotated[str, typer.Option("--last", help="Time range ending now, as Grafana's "
                                                     "$timeFilter (e.g. 6h, 7d).")] = "6h",
    interval: Annotated[int, typer.Option("--interval-s", help="$__interval in seconds.")] = 60,
    as_json: Annotated[bool, _JSON] = False,
) -> None:
    """Run every InfluxQL query of the dashboards (variables on "All") against InfluxDB."""
    from anju.dashboards.build import build_dashboards
    from anju.dashboards.check import run_queries_sync
    from anju.dashboards.macros import ALL, TimeRange, iter_influx_queries, variable_names
    from anju.errors import SinkUnavailable

    _, settings = _targets(influx_url, influx_db, None)
    built = [b.data for b in build_dashboards()]
    queries = [q for d in built for q in iter_influx_queries(d)]
    everything = {name: ALL for d in built for name in variable_names(d)}
    token = settings.influx_token.get_secret_value() if settings.influx_token else None
    try:
        outcomes = run_queries_sync(settings.influx_url, settings.influx_db, queries,
                                    time_range=TimeRange(relative=last), variables=everything,
                                    interval=f"{interval}s", interval_ms=interval * 1000,
                                    token=token)
    except SinkUnavailable as exc:
        typer.echo(f"check failed: {exc}", err=True)
        raise typer.Exit(1) from None
    failed = [o for o in outcomes if not o.ok]
    empty = [o for o in outcomes if o.ok and o.series == 0]
    for o in failed:
        typer.echo(f"ERROR {o.query.dashboard} {o.query.where}: {o.error}\n  {o.influxql}")
    for o in empty:
        typer.echo(f"empty {o.query.dashboard} {o.query.where}")
    typer.echo(f"{len(outcomes)} queries: {len(failed)} errors, {len(empty)} without data")
    if as_json:
        typer.echo(json.dumps({"queries": len(outcomes), "errors": len(failed),
                               "empty": len(empty)}))
    if failed:
        raise typer.Exit(1)
