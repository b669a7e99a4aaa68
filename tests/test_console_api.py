"""The console's API: sign-in, live events (SSE), one alarm's history, assign, comment,
filters, scoping — against a real aiohttp server on 127.0.0.1 and a real SQLite store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from anju.alarms import AlarmManager, SqliteAlarmStore, make_api
from anju.alarms.console_api import SignInLimiter
from anju.alarms.store import AlarmQuery, record_to_json
from anju.devices.registry import Site, load_site
from anju.rules.transition import Transition

SITE_YAML = """
estates:
  - {id: e1, buildings: [{id: b1, floors: 18}, {id: b2, floors: 9}]}
  - {id: e2, buildings: [{id: b1, floors: 6}]}
  - {id: e3, buildings: [{id: b1, floors: 6}]}
teams:
  - {id: prop-e1, role: property, estates: [e1], token_env: C_TOKEN_E1,
     webhook: "http://127.0.0.1:9/hook", secret_env: C_SECRET}
  - {id: prop-e2, role: property, estates: [e2], token_env: C_TOKEN_E2}
  - {id: street, role: supervisor, estates: [e1, e3], token_env: C_TOKEN_STREET}
"""
TOKENS = {"prop-e1": "tok-e1-abcdef0123", "prop-e2": "tok-e2-abcdef0123",
          "street": "tok-street-abcdef0123"}
NOW = 1_763_800_100_000
T0 = 1_763_800_000_000


def tr(estate: str, subject: str, ts: int = T0, *, event: str = "raised",
       building: str = "b1", rule: str = "smoke.alarm", severity: str = "major",
       kind: str = "smoke") -> Transition:
    return Transition(rule=rule, event=event, kind=kind, severity=severity,
                      roles=("property",), subject=subject, device=subject, estate=estate,
                      building=building, floor=2, zone="stair-A", ts=ts, started_at=ts,
                      value=0.2, message="smoke")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Site:
    monkeypatch.setenv("C_TOKEN_E1", TOKENS["prop-e1"])
    monkeypatch.setenv("C_TOKEN_E2", TOKENS["prop-e2"])
    monkeypatch.setenv("C_TOKEN_STREET", TOKENS["street"])
    monkeypatch.setenv("C_SECRET", "s3cret")
    (tmp_path / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (tmp_path / "devices.csv").write_text("device,kind,estate,building\n", encoding="utf-8")
    return load_site(tmp_path)


@dataclass
class Server:
    url: str
    mgr: AlarmManager
    store: SqliteAlarmStore
    http: aiohttp.ClientSession

    async def raise_(self, *trs: Transition) -> list[Any]:
        return await asyncio.to_thread(self.mgr.on_transitions, list(trs))


@pytest.fixture
async def server(site: Site, tmp_path: Path) -> AsyncIterator[Server]:
    store = SqliteAlarmStore(tmp_path / "state")
    reg = CollectorRegistry()
    mgr = AlarmManager(site, store, registry=reg)
    app = make_api(mgr, store, site, registry=reg, clock_ms=lambda: NOW,
                   health=lambda: {"mqtt": "connected"})
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        # unsafe=True: the jar keeps cookies of an IP-address host (127.0.0.1)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            yield Server(f"http://127.0.0.1:{port}", mgr, store, http)
    finally:
        await runner.cleanup()
        store.close()


def auth(team: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[team]}"}


class Sse:
    """Reads Server-Sent Events messages from a streaming response."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> dict[str, Any]:
        msg: dict[str, Any] = {}
        async with asyncio.timeout(10):  # a bound, not a measurement
            while True:
                line = (await self.resp.content.readline()).decode()
                assert line, "stream ended"
                line = line.rstrip("\n")
                if not line:
                    if "event" in msg or "data" in msg:
                        return msg
                    msg = {}
                    continue
                if line.startswith(":"):
                    continue
                key, _, value = line.partition(": ")
                msg[key] = orjson.loads(value) if key == "data" else value


