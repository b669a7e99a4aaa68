"""Shared fixtures: one Mosquitto and one InfluxDB per test session, unique names per test.

Tests that stop or kill a session service must start it again before they end
(``services.influx.start()``; the port and data are kept, and start() is a no-op on a
running service).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from anju.errors import ServiceError
from anju.services import LocalServices
from tests.mqtt_support import purge_session


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServices]:
    """A started Mosquitto + InfluxDB for the whole session, stopped at its end."""
    svc = LocalServices(tmp_path_factory.mktemp("services"))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def influx_db(services: LocalServices) -> Iterator[str]:
    """A fresh InfluxDB database on the session InfluxDB, named ``t_<10 hex>``."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    services.influx.create_database(name)
    yield name
    if services.influx.running:
        # Only to keep the session's influxd small; a failure here is no test's concern.
        with contextlib.suppress(ServiceError):
            services.influx.drop_database(name)


@pytest.fixture
def topic_prefix() -> str:
    """A unique estate id for this test's MQTT topics (matches ``[A-Za-z0-9_-]{1,64}``)."""
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cid(services: LocalServices) -> Iterator[str]:
    """A unique MQTT client id; its persistent session is ended after the test."""
    name = f"anju-test-{uuid.uuid4().hex[:8]}"
    yield name
    if services.mosquitto.running:
        purge_session(services, name)
