"""``anju bench``: benchmarks reported as ratios against baselines measured in the same run."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

app = typer.Typer(no_args_is_help=True)


@app.command("rules")
def bench_rules(
    readings: Annotated[int, typer.Option(help="readings to evaluate")] = 1_000_000,
    devices: Annotated[int, typer.Option(help="devices in the generated site")] = 10_000,
    batch_size: Annotated[int, typer.Option(help="readings per batch")] = 10_000,
    baseline_readings: Annotated[int, typer.Option(
        help="readings given to the scalar reference engine")] = 100_000,
    traffic: Annotated[str, typer.Option(
        help="city: a simulated city's normal traffic; stress: random readings whose "
             "conditions flip all the time")] = "city",
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Vectorised rule engine vs the scalar reference engine on the same readings."""
    from anju.app.bench_rules import run_bench

    if traffic not in ("city", "stress"):
        raise typer.BadParameter("city or stress", param_hint="--traffic")
    res = run_bench(readings=readings, devices=devices, batch_size=batch_size,
                    baseline_readings=baseline_readings, traffic=traffic,
                    progress=None if json else (lambda m: typer.echo(m, err=True)))
    if json:
        sys.stdout.write(orjson.dumps(res).decode() + "\n")
        return
    typer.echo(f"{res['readings']:,} readings, {res['rules']} rules, {res['devices']:,} devices")
    typer.echo(f"vectorised: {res['readings_per_s']:,} readings/s")
    typer.echo(f"reference:  {res['baseline_readings_per_s']:,} readings/s "
               f"(on {res['baseline_readings']:,} readings)")
    typer.echo(f"speedup:    {res['speedup']}×   transitions agree: {res['agree_on_baseline']}")
    typer.echo(f"fixed cost: {res['batch_fixed_cost_us']} µs a batch (of 100 readings); "
               f"a clock tick {res['tick_cost_us']} µs")


@app.command("ingest")
def bench_ingest(
    messages: Annotated[int, typer.Option(help="messages queued for the drain phase")] = 50_000,
    seconds: Annotated[float, typer.Option(help="length of the live phase")] = 5.0,
    live_rate: Annotated[float, typer.Option(
        "--live-rate", help="messages/s of the live phase (default: 80 % of what the "
        "publishers sustain with the pipeline on)", min=0)] = 0.0,
    gateway: Annotated[bool, typer.Option(
        "--gateway", help="gateway batches: 100 readings per message")] = False,
    gateway_batch: Annotated[int, typer.Option(
        "--gateway-batch", help="gateway batches of N readings per message (the contract's "
        "batch topics)")] = 0,
    publishers: Annotated[int, typer.Option(help="publisher processes")] = 2,
    quick: Annotated[bool, typer.Option(
        "--quick", help="a few seconds in all, for the test suite")] = False,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The live pipeline (everything on) against a bare MQTT subscriber, same broker, same run."""
    from anju.app.bench_ingest import run_bench

    if quick:
        messages, seconds = min(messages, 200 if gateway or gateway_batch else 3000), \
            min(seconds, 1.5)
    res = run_bench(messages=messages, seconds=seconds, gateway=gateway,
                    gateway_batch=gateway_batch, publishers=publishers, live_rate=live_rate,
                    progress=lambda m: typer.echo(m, err=True))
    extra = res.pop("extra")
    if json:
        typer.echo(f"extra: {orjson.dumps(extra).decode()}", err=True)
        sys.stdout.write(orjson.dumps(res).decode() + "\n")
        return
    lat = res["alarm_latency_ms"]
    typer.echo(f"published {res['published']:,} readings, stored {res['stored']:,}, "
               f"lost {res['lost']:,}")
    typer.echo(f"pipeline: {res['msgs_per_s']:,.0f} msg/s, {res['readings_per_s']:,.0f} "
               f"readings/s; bare subscriber: {res['ceiling_msgs_per_s']:,.0f} msg/s; "
               f"ratio {res['ratio']}")
    at = f"{extra['live_msgs_per_s']:,.0f} msg/s"
    typer.echo(f"alarm latency (publish → webhook) at {at}: p50 {lat['p50']} ms, "
               f"p99 {lat['p99']} ms ({extra['alarms_received']}/{extra['alarms_injected']})")
    typer.echo(f"peak RSS {extra['rss_mb_peak']} MB")


@app.command("report")
def bench_report(
    estates: Annotated[int, typer.Option(help="estates of the generated city")] = 500,
    alarms_per_estate: Annotated[int, typer.Option(help="alarms a month per estate, besides "
                                                   "outages")] = 60,
    quick: Annotated[bool, typer.Option(
        "--quick", help="a few estates, for the test suite")] = False,
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A month of a city through ``anju report`` (budget: 500 estates in under 60 s)."""
    from anju.report.bench import run_bench

    if quick:
        estates, alarms_per_estate = min(estates, 3), min(alarms_per_estate, 20)
    res = run_bench(estates=estates, alarms_per_estate=alarms_per_estate,
                    progress=lambda m: typer.echo(m, err=True))
    if json:
        sys.stdout.write(orjson.dumps(res).decode() + "\n")
        return
    typer.echo(f"{res['estates']} estates, {res['devices']:,} devices, {res['alarms']:,} "
               f"alarms ({res['events']:,} events; generated in {res['generate_s']} s)")
    typer.echo(f"report: {res['report_s']} s (site {res['site_s']} s, store + figures "
               f"{res['compute_s']} s, files {res['write_s']} s), CPU {res['cpu_s']} s; "
               f"budget {res['budget_s']:.0f} s: {'ok' if res['within_budget'] else 'OVER'}")