async def test_events_are_pushed_scoped_and_resumable(server: Server) -> None:
    [a1] = await server.raise_(tr("e1", "s-1"))
    await server.raise_(tr("e2", "s-2"))
    async with server.http.get(f"{server.url}/events", headers=auth("prop-e1")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        sse = Sse(resp)
        snap = await sse.next()
        assert snap["event"] == "snapshot"
        assert [a["alarm_id"] for a in snap["data"]["alarms"]] == [a1.alarm_id]
        assert int(snap["id"]) == snap["data"]["last_event_id"] == 2

        # another estate's alarm first, then one of ours: only ours arrives
        await server.raise_(tr("e2", "s-3", T0 + 1000))
        [a4] = await server.raise_(tr("e1", "s-4", T0 + 2000))
        msg = await sse.next()
        assert msg["event"] == "alarm"
        assert msg["data"]["event"]["alarm_id"] == a4.alarm_id
        assert msg["data"]["event"]["event"] == "raised"
        assert msg["data"]["alarm"]["state"] == "raised"
        seen = int(msg["id"])
        assert seen == 4

    # while disconnected: an ack (through the API), a raise in e2, a clear in e1
    r = await server.http.post(f"{server.url}/alarms/{a1.alarm_id}/ack",
                               json={"by": "Wang", "note": "on my way"}, headers=auth("prop-e1"))
    assert r.status == 200
    await server.raise_(tr("e2", "s-5", T0 + 3000))
    await server.raise_(tr("e1", "s-4", T0 + 4000, event="cleared"))
    headers = {**auth("prop-e1"), "Last-Event-ID": str(seen)}
    async with server.http.get(f"{server.url}/events", headers=headers) as resp:
        sse = Sse(resp)
        first, second = await sse.next(), await sse.next()
        assert (first["event"], first["data"]["event"]["event"]) == ("alarm", "acknowledged")
        assert first["data"]["event"]["details"]["ack"]["by"] == "Wang"
        assert (second["data"]["event"]["alarm_id"], second["data"]["event"]["event"]) == (
            a4.alarm_id, "cleared")
        assert second["data"]["alarm"]["state"] == "cleared"
        assert int(first["id"]) < int(second["id"])

    # a supervisor of e1 and e3 sees e1's alarms, not e2's
    async with server.http.get(f"{server.url}/events", headers=auth("street")) as resp:
        snap = await Sse(resp).next()
        assert {a["estate"] for a in snap["data"]["alarms"]} == {"e1"}


async def test_sign_in_cookie_reads_but_never_acts(server: Server) -> None:
    [a1] = await server.raise_(tr("e1", "s-1"))
    r = await server.http.post(f"{server.url}/session", json={"token": TOKENS["prop-e1"]})
    assert r.status == 200
    body = await r.json()
    assert body["team"] == "prop-e1" and [e["id"] for e in body["estates"]] == ["e1"]
    assert body["estates"][0]["buildings"] == ["b1", "b2"]
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert TOKENS["prop-e1"] not in str(r.url)

    # the session's cookie (kept by the client's jar) lets it read and stream...
    r = await server.http.get(f"{server.url}/session")
    assert r.status == 200 and (await r.json())["team"] == "prop-e1"
    r = await server.http.get(f"{server.url}/alarms")
    assert [a["alarm_id"] for a in (await r.json())["alarms"]] == [a1.alarm_id]
    async with server.http.get(f"{server.url}/events") as resp:
        assert resp.status == 200
        assert (await Sse(resp).next())["event"] == "snapshot"
    # ...but not act: a forged cross-site POST would carry the cookie, not the header
    for path, body2 in (("ack", {"by": "x"}), ("assign", {"to": "x", "by": "y"}),
                        ("comments", {"by": "x", "text": "t"})):
        r = await server.http.post(f"{server.url}/alarms/{a1.alarm_id}/{path}", json=body2)
        assert r.status == 401, path
    r = await server.http.delete(f"{server.url}/session")
    assert r.status == 200
    r = await server.http.get(f"{server.url}/alarms")
    assert r.status == 401


async def test_failed_sign_ins_are_rate_limited(server: Server) -> None:
    for _ in range(5):
        r = await server.http.post(f"{server.url}/session", json={"token": "guess"})
        assert r.status == 401
    r = await server.http.post(f"{server.url}/session", json={"token": TOKENS["prop-e1"]})
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1


def test_limiter_window_moves_on() -> None:
    now = [0.0]
    lim = SignInLimiter(max_failures=2, window_s=10, max_peers=2, clock=lambda: now[0])
    lim.failed("a")
    lim.failed("a")
    assert lim.retry_after("a") == 10
    now[0] = 10.0
    assert lim.retry_after("a") == 0
    for peer in ("b", "c", "d"):
        lim.failed(peer)
    assert len(lim._failures) == 2  # bounded


async def test_assign_comment_and_timeline(server: Server) -> None:
    [a1] = await server.raise_(tr("e1", "s-1"))
    url = f"{server.url}/alarms/{a1.alarm_id}"
    r = await server.http.post(f"{url}/assign", json={"to": "Zhao", "by": "Wang"},
                               headers=auth("prop-e1"))
    assert r.status == 200
    ev = await r.json()
    assert ev["event"] == "assigned" and ev["ts"] == NOW
    assert ev["details"]["assign"] == {"to": "Zhao", "by": "Wang", "note": "",
                                       "team": "prop-e1"}
    r = await server.http.post(f"{url}/comments", json={"by": "Zhao", "text": "<b>at door</b>"},
                               headers=auth("prop-e1"))
    assert r.status == 201 and (await r.json())["event"] == "commented"
    r = await server.http.post(f"{url}/ack", json={"by": "Zhao"}, headers=auth("prop-e1"))
    assert r.status == 200

    r = await server.http.get(url, headers=auth("prop-e1"))
    assert r.status == 200
    doc = await r.json()
    assert [e["event"] for e in doc["events"]] == ["raised", "assigned", "commented",
                                                     "acknowledged"]
    assert [e["seq"] for e in doc["events"]] == [1, 2, 3, 4]
    assert doc["events"][2]["details"]["comment"]["text"] == "<b>at door</b>"
    row = doc["alarm"]
    assert row["assigned_to"] == "Zhao" and row["comments"] == 1
    assert row["state"] == "acknowledged" and row["event"] == "acknowledged"
    # each event went to the team's webhook outbox, in order
    assert [d["event_id"] for d in doc["deliveries"]] == [
        f"{a1.alarm_id}:{i}" for i in (1, 2, 3, 4)]
    assert {d["team"] for d in doc["deliveries"]} == {"prop-e1"}

    # the list row shows the assignee; the list stays the contract's rows
    r = await server.http.get(f"{server.url}/alarms", headers=auth("prop-e1"))
    [listed] = (await r.json())["alarms"]
    assert listed["assigned_to"] == "Zhao" and listed["event"] == "acknowledged"

    # after the clear: no more assignment, comments still welcome
    await server.raise_(tr("e1", "s-1", T0 + 5000, event="cleared"))
    r = await server.http.post(f"{url}/assign", json={"to": "Li", "by": "Wang"},
                               headers=auth("prop-e1"))
    assert r.status == 409
    r = await server.http.post(f"{url}/comments", json={"by": "Wang", "text": "closed: false"},
                               headers=auth("prop-e1"))
    assert r.status == 201


async def test_outside_the_estates_is_404(server: Server) -> None:
    [a1] = await server.raise_(tr("e1", "s-1"))
    url = f"{server.url}/alarms/{a1.alarm_id}"
    r = await server.http.get(url, headers=auth("prop-e2"))
    assert r.status == 404
    r = await server.http.post(f"{url}/assign", json={"to": "x", "by": "y"},
                               headers=auth("prop-e2"))
    assert r.status == 404
    r = await server.http.post(f"{url}/comments", json={"by": "x", "text": "t"},
                               headers=auth("prop-e2"))
    assert r.status == 404
    r = await server.http.get(f"{server.url}/alarms/00000000000000000000",
                              headers=auth("prop-e1"))
    assert r.status == 404
    r = await server.http.get(url, headers=auth("street"))  # its supervisor sees it
    assert r.status == 200
    r = await server.http.get(url)
    assert r.status == 401
    for body in ({}, {"to": "", "by": "y"}, {"to": "x", "by": "y", "extra": 1}):
        r = await server.http.post(f"{url}/assign", json=body, headers=auth("prop-e1"))
        assert r.status == 422
    # nothing was written by the refused calls
    assert [e.event for e in server.store.events(a1.alarm_id)] == ["raised"]


async def test_list_filters_and_history(server: Server) -> None:
    await server.raise_(
        tr("e1", "s-1", T0), tr("e1", "s-2", T0 + 1, building="b2"),
        tr("e1", "l-1", T0 + 2, rule="elevator.trapped", kind="elevator",
           severity="critical"),
        tr("e2", "s-3", T0 + 3))
    await server.raise_(tr("e1", "s-1", T0 + 10, event="cleared"))

    async def ids(query: str, team: str = "prop-e1") -> list[str]:
        r = await server.http.get(f"{server.url}/alarms?{query}", headers=auth(team))
        assert r.status == 200, await r.text()
        return [a["device"] for a in (await r.json())["alarms"]]

    assert await ids("") == ["l-1", "s-2"]
    assert await ids("state=cleared") == ["s-1"]
    assert await ids("state=all") == ["l-1", "s-2", "s-1"]
    assert await ids("building=b2") == ["s-2"]
    assert await ids("kind=elevator") == ["l-1"]
    assert await ids("severity=critical,major") == ["l-1", "s-2"]
    assert await ids("state=all&since=1763800000001&until=1763800000002") == ["s-2"]
    assert await ids("state=all", "prop-e2") == ["s-3"]
    assert await ids("estate=e2") == []  # not its estate
    r = await server.http.get(f"{server.url}/alarms?since=x", headers=auth("prop-e1"))
    assert r.status == 400


V1_SCHEMA = """
CREATE TABLE alarms (alarm_id TEXT PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL,
    estate TEXT NOT NULL, is_event INTEGER NOT NULL, state TEXT NOT NULL,
    started_at INTEGER NOT NULL, next_escalation_ms INTEGER, record BLOB NOT NULL);
CREATE TABLE events (event_id TEXT PRIMARY KEY, alarm_id TEXT NOT NULL, seq INTEGER NOT NULL,
    ts INTEGER NOT NULL, event TEXT NOT NULL, body BLOB NOT NULL,
    committed_ms INTEGER NOT NULL);
PRAGMA user_version=1;
"""


def test_a_version_1_state_file_loads(site: Site, tmp_path: Path) -> None:
    # An alarm written by the version-1 store (record without the new fields).
    from anju.alarms import MemoryAlarmStore

    mem = MemoryAlarmStore()
    [ev] = AlarmManager(site, mem).on_transitions([tr("e1", "s-1", building="b2")])
    rec = mem.get(ev.alarm_id)
    assert rec is not None
    old = orjson.loads(record_to_json(rec))
    del old["assignee"], old["comments"]
    path = tmp_path / "old" / "alarms.sqlite3"
    path.parent.mkdir()
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO alarms VALUES (?,?,?,?,?,?,?,?,?)",
               (rec.alarm_id, rec.rule, rec.subject, "e1", 0, "raised", T0, None,
                orjson.dumps(old)))
    db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?)",
               (f"{rec.alarm_id}:1", rec.alarm_id, 1, T0, "raised",
                orjson.dumps(ev.model_dump(mode="json")), 0))
    db.commit()
    db.close()

    with SqliteAlarmStore(path) as store:
        [loaded] = store.query_alarms(AlarmQuery(buildings=["b2"], kinds=["smoke"]))
        assert loaded.alarm_id == rec.alarm_id and loaded.assignee is None
        assert store.query_alarms(AlarmQuery(buildings=["b1"])) == []
        [logged] = store.events_since(0, estates=["e1"])
        assert logged.id == 1 and logged.event.event == "raised"
        ev2 = AlarmManager(site, store).comment(rec.alarm_id, "prop-e1", "Li", "ok", NOW)
        assert ev2.event == "commented"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()


