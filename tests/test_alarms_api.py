"""The HTTP API: health, metrics, OpenAPI, and alarms behind per-team bearer tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from anju.alarms import AlarmManager, MemoryAlarmStore, make_api
from anju.devices.registry import Site, load_site
from anju.rules.transition import Transition

SITE_YAML = """
estates:
  - {id: e1, buildings: [{id: b1, floors: 18}]}
  - {id: e2, buildings: [{id: b1, floors: 6}]}
teams:
  - {id: prop-e1, role: property, estates: [e1], token_env: T_API_TOKEN_E1}
  - {id: prop-e2, role: property, estates: [e2], token_env: T_API_TOKEN_E2}
  - {id: fire, role: fire, estates: ['*'], token_env: T_API_TOKEN_FIRE}
  - {id: no-token, role: supervisor, estates: ['*'], token_env: T_API_TOKEN_UNSET}
"""
TOKENS = {"prop-e1": "tok-e1-0123456789", "prop-e2": "tok-e2-0123456789",
          "fire": "tok-fire-0123456789"}
NOW = 1_763_800_100_000


def tr(estate: str, subject: str, ts: int = 1_763_800_000_000) -> Transition:
    return Transition(rule="smoke.alarm", event="raised", kind="smoke", severity="major",
                      roles=("property",), subject=subject, device=subject, estate=estate,
                      building="b1", floor=2, zone=None, ts=ts, started_at=ts, value=0.2,
                      message="smoke")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("T_API_TOKEN_E1", TOKENS["prop-e1"])
    monkeypatch.setenv("T_API_TOKEN_E2", TOKENS["prop-e2"])
    monkeypatch.setenv("T_API_TOKEN_FIRE", TOKENS["fire"])
    monkeypatch.delenv("T_API_TOKEN_UNSET", raising=False)
    (tmp_path / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (tmp_path / "devices.csv").write_text("device,kind,estate,building\n", encoding="utf-8")
    return load_site(tmp_path)


Api = tuple[TestClient[Any, Any], AlarmManager, "Env", CollectorRegistry]


class Env:
    def __init__(self) -> None:
        self.broker: Any = "connected"


@pytest.fixture
async def api(site: Site) -> AsyncIterator[Api]:
    store = MemoryAlarmStore()
    reg = CollectorRegistry()
    mgr = AlarmManager(site, store, registry=reg)
    env = Env()
    app = make_api(mgr, store, site, registry=reg, clock_ms=lambda: NOW,
                   health=lambda: {"mqtt": env.broker, "influxdb": {"ok": False, "spool": 3}})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, mgr, env, reg


def auth(team: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[team]}"}


async def test_tokens_and_estate_scoping(api: Any) -> None:
    client, mgr, _, _ = api
    [a1] = mgr.on_transitions([tr("e1", "s-1")])
    [a2] = mgr.on_transitions([tr("e2", "s-2", ts=1_763_800_000_500)])

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"},
                    {"Authorization": f"bearer {TOKENS['fire']}x"}, {"Authorization": "Bearer "}):
        r = await client.get("/alarms", headers=headers)
        assert r.status == 401, headers
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await client.post(f"/alarms/{a1.alarm_id}/ack", json={"by": "x"}, headers=headers)
        assert r.status == 401

    r = await client.get("/alarms", headers=auth("prop-e1"))
    assert r.status == 200
    rows = (await r.json())["alarms"]
    assert [x["alarm_id"] for x in rows] == [a1.alarm_id]
    assert rows[0]["state"] == "raised" and rows[0]["rule"] == "smoke.alarm"
    r = await client.get("/alarms", headers=auth("fire"))
    assert [x["alarm_id"] for x in (await r.json())["alarms"]] == [a2.alarm_id, a1.alarm_id]
    r = await client.get("/alarms?estate=e2", headers=auth("fire"))
    assert [x["alarm_id"] for x in (await r.json())["alarms"]] == [a2.alarm_id]
    r = await client.get("/alarms?estate=e2", headers=auth("prop-e1"))  # not its estate
    assert (await r.json())["alarms"] == []

    # acknowledging outside one's estates looks like an unknown alarm
    r = await client.post(f"/alarms/{a1.alarm_id}/ack", json={"by": "Li"},
                          headers=auth("prop-e2"))
    assert r.status == 404
    r = await client.post("/alarms/0000/ack", json={"by": "Li"}, headers=auth("prop-e1"))
    assert r.status == 404
    r = await client.post(f"/alarms/{a1.alarm_id}/ack", json={"by": "Wang", "note": "走了"},
                          headers=auth("prop-e1"))
    assert r.status == 200
    ev = await r.json()
    assert ev["event"] == "acknowledged" and ev["ts"] == NOW
    assert ev["details"]["ack"] == {"by": "Wang", "note": "走了", "team": "prop-e1"}
    r = await client.post(f"/alarms/{a1.alarm_id}/ack", json={"by": "Wang"},
                          headers=auth("prop-e1"))
    assert r.status == 409

    r = await client.get("/alarms?state=all", headers=auth("prop-e1"))
    [row] = (await r.json())["alarms"]
    assert row["state"] == "acknowledged" and row["acknowledged_by"] == "Wang"


async def test_bad_requests(api: Any) -> None:
    client, mgr, _, _ = api
    [a] = mgr.on_transitions([tr("e1", "s-1")])
    for body in (b"not json", b"{}", b'{"by": "x", "extra": 1}'):
        r = await client.post(f"/alarms/{a.alarm_id}/ack", data=body, headers=auth("prop-e1"))
        assert r.status == 422
    for q in ("state=closed", "limit=0", "limit=x"):
        r = await client.get(f"/alarms?{q}", headers=auth("prop-e1"))
        assert r.status == 400


async def test_healthz_follows_the_broker(api: Any) -> None:
    client, _, env, _ = api
    r = await client.get("/healthz")
    body = await r.json()
    assert r.status == 200 and body["status"] == "ok"
    assert body["dependencies"]["influxdb"] == {"ok": False, "spool": 3}
    env.broker = {"ok": False, "error": "connection refused"}
    r = await client.get("/healthz")
    assert r.status == 503 and (await r.json())["status"] == "down"


async def test_metrics_and_openapi(api: Any) -> None:
    client, mgr, _, _ = api
    mgr.on_transitions([tr("e1", "s-1")])
    r = await client.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    text = await r.text()
    assert 'anju_alarm_events_total{event="raised",rule="smoke.alarm"} 1.0' in text
    r = await client.get("/openapi.json")
    doc = await r.json()
    assert doc["openapi"].startswith("3.")
    assert {"/healthz", "/metrics", "/alarms", "/alarms/{alarm_id}/ack"} <= set(doc["paths"])
    assert "alarm_id" in doc["components"]["schemas"]["AlarmEvent"]["properties"]


def test_openapi_documents_every_route_of_the_pipeline_api(site: Site) -> None:
    from anju.alarms.api import openapi_doc
    from anju.report.api import add_reports

    store = MemoryAlarmStore()
    reg = CollectorRegistry()
    app = make_api(AlarmManager(site, store, registry=reg), store, site, registry=reg,
                   health=lambda: {})
    add_reports(app)  # as the pipeline does (anju/app/pipeline.py)
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    documented = {(m, p) for p, ops in openapi_doc()["paths"].items() for m in ops}
    assert routes and routes <= documented, routes - documented
