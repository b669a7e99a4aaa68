"""Start and stop a private Mosquitto and a private InfluxDB 1.x as child processes.

For the tests, the demo and the benchmarks: each service runs on free loopback ports
with its generated config, log and data in a work directory::

    with LocalServices() as svc:
        env = svc.env()   # ANJU_MQTT_URL, ANJU_INFLUX_URL
        svc.influx.create_database("anju")

Children die with their parent (PR_SET_PDEATHSIG on Linux, plus an atexit stop),
except those started ``detached=True`` (``anju services up``). A service that fails
to start or to become ready raises :class:`anju.errors.ServiceError` carrying the
tail of its log. ``stop()`` then ``start()`` keeps the port and the data.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from anju.services._proc import free_port
from anju.services.influxdb import InfluxDB
from anju.services.mosquitto import Mosquitto

__all__ = ["InfluxDB", "LocalServices", "Mosquitto", "free_port"]


def _stop_and_remove(mosquitto: Mosquitto, influx: InfluxDB, path: str) -> None:
    if mosquitto.detached or influx.detached:
        return  # they outlive us on purpose, and need their files
    mosquitto.stop()
    influx.stop()
    shutil.rmtree(path, ignore_errors=True)


class LocalServices:
    """Mosquitto and InfluxDB together, in ``workdir/mosquitto`` and ``workdir/influxdb``.

    With ``workdir=None`` a temporary directory is used, removed when the context
    manager exits (or at interpreter exit), not by ``stop()``, so a stopped pair can
    be started again with its data.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        mosquitto_kwargs: dict[str, Any] | None = None,
        influx_kwargs: dict[str, Any] | None = None,
        detached: bool = False,
    ) -> None:
        """Prepare (not start) both services; kwargs go to Mosquitto / InfluxDB."""
        self._tempdir: str | None = None
        if workdir is None:
            self._tempdir = tempfile.mkdtemp(prefix="anju-services-")
            workdir = Path(self._tempdir)
        self.workdir = Path(workdir).resolve()
        self.mosquitto = Mosquitto(
            self.workdir / "mosquitto", detached=detached, **(mosquitto_kwargs or {})
        )
        self.influx = InfluxDB(
            self.workdir / "influxdb", detached=detached, **(influx_kwargs or {})
        )
        if self._tempdir is not None:
            # A finalizer rather than TemporaryDirectory, which warns (ResourceWarning, an
            # error under our pytest settings) when cleaned up implicitly; it stops the
            # services before removing their files, whichever of GC or exit comes first.
            self._cleanup = weakref.finalize(
                self, _stop_and_remove, self.mosquitto, self.influx, self._tempdir
            )

    def start(self, timeout: float = 30) -> None:
        """Start both (InfluxDB first: nothing should publish before storage is up).

        If the second fails, the first is stopped again before ServiceError propagates.
        """
        self.influx.start(timeout)
        try:
            self.mosquitto.start(timeout)
        except BaseException:
            self.influx.stop()
            raise

    def stop(self, timeout: float = 10) -> None:
        """Stop both (the broker first, so nothing is accepted that cannot be stored)."""
        try:
            self.mosquitto.stop(timeout)
        finally:
            self.influx.stop(timeout)

    @property
    def running(self) -> bool:
        """True while both children are alive."""
        return self.mosquitto.running and self.influx.running

    def env(self) -> dict[str, str]:
        """The environment a pipeline needs to use these services (CONTRACT §6)."""
        return {"ANJU_MQTT_URL": self.mosquitto.url, "ANJU_INFLUX_URL": self.influx.url}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            if self._tempdir is not None:
                self._cleanup()

    def __repr__(self) -> str:
        return f"<LocalServices {self.mosquitto!r} {self.influx!r}>"