async def test_terminal_twin(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from anju.cli import app as root

    [a1] = await server.raise_(tr("e1", "s-1"))
    monkeypatch.setenv("MY_TOKEN", TOKENS["prop-e1"])
    runner = CliRunner()

    async def run(*args: str) -> Any:
        res = await asyncio.to_thread(runner.invoke, root, ["alarms", *args, "--api",
                                                            server.url, "--token-env",
                                                            "MY_TOKEN"])
        return res

    res = await run("list", "--json")
    assert res.exit_code == 0, res.output
    assert [a["alarm_id"] for a in orjson.loads(res.output.splitlines()[-1])["alarms"]] == [
        a1.alarm_id]
    for args in (("assign", a1.alarm_id, "--to", "Zhao", "--by", "Wang"),
                 ("comment", a1.alarm_id, "on site", "--by", "Zhao"),
                 ("ack", a1.alarm_id, "--by", "Zhao", "--note", "done")):
        res = await run(*args)
        assert res.exit_code == 0, res.output
    res = await run("show", a1.alarm_id, "--json")
    doc = orjson.loads(res.output.splitlines()[-1])
    assert [e["event"] for e in doc["events"]] == ["raised", "assigned", "commented",
                                                     "acknowledged"]
    monkeypatch.setenv("MY_TOKEN", TOKENS["prop-e2"])
    res = await run("show", a1.alarm_id)
    assert res.exit_code == 2 and "404" in res.output
