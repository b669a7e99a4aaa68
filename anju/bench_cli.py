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
    json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Vectorised rule engine vs the scalar reference engine on the same readings."""
    from anju.rules.bench import run_bench

    res = run_bench(readings=readings, devices=devices, batch_size=batch_size,
                    baseline_readings=baseline_readings,
                    progress=None if json else (lambda m: typer.echo(m, err=True)))
    if json:
        sys.stdout.write(orjson.dumps(res).decode() + "\n")
        return
    typer.echo(f"{res['readings']:,} readings, {res['rules']} rules, {res['devices']:,} devices")
    typer.echo(f"vectorised: {res['readings_per_s']:,} readings/s")
    typer.echo(f"reference:  {res['baseline_readings_per_s']:,} readings/s "
               f"(on {res['baseline_readings']:,} readings)")
    typer.echo(f"speedup:    {res['speedup']}×   transitions agree: {res['agree_on_baseline']}")
