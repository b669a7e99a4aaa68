"""``GET /devices/health`` on a real aiohttp server over a real SQLite store: counts per
building from the open alarms, each device's last reading time from the engine's state,
scoping by team token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from anju.alarms import AlarmManager, SqliteAlarmStore, make_api
from anju.devices.registry import Site, load_site
from anju.rules.clock import NEVER
from anju.rules.transition import Transition

SITE_YAML = """
estates:
  - {id: e1, buildings: [{id: b1, floors: 18}, {id: b2, floors: 9}]}
  - {id: e2, buildings: [{id: b1, floors: 6}]}
teams:
  - {id: prop-e1, role: property, estates: [e1], token_env: H_TOKEN_E1}
  - {id: prop-e2, role: property, estates: [e2], token_env: H_TOKEN_E2}
  - {id: city, role: supervisor, estates: ["*"], token_env: H_TOKEN_CITY}
"""
CAMERA = ('"{""mount_height_m"": 2.5, ""distance_m"": 25.0, ""tilt_deg"": 40.0, '
          '""focal_px"": 1500.0, ""cy_px"": 1080.0}"')
DEVICES = f"""device,kind,estate,building,floor,zone,params
s-1,smoke,e1,b1,3,stair-A,
s-2,smoke,e1,b1,4,stair-A,
c-1,camera,e1,b1,,facade-S,{CAMERA}
s-3,smoke,e1,b2,1,hall,
s-9,smoke,e2,b1,2,hall,
"""
TOKENS = {"H_TOKEN_E1": "tok-h-e1-0123456", "H_TOKEN_E2": "tok-h-e2-0123456",
          "H_TOKEN_CITY": "tok-h-city-0123456"}
NOW = 1_763_800_100_000


def tr(rule: str, device: str, kind: str, estate: str = "e1", building: str = "b1"
       ) -> Transition:
    return Transition(rule=rule, event="raised", kind=kind, severity="minor",
                      roles=("property",), subject=device, device=device, estate=estate,
                      building=building, floor=3, zone="z", ts=NOW - 60_000,
                      started_at=NOW - 60_000, value=None, message=rule)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    for k, v in TOKENS.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (tmp_path / "devices.csv").write_text(DEVICES, encoding="utf-8")
    return load_site(tmp_path)


@pytest.fixture
async def api(site: Site, tmp_path: Path) -> AsyncIterator[tuple[str, aiohttp.ClientSession,
                                                                AlarmManager]]:
    store = SqliteAlarmStore(tmp_path / "state")
    reg = CollectorRegistry()
    mgr = AlarmManager(site, store, registry=reg)
    idx = site.devices.index
    newest = np.full(len(site.devices), NEVER, np.int64)
    recv = np.zeros(len(site.devices), np.int64)
    # s-1 reported a minute ago (its clock 2 s slow), s-2 ten minutes ago, c-1 and s-9 now;
    # s-3 never
    for dev, ts, at in (("s-1", NOW - 62_000, NOW - 60_000), ("s-2", NOW - 600_000,
                        NOW - 600_000), ("c-1", NOW, NOW), ("s-9", NOW, NOW)):
        newest[idx[dev]], recv[idx[dev]] = ts, at
    app = make_api(mgr, store, site, registry=reg, clock_ms=lambda: NOW,
                   health=lambda: {"mqtt": "connected"}, last_readings=lambda: (newest, recv))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http:
            yield f"http://127.0.0.1:{port}", http, mgr
    finally:
        await runner.cleanup()
        store.close()


async def get(http: aiohttp.ClientSession, url: str, token: str) -> Any:
    async with http.get(url, headers={"Authorization": f"Bearer {TOKENS[token]}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_counts_last_readings_and_scope(api: Any) -> None:
    url, http, mgr = api
    await asyncio.to_thread(mgr.on_transitions, [
        tr("device.offline", "s-2", "smoke"), tr("camera.obstructed", "c-1", "camera"),
        tr("smoke.battery_low", "s-1", "smoke"),
        tr("device.offline", "s-9", "smoke", estate="e2")])

    doc = await get(http, f"{url}/devices/health", "H_TOKEN_E1")
    assert doc["now"] == NOW and doc["readings_known"] is True
    rows = {(r["estate"], r["building"]): r for r in doc["buildings"]}
    assert set(rows) == {("e1", "b1"), ("e1", "b2")}  # e2 is not this team's
    b1 = rows["e1", "b1"]
    assert (b1["devices"], b1["reporting"], b1["offline"], b1["obstructed"],
            b1["battery_low"]) == (3, 3, 1, 1, 1)
    assert b1["last_reading_at"] == NOW and b1["oldest_reading_at"] == NOW - 600_000
    b2 = rows["e1", "b2"]
    assert (b2["devices"], b2["reporting"], b2["last_reading_at"]) == (1, 0, None)
    # the problem devices: offline, obstructed, low battery, never heard
    devs = {d["device"]: d for d in doc["devices"]}
    assert set(devs) == {"s-1", "s-2", "c-1", "s-3"}
    assert devs["s-1"]["last_reading_ts"] == NOW - 62_000
    assert devs["s-1"]["last_received_at"] == NOW - 60_000
    assert devs["s-1"]["battery_low"] and not devs["s-1"]["offline"]
    assert devs["s-2"]["offline"] and devs["c-1"]["obstructed"] and devs["c-1"]["kind"] == "camera"
    assert devs["s-3"]["last_reading_ts"] is None and devs["s-3"]["floor"] == 1
    assert devs["c-1"]["floor"] is None and devs["c-1"]["zone"] == "facade-S"

    # another estate's token: its own building only, nothing of e1
    other = await get(http, f"{url}/devices/health?devices=all", "H_TOKEN_E2")
    assert [(r["estate"], r["offline"]) for r in other["buildings"]] == [("e2", 1)]
    assert [d["device"] for d in other["devices"]] == ["s-9"]
    # and asking for e1 by name gives nothing either
    none = await get(http, f"{url}/devices/health?estate=e1", "H_TOKEN_E2")
    assert none["buildings"] == [] and none["devices"] == []

    # narrowed to one building, every device; a limit truncates
    one = await get(http, f"{url}/devices/health?estate=e1&building=b1&devices=all&limit=2",
                    "H_TOKEN_CITY")
    assert [r["building"] for r in one["buildings"]] == ["b1"]
    assert len(one["devices"]) == 2 and one["truncated"] is True
    city = await get(http, f"{url}/devices/health?devices=none", "H_TOKEN_CITY")
    assert len(city["buildings"]) == 3 and city["devices"] == []


async def test_refusals(api: Any) -> None:
    url, http, _ = api
    async with http.get(f"{url}/devices/health") as r:
        assert r.status == 401
    for q in ("devices=some", "limit=0", "limit=x"):
        async with http.get(f"{url}/devices/health?{q}",
                            headers={"Authorization": f"Bearer {TOKENS['H_TOKEN_E1']}"}) as r:
            assert r.status == 400, q


def test_demo_hint_names_the_city_wide_team(site: Site, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    from anju.web.hint import console_hint

    line = console_hint(site, "127.0.0.1:8181")
    assert line == ("Console: http://127.0.0.1:8181/ — sign in with team city's token: "
                    f"{TOKENS['H_TOKEN_CITY']}")
    monkeypatch.delenv("H_TOKEN_CITY")  # then the widest team that has a token
    assert console_hint(site, "127.0.0.1:8181").endswith(f"prop-e1's token: "
                                                         f"{TOKENS['H_TOKEN_E1']}")
