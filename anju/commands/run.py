"""``anju run``: the live pipeline (CONTRACT.md §6)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

if TYPE_CHECKING:
    from anju.config import Settings
    from anju.devices.registry import Site

__all__ = ["register"]


class _SettingsEpilog(TyperCommand):
    """``anju run --help`` ends with every setting; computed when shown, so that building
    the command tree (``anju --help``) does not import pydantic."""

    @property
    def epilog(self) -> str:
        from anju.config import settings_help

        return settings_help()

    @epilog.setter
    def epilog(self, _value: str | None) -> None:
        pass


def register(root: typer.Typer) -> None:
    """Adds ``anju run`` to the root app."""

    @root.command("run", cls=_SettingsEpilog)
    def run(
        site: Annotated[Path, typer.Option("--site", help="site directory (site.yaml, "
                                           "devices.csv)")],
        config: Annotated[Path | None, typer.Option(
            "--config", help="TOML file of settings (the environment overrides it)")] = None,
        partition: Annotated[str | None, typer.Option(
            "--partition", help="i/N: serve the estates whose index ≡ i (mod N); "
                                "default ANJU_PARTITION or 0/1")] = None,
        log_level: Annotated[str, typer.Option(
            "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
    ) -> None:
        """Run ingest, storage, rules, alarms and the HTTP API until SIGINT or SIGTERM,
        then drain and exit 0."""
        from pydantic import ValidationError

        from anju.config import load_settings
        from anju.devices.registry import load_site
        from anju.errors import AnjuError

        logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            overrides = {"partition": partition} if partition else {}
            settings = load_settings(config, **overrides)
            the_site = load_site(site)
        except (AnjuError, ValidationError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            asyncio.run(_serve(settings, the_site))
        except AnjuError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


async def _serve(settings: Settings, site: Site) -> None:
    from anju.app.pipeline import Pipeline

    log = logging.getLogger("anju.run")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pipeline = Pipeline(settings, site)
    async with pipeline:
        host, port = settings.api_host_port
        log.info("running: %d topic filter(s), partition %s, API http://%s:%d",
                 len(pipeline.topics), settings.partition, host, port)
        await stop.wait()
        log.info("stopping: draining")
    log.info("stopped: %s", pipeline.stats())
