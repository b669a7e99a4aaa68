"""``anju simulate …`` and ``anju demo`` (CONTRACT §7).

Heavy imports happen inside the commands so that ``anju --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from anju.cliutil import JsonOpt, SiteOpt, emit_json, fail

__all__ = ["app", "register_demo"]

app = typer.Typer(no_args_is_help=True)





@app.command("site")
def site_cmd(
    out: Annotated[Path, typer.Option("--out", help="directory to write the site into")],
    estates: Annotated[int, typer.Option("--estates", min=1, max=100_000)] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    webhook_port: Annotated[int, typer.Option("--webhook-port", min=1, max=65535,
                                              help="port of the teams' webhooks")] = 9000,
    webhook_host: Annotated[str, typer.Option("--webhook-host")] = "127.0.0.1",
    prefix: Annotated[str, typer.Option("--prefix", help="estate ids are PREFIX001…")] = "e",
    json: JsonOpt = False,
) -> None:
    """Generate a city as a site directory: site.yaml, devices.csv, gateways.csv."""
    from anju.devices.registry import load_site
    from anju.errors import AnjuError
    from anju.simulators.city import plan_city, write_site

    try:
        write_site(plan_city(estates, seed, webhook_port=webhook_port,
                             webhook_host=webhook_host, estate_prefix=prefix), out)
        site = load_site(out)
        summary = site.summary() | {"site": str(out)}
    except (AnjuError, ValueError, OSError) as exc:
        raise fail(exc) from None
    if json:
        emit_json(summary)
    else:
        by = ", ".join(f"{n} {k}" for k, n in summary["by_kind"].items())
        typer.echo(f"wrote {out}: {summary['estates']} estates, {summary['buildings']} "
                   f"buildings, {summary['devices']} devices ({by})")
        secrets = sorted({t.secret_env for t in site.teams if t.webhook and t.secret_env})
        tokens = sorted({t.token_env for t in site.teams if t.token_env})
        # `anju run` refuses to start without a team's webhook secret: say which ones
        typer.echo(f"before `anju run`, set the teams' webhook secrets: {' '.join(secrets)}")
        typer.echo(f"and, for the alarm API, their tokens: {' '.join(tokens)}")


@app.command("month")
def month_cmd(
    out: Annotated[Path, typer.Option("--out", help="directory: site/, state/, truth.json")],
    start: Annotated[str, typer.Option("--from", help="first day of the month")] = "2026-11-01",
    end: Annotated[str, typer.Option("--to", help="day after the last")] = "2026-12-01",
    seed: Annotated[int, typer.Option("--seed")] = 19,
    json: JsonOpt = False,
) -> None:
    """A month of alarm handling by three property companies (prompt, slow, negligent),
    through the real alarm lifecycle, with the ground truth of the accountability report."""
    from anju.devices.registry import load_site
    from anju.report.period import parse_period
    from anju.simulators.month import ground_truth, plan_month, run_month, write_month_site

    try:
        period = parse_period(start, end)
    except ValueError as exc:
        raise fail(exc) from None
    site = load_site(write_month_site(out / "site", seed))
    plan = plan_month(site, period.start_ms, period.end_ms, seed)
    events = run_month(site, plan, out / "state")
    truth = ground_truth(site, plan)
    truth["falling_objects"] = [[*k, n] for k, n in truth["falling_objects"].items()]
    (out / "truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    summary = {"out": str(out), "alarms": len(plan.alarms), "events": events,
               "order": truth["order"]}
    if json:
        emit_json(summary)
    else:
        typer.echo(f"wrote {out}: {len(plan.alarms)} alarms, {events} events; "
                   f"anju report --site {out / 'site'} --state-dir {out / 'state'} "
                   f"--from {start} --to {end} --out {out / 'report'}")


@app.command("run")
def run_cmd(
    site: SiteOpt,
    scenario: Annotated[str | None, typer.Option(
        "--scenario", help="scenario file, or a bundled one by name (demo, hour)")] = None,
    duration: Annotated[float | None, typer.Option(
        "--duration", min=0.001, help="seconds of data time (default: the scenario's, or 60)")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="traffic seed")] = None,
    start: Annotated[str | None, typer.Option(
        "--start", help="data time of the start: now, epoch ms or ISO 8601")] = None,
    speed: Annotated[float, typer.Option(
        "--speed", min=0, help="data time runs this many times faster than wall time; "
                               "0: as fast as the broker takes it")] = 1.0,
    rate: Annotated[float | None, typer.Option(
        "--rate", min=0.001, help="at most this many messages a second")] = None,
    mqtt_url: Annotated[str, typer.Option("--mqtt-url", envvar="ANJU_MQTT_URL")] = (
        "mqtt://127.0.0.1:1883"),
    credentials: Annotated[Path | None, typer.Option(
        "--credentials", help="credentials.csv of `anju devices credentials`: each device "
                              "(or gateway) publishes as itself")] = None,
    via: Annotated[str, typer.Option(
        "--via", help="device: a message per reading on its device topic; gateway: a batch "
                      "per building and second on its gateway's topic")] = "device",
    record_to: Annotated[Path | None, typer.Option(
        "--record", help="write a replay (JSON lines for `anju rules eval`) instead")] = None,
    max_messages: Annotated[int | None, typer.Option("--max-messages", min=1)] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.1, help="stop publishing after this many wall seconds")] = None,
    processes: Annotated[int, typer.Option("--processes", min=1, max=64,
                                           help="publisher processes")] = 1,
    shard: Annotated[str, typer.Option("--shard", hidden=True)] = "0/1",
    wall_start: Annotated[float | None, typer.Option("--wall-start", hidden=True)] = None,
    progress: Annotated[bool, typer.Option(
        "--progress", help="stream progress as JSON lines")] = False,
    json: JsonOpt = False,
) -> None:
    """Publish a site's traffic and a scenario's incidents over MQTT, or record them."""
    from anju.errors import AnjuError
    from anju.simulators.run import RunOptions, run

    if via not in ("device", "gateway"):
        raise fail(f"--via {via!r}: expected device or gateway")
    try:
        i, n = (int(x) for x in shard.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        raise fail(f"--shard {shard!r}: expected i/N with 0 ≤ i < N") from None
    opts = RunOptions(site=site, scenario=scenario, duration_s=duration, seed=seed, start=start,
                      speed=speed, rate=rate, mqtt_url=mqtt_url, credentials=credentials,
                      via=via,  # type: ignore[arg-type]
                      record=record_to, max_messages=max_messages, timeout_s=timeout,
                      processes=processes, shard=(i, n), wall_start=wall_start)
    try:
        summary = run(opts, progress=progress)
    except AnjuError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if json:
        emit_json(summary)
    elif not progress:
        if record_to is not None:
            typer.echo(f"recorded {summary['messages']} messages ({summary['readings']} "
                       f"readings) to {record_to} in {summary['seconds']} s")
        else:
            typer.echo(f"published {summary['published']} messages ({summary['readings']} "
                       f"readings), {summary['acked']} acknowledged")


@app.command("scenarios")
def scenarios_cmd(json: JsonOpt = False) -> None:
    """List the bundled scenarios."""
    from anju.simulators.scenario import bundled_scenarios, load_scenario

    rows: list[dict[str, Any]] = []
    for name, path in sorted(bundled_scenarios().items()):
        sc = load_scenario(path)
        rows.append({"name": name, "path": str(path), "duration_s": sc.duration_s,
                     "incidents": len(sc.incidents),
                     "site": sc.site.model_dump() if sc.site else None,
                     "description": sc.description})
    if json:
        emit_json({"scenarios": rows})
        return
    for r in rows:
        site = r["site"]
        city = f"--estates {site['estates']} --seed {site['seed']}" if site else "any site"
        typer.echo(f"{r['name']:8s} {r['duration_s']:6g} s, {r['incidents']:2d} incidents "
                   f"(city: {city})\n         {r['description']}")


@app.command("truth")
def truth_cmd(
    site: SiteOpt,
    scenario: Annotated[str, typer.Option("--scenario")],
    start: Annotated[str | None, typer.Option("--start")] = None,
    json: JsonOpt = False,
) -> None:
    """Check a scenario against a site and print the alarms it must produce."""
    from anju.devices.registry import load_site
    from anju.errors import AnjuError
    from anju.simulators.run import DEFAULT_START_MS, parse_start
    from anju.simulators.scenario import bind, load_scenario
    from anju.simulators.scoring import ground_truth

    try:
        sc = load_scenario(scenario)
        bs = bind(sc, load_site(site))
        t0 = parse_start(start) if start else (sc.start_ms or DEFAULT_START_MS)
    except AnjuError as exc:
        raise fail(exc) from None
    truth = ground_truth(bs, t0)
    rows = [{"incident": t.incident, "rule": t.rule, "subject": t.subject,
             "from_ms": t.lo_ms, "to_ms": t.hi_ms, "optional": t.optional} for t in truth]
    if json:
        emit_json({"scenario": sc.name, "start_ms": t0, "incidents": len(sc.incidents),
                    "expected": rows})
        return
    for t in truth:
        opt = " (optional)" if t.optional else ""
        typer.echo(f"{t.incident:24s} {t.rule:30s} {t.subject:24s} "
                   f"+{(t.lo_ms - t0) / 1000:g}…{(t.hi_ms - t0) / 1000:g} s{opt}")


@app.command("score")
def score_cmd(
    site: SiteOpt,
    scenario: Annotated[str, typer.Option("--scenario")],
    events: Annotated[Path, typer.Option(
        "--events", help="alarm events as JSON lines (`anju rules eval --output`)")],
    start: Annotated[str | None, typer.Option(
        "--start", help="data time the run started (default: the scenario's)")] = None,
    json: JsonOpt = False,
) -> None:
    """Score alarm events (e.g. of a replay) against a scenario's ground truth."""
    from anju.devices.registry import load_site
    from anju.errors import AnjuError
    from anju.simulators.run import DEFAULT_START_MS, parse_start
    from anju.simulators.scenario import bind, load_scenario
    from anju.simulators.scoring import Observed, ground_truth, score

    try:
        sc = load_scenario(scenario)
        bs = bind(sc, load_site(site))
        t0 = parse_start(start) if start else (sc.start_ms or DEFAULT_START_MS)
        observed = [Observed(orjson.loads(line)) for line in events.read_bytes().splitlines()
                    if line.strip()]
    except (AnjuError, OSError, orjson.JSONDecodeError) as exc:
        raise fail(exc) from None
    card = score(ground_truth(bs, t0), observed, silenced=bs.silenced(),
                 until_ms=t0 + bs.duration_ms)
    if json:
        emit_json(card.contract())
    else:
        from anju.simulators.view import print_scorecard

        print_scorecard(card)
    if not card.perfect:
        raise typer.Exit(1)


def register_demo(root: typer.Typer) -> None:
    """Adds ``anju demo`` to the root app."""

    @root.command("demo")
    def demo(
        seconds: Annotated[float, typer.Option(
            "--seconds", min=10, help="wall-clock length of the scenario's replay")] = 60.0,
        scenario: Annotated[str, typer.Option(
            "--scenario", help="scenario file or bundled name")] = "demo",
        workdir: Annotated[Path | None, typer.Option(
            "--workdir", help="keep the city, logs and state here (default: a temp dir)")
        ] = None,
        json: JsonOpt = False,
    ) -> None:
        """Local broker and InfluxDB, a generated city, a scenario with known incidents, the
        pipeline and a webhook receiver; ends with a detection scorecard."""
        from anju.app.demo import run_demo
        from anju.errors import AnjuError

        try:
            card = run_demo(seconds=seconds, scenario=scenario, workdir=workdir,
                            quiet=json)
        except AnjuError as exc:
            raise fail(exc) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        if json:
            emit_json(card)
