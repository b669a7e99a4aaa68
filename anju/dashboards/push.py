"""Push the dashboards (and optionally the datasources) to a running Grafana.

Uses grafana-client (Grafana's HTTP API: ``/api/health``, ``/api/folders``,
``/api/datasources``, ``/api/dashboards/db``), idempotently: the folder and datasources
are created when missing and updated when present, dashboards are saved with
``overwrite`` under their stable uids. The token is sent as ``Authorization: Bearer``
by grafana-client and never printed.

grafana-client is synchronous (niquests); this runs from the CLI, not on an event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import niquests.exceptions
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError
from pydantic import SecretStr

from anju.dashboards.build import Built
from anju.dashboards.provisioning import (
    FOLDER_TITLE,
    FOLDER_UID,
    Targets,
    influx_datasource,
    prometheus_datasource,
)
from anju.errors import SinkRejected, SinkUnavailable

__all__ = ["PushReport", "push"]


@dataclass
class PushReport:
    """What a push did: Grafana's version, the folder, datasources and dashboards saved."""

    grafana_version: str | None = None
    folder: str = FOLDER_UID
    folder_created: bool = False
    datasources: dict[str, str] = field(default_factory=dict)  # uid → created | updated
    dashboards: list[str] = field(default_factory=list)


def _safe(url: str) -> str:
    """``url`` without its user:password part, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _status(exc: GrafanaException) -> int | None:
    code = getattr(exc, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _push_datasource(api: GrafanaApi, ds: dict[str, Any]) -> str:
    try:
        api.datasource.get_datasource_by_uid(ds["uid"])
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise
        api.datasource.create_datasource(ds)
        return "created"
    api.datasource.update_datasource_by_uid(ds["uid"], ds)
    return "updated"


def push(
    url: str,
    token: SecretStr | None,
    dashboards: Sequence[Built],
    *,
    targets: Targets | None = None,
    influx_token: SecretStr | None = None,
    folder_uid: str = FOLDER_UID,
    timeout_s: float = 10.0,
) -> PushReport:
    """Save ``dashboards`` (and, with ``targets``, the two datasources) to Grafana at ``url``.

    Raises :class:`SinkUnavailable` when Grafana cannot be reached or answers 5xx, and
    :class:`SinkRejected` (with the status) when it refuses a request (401, 403, 412 …).
    """
    credential = token.get_secret_value() if token is not None else None
    api = GrafanaApi.from_url(url, credential=credential, timeout=timeout_s)
    report = PushReport(folder=folder_uid)
    where = _safe(url)
    try:
        report.grafana_version = (api.health.check() or {}).get("version")
        try:
            api.folder.get_folder(folder_uid)
        except GrafanaClientError as exc:
            if _status(exc) != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=folder_uid)
            report.folder_created = True
        if targets is not None:
            for ds in (influx_datasource(targets), prometheus_datasource(targets)):
                if "secureJsonData" in ds:
                    if influx_token is None:
                        del ds["secureJsonData"], ds["jsonData"]["httpHeaderName1"]
                    else:
                        # Over the API Grafana does not expand ${VAR}: send the value,
                        # which Grafana stores encrypted.
                        ds["secureJsonData"] = {
                            "httpHeaderValue1": f"Token {influx_token.get_secret_value()}"}
                report.datasources[ds["uid"]] = _push_datasource(api, ds)
        for built in dashboards:
            api.dashboard.update_dashboard({
                "dashboard": built.data,
                "folderUid": folder_uid,
                "overwrite": True,
                "message": "anju dashboards push",
            })
            report.dashboards.append(built.uid)
    except GrafanaServerError as exc:
        raise SinkUnavailable(f"Grafana at {where}: {exc}") from exc
    except GrafanaClientError as exc:
        raise SinkRejected(f"Grafana at {where} refused: {exc}", status=_status(exc)) from exc
    except (GrafanaException, niquests.exceptions.RequestException) as exc:
        raise SinkUnavailable(f"Grafana at {where}: {exc}") from exc
    finally:
        api.client.s.close()
    return report
