"""The ``anju`` command: one Typer app, sub-commands grouped as in CONTRACT.md §7.

Each area owns its sub-app in ``anju/<area>/cli.py``; heavy imports happen inside the
commands so that ``anju --help`` stays instant.
"""

from __future__ import annotations

import typer

from anju.cliutil import quiet_flag_types
from anju.commands.alarms import register as _register_alarms
from anju.commands.bench import app as bench_app
from anju.commands.dashboards import app as dashboards_app
from anju.commands.devices import app as devices_app
from anju.commands.report import register as _register_report
from anju.commands.rules import app as rules_app
from anju.commands.run import register as _register_run
from anju.commands.services import app as services_app
from anju.commands.simulate import app as simulate_app
from anju.commands.simulate import register_demo as _register_demo

__all__ = ["app", "main"]

quiet_flag_types()

app = typer.Typer(
    name="anju",
    help="安居 anju — telemetry, rules and alarms for the safety sensors of residential estates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings are reflowed, not broken where the source breaks
    add_completion=False,
)
_register_run(app)
_register_demo(app)
_register_alarms(app)
_register_report(app)
app.add_typer(simulate_app, name="simulate", help="City model, scenarios and publishers.")
app.add_typer(services_app, name="services", help="Local Mosquitto and InfluxDB.")
app.add_typer(rules_app, name="rules", help="Rule files: check, replay recordings.")
app.add_typer(bench_app, name="bench", help="Benchmarks against in-run baselines.")
app.add_typer(devices_app, name="devices", help="Site registry and broker credentials.")
app.add_typer(dashboards_app, name="dashboards", help="Grafana dashboards as code.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
