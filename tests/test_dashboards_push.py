"""``anju dashboards push`` against a fake Grafana on 127.0.0.1 that records the API calls.

No real Grafana can run on this machine, so the fake answers the few endpoints the push
uses the way Grafana's HTTP API documents them (404 for a missing folder or datasource,
401 without a valid bearer token) and keeps what it was sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from anju.cli import app
from anju.dashboards.build import build_dashboards
from anju.dashboards.influxql import INFLUX_UID, PROMETHEUS_UID
from anju.dashboards.provisioning import Targets
from anju.dashboards.push import push
from anju.errors import SinkRejected, SinkUnavailable
from anju.services import free_port

TOKEN = "glsa_test-token-0123456789"


@dataclass
class FakeGrafana:
    """State and call log of the fake."""

    token: str = TOKEN
    fail_dashboards_with: int | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth_headers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def handle(self, method: str, path: str, auth: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.calls.append((method, path))
            self.auth_headers.add(auth)
            if auth != f"Bearer {self.token}":
                return 401, {"message": "Unauthorized"}
            if method == "GET" and path == "/api/frontend/settings":
                return 200, {"buildInfo": {"version": "11.3.0"}}
            if method == "GET" and path.startswith("/api/folders/"):
                uid = path.rsplit("/", 1)[1]
                return (200, self.folders[uid]) if uid in self.folders else (
                    404, {"message": "folder not found"})
            if method == "POST" and path == "/api/folders":
                self.folders[body["uid"]] = body
                return 200, {"uid": body["uid"], "title": body["title"]}
            if path.startswith("/api/datasources/uid/"):
                uid = path.rsplit("/", 1)[1]
                if uid not in self.datasources:
                    return 404, {"message": "Data source not found"}
                if method == "PUT":
                    self.datasources[uid] = body
                return 200, self.datasources[uid]
            if method == "POST" and path == "/api/datasources":
                self.datasources[body["uid"]] = body
                return 200, {"message": "Datasource added", "datasource": body}
            if method == "POST" and path == "/api/dashboards/db":
                if self.fail_dashboards_with:
                    return self.fail_dashboards_with, {"message": "nope"}
                uid = body["dashboard"]["uid"]
                self.dashboards[uid] = body
                return 200, {"status": "success", "uid": uid, "version": 1}
            return 404, {"message": f"no route {method} {path}"}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, answer = fake.handle(self.command, self.path.split("?")[0],
                                         self.headers.get("Authorization", ""), body)
            out = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              name="fake-grafana", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


TARGETS = Targets(influx_url="http://127.0.0.1:8086", influx_db="anju",
                  prometheus_url="http://127.0.0.1:9090")


def test_push_creates_then_updates(grafana: FakeGrafana) -> None:
    built = build_dashboards()
    first = push(grafana.url, SecretStr(TOKEN), built, targets=TARGETS)
    assert first.grafana_version == "11.3.0"
    assert first.folder_created
    assert first.datasources == {INFLUX_UID: "created", PROMETHEUS_UID: "created"}
    assert sorted(first.dashboards) == sorted(b.uid for b in built)
    assert grafana.auth_headers == {f"Bearer {TOKEN}"}
    saved = grafana.dashboards["anju-overview"]
    assert saved["folderUid"] == "anju" and saved["overwrite"] is True
    assert saved["dashboard"] == next(b.data for b in built if b.uid == "anju-overview")
    assert "id" not in saved["dashboard"]  # uid-addressed: Grafana must not match on id
    assert grafana.datasources[INFLUX_UID]["jsonData"]["dbName"] == "anju"
    assert "secureJsonData" not in grafana.datasources[INFLUX_UID]

    grafana.calls.clear()
    second = push(grafana.url, SecretStr(TOKEN), built, targets=TARGETS)
    assert not second.folder_created
    assert second.datasources == {INFLUX_UID: "updated", PROMETHEUS_UID: "updated"}
    assert ("POST", "/api/folders") not in grafana.calls
    assert ("PUT", f"/api/datasources/uid/{INFLUX_UID}") in grafana.calls
    assert grafana.calls.count(("POST", "/api/dashboards/db")) == len(built)


def test_push_sends_the_influx_token_as_a_secret_only(grafana: FakeGrafana) -> None:
    targets = Targets("http://127.0.0.1:8086", "anju", influx_token=True)
    push(grafana.url, SecretStr(TOKEN), build_dashboards()[:1], targets=targets,
         influx_token=SecretStr("influx-s3cret"))
    ds = grafana.datasources[INFLUX_UID]
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token influx-s3cret"}
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"


def test_push_without_datasources(grafana: FakeGrafana) -> None:
    report = push(grafana.url, SecretStr(TOKEN), build_dashboards())
    assert report.datasources == {} and grafana.datasources == {}
    assert len(grafana.dashboards) == len(report.dashboards)


def test_bad_token_is_rejected_not_retried(grafana: FakeGrafana) -> None:
    with pytest.raises(SinkRejected) as err:
        push(grafana.url, SecretStr("wrong"), build_dashboards(), targets=TARGETS)
    assert err.value.status == 401
    assert "wrong" not in str(err.value)
    assert grafana.dashboards == {}


def test_server_error_is_unavailable(grafana: FakeGrafana) -> None:
    grafana.fail_dashboards_with = 503
    with pytest.raises(SinkUnavailable):
        push(grafana.url, SecretStr(TOKEN), build_dashboards())


def test_nobody_listening_is_unavailable() -> None:
    url = f"http://admin:pa55word@127.0.0.1:{free_port()}"
    with pytest.raises(SinkUnavailable) as err:
        push(url, None, build_dashboards()[:1], timeout_s=2)
    assert "pa55word" not in str(err.value)


def test_cli_push_never_prints_the_token(grafana: FakeGrafana) -> None:
    result = CliRunner().invoke(app, [
        "dashboards", "push", "--url", grafana.url, "--token", TOKEN,
        "--influx-url", "http://127.0.0.1:8086", "--influx-db", "anju", "--json"])
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["grafana_version"] == "11.3.0"
    assert len(report["dashboards"]) == len(grafana.dashboards) >= 8
    bad = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana.url,
                                   "--token", "nope-not-it"])
    assert bad.exit_code == 1
    assert "nope-not-it" not in bad.output
