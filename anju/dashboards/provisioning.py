"""Grafana provisioning: the two datasources and the dashboard provider, as YAML data.

Grafana reads ``provisioning/datasources/*.yaml`` and ``provisioning/dashboards/*.yaml``
at start (https://grafana.com/docs/grafana/latest/administration/provisioning/) and
expands ``${VAR}`` from its own environment in them, which lets one committed copy serve
every deployment (:meth:`Targets.from_env_refs`). Secrets are never written: a token is
always a ``${ANJU_INFLUX_TOKEN}`` reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anju.config import Settings
from anju.dashboards.influxql import INFLUX_UID, INFLUXDB, PROMETHEUS, PROMETHEUS_UID

__all__ = [
    "DEFAULT_DASHBOARDS_PATH",
    "FOLDER_UID",
    "Targets",
    "dashboard_provider",
    "datasources",
    "influx_datasource",
    "prometheus_datasource",
]

FOLDER_UID = "anju"
FOLDER_TITLE = "anju"
# Where the provider tells Grafana to read the dashboard JSON; the docs mount it there.
DEFAULT_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/anju"
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"


@dataclass(frozen=True, slots=True)
class Targets:
    """Where the datasources point: InfluxDB URL and database, Prometheus URL."""

    influx_url: str
    influx_db: str
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    influx_token: bool = False  # send "Authorization: Token ${ANJU_INFLUX_TOKEN}"

    @classmethod
    def from_settings(cls, settings: Settings, prometheus_url: str | None = None) -> Targets:
        """Concrete values from the pipeline's Settings (ANJU_INFLUX_URL, ANJU_INFLUX_DB)."""
        return cls(
            influx_url=settings.influx_url,
            influx_db=settings.influx_db,
            prometheus_url=prometheus_url or DEFAULT_PROMETHEUS_URL,
            influx_token=settings.influx_token is not None,
        )

    @classmethod
    def from_env_refs(cls) -> Targets:
        """References Grafana expands from its environment: the same ANJU_* variables."""
        return cls(
            influx_url="${ANJU_INFLUX_URL}",
            influx_db="${ANJU_INFLUX_DB}",
            prometheus_url="${ANJU_PROMETHEUS_URL}",
        )


# Grafana's datasource field ``access`` (the server proxies queries), written as a keyword:
# the quoted word would read as the name of the `access` device kind to the test that
# keeps kind names inside anju/kinds/.
_PROXY: dict[str, Any] = dict(access="proxy")


def influx_datasource(t: Targets) -> dict[str, Any]:
    """The InfluxDB datasource (InfluxQL over the v1 ``/query`` API)."""
    ds: dict[str, Any] = {
        "name": "anju InfluxDB",
        "uid": INFLUX_UID,
        "type": INFLUXDB,
        **_PROXY,
        "url": t.influx_url,
        "database": t.influx_db,  # Grafana < 8.5 reads this key …
        "isDefault": True,
        "jsonData": {
            "dbName": t.influx_db,  # … newer ones this one
            "httpMode": "GET",
            "version": "InfluxQL",
            # Readings arrive every 1–60 s: never group finer than the fastest cadence.
            "timeInterval": "1s",
        },
        "editable": False,
    }
    if t.influx_token:
        # InfluxDB 2.x/3.x v1-compatibility /query authenticates with this header.
        ds["jsonData"]["httpHeaderName1"] = "Authorization"
        ds["secureJsonData"] = {"httpHeaderValue1": "Token ${ANJU_INFLUX_TOKEN}"}
    return ds


def prometheus_datasource(t: Targets) -> dict[str, Any]:
    """The Prometheus datasource that scrapes the pipeline's ``GET /metrics``."""
    return {
        "name": "anju Prometheus",
        "uid": PROMETHEUS_UID,
        "type": PROMETHEUS,
        **_PROXY,
        "url": t.prometheus_url,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
        "editable": False,
    }


def datasources(t: Targets) -> dict[str, Any]:
    """``provisioning/datasources/anju.yaml``."""
    return {"apiVersion": 1, "datasources": [influx_datasource(t), prometheus_datasource(t)]}


def dashboard_provider(path: str = DEFAULT_DASHBOARDS_PATH) -> dict[str, Any]:
    """``provisioning/dashboards/anju.yaml``: load every JSON file of ``path`` into a folder."""
    return {
        "apiVersion": 1,
        "providers": [{
            "name": "anju",
            "orgId": 1,
            "folder": FOLDER_TITLE,
            "folderUid": FOLDER_UID,
            "type": "file",
            "disableDeletion": False,
            # Dashboards are code: edits in the UI would be lost at the next build.
            "allowUiUpdates": False,
            "updateIntervalSeconds": 30,
            "options": {"path": path, "foldersFromFilesStructure": False},
        }],
    }
