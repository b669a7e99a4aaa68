"""CONTRACT §4 "anything else is retried with backoff until it is": a receiver refusing
(401 during a secret rotation) gets every event once it accepts again; past the horizon a
delivery is parked, shown by ``health()`` and ``/metrics``, and ``anju alarms requeue`` run
from another process sends it again while the dispatcher keeps running."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from anju.alarms import AlarmManager, Backoff, SqliteAlarmStore
from anju.alarms.receiver import WebhookReceiver
from anju.cli import app
from tests.test_alarms_delivery import dispatcher, raises, states, until, write_site

OLD, NEW = b"prop-secret", b"prop-secret-rotated"
# refusals back off client_factor× slower than 5xx, to client_cap_s: small here, so a few
# seconds of refusing cost a few attempts
SLOW = Backoff(base_s=0.05, cap_s=0.2, client_factor=4, client_cap_s=0.4, min_s=0.01)


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_WH_SECRET_PROP", OLD.decode())
    monkeypatch.setenv("T_WH_SECRET_FIRE", "fire-secret")


async def test_secret_rotation_401_then_204_gets_every_event_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the receiver rotated its secret first: every request signed with the old one is a 401
    async with WebhookReceiver({"prop": NEW, "fire": b"fire-secret"}, ok_status=204) as rx:
        site = write_site(tmp_path / "site", {"prop": rx.url("prop")})
        reg = CollectorRegistry()
        with SqliteAlarmStore(tmp_path / "state") as store:
            mgr = AlarmManager(site, store)
            events = mgr.on_transitions(raises(5, roles=("property",)))
            events += mgr.on_transitions([replace(t, event="cleared", ts=2_000_000 + i)
                                          for i, t in enumerate(raises(2, roles=("property",)))])
            async with dispatcher(site, store, reg, backoff=SLOW, horizon_s=60) as d:
                await until(lambda: sum(a.status == 401 for a in rx.attempts) >= 10)
                await until(lambda: d.health()["destinations"]["prop"]["pending"] == 7)
                h = d.health()["destinations"]["prop"]
                assert h["failing_since_ms"] is not None and h["last_error"] == "HTTP 401"
                assert states(store) == ["pending"] * 7  # nothing given up
                # … until our side gets the new secret
                monkeypatch.setenv("T_WH_SECRET_PROP", NEW.decode())
                await until(lambda: states(store) == ["delivered"] * 7, within=10)
                await until(lambda: d.health()["pending"] == 0)
                health = d.health()
            ids = [r["delivery_id"] for r in store.outbox()]
    assert health["ok"] and health["destinations"]["prop"]["failing_since_ms"] is None
    accepted = rx.accepted["prop"]
    assert sorted(a.delivery_id for a in accepted) == sorted(ids)  # every event, once
    assert rx.duplicates == 0 and {a.status for a in rx.attempts} == {401, 204}
    # each alarm in order: the two cleared after their raised
    seen = [(a.event()["alarm_id"], a.event()["event"]) for a in accepted]
    for ev in events[5:]:
        assert seen.index((ev.alarm_id, "raised")) < seen.index((ev.alarm_id, "cleared"))
    assert reg.get_sample_value("anju_webhook_deliveries_total",
                                {"team": "prop", "outcome": "parked"}) is None


async def test_parked_past_the_horizon_then_requeued_by_the_cli_while_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with WebhookReceiver({"prop": NEW, "fire": b"fire-secret"}) as rx:
        site = write_site(tmp_path / "site", {"prop": rx.url("prop")})
        reg = CollectorRegistry()
        state = tmp_path / "state"
        with SqliteAlarmStore(state) as store:
            mgr = AlarmManager(site, store)
            [a, b] = mgr.on_transitions(raises(2, roles=("property",)))
            [a_cleared] = mgr.on_transitions(
                [replace(raises(1, roles=("property",))[0], event="cleared", ts=2_000_000)])
            async with dispatcher(site, store, reg, backoff=SLOW, horizon_s=0.5,
                                  poll_s=0.1) as d:
                await until(lambda: d.health()["undelivered"] == 2)
                health = d.health()
                # a's cleared waits behind its parked raised: never sent before it
                assert sorted(states(store)) == ["parked", "parked", "pending"]
                assert {orjson.loads(x.body)["event"] for x in rx.attempts} == {"raised"}
                assert reg.get_sample_value("anju_webhook_outbox_parked", {"team": "prop"}) == 2
                assert reg.get_sample_value("anju_webhook_deliveries_total",
                                            {"team": "prop", "outcome": "parked"}) == 2
                tried = len(rx.attempts)
                await asyncio.sleep(0.3)
                assert len(rx.attempts) == tried  # parked: no more attempts until requeued

                monkeypatch.setenv("T_WH_SECRET_PROP", NEW.decode())  # fixed
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", "from anju.cli import main; main()",
                    "alarms", "requeue", "--team", "prop", "--json",
                    stdout=asyncio.subprocess.PIPE,
                    env={**os.environ, "ANJU_STATE_DIR": str(state)})
                out, _ = await asyncio.wait_for(proc.communicate(), 60)
                assert proc.returncode == 0
                assert orjson.loads(out.splitlines()[-1]) == {"requeued": 2}
                # no wake(): the running dispatcher finds them on its own
                await until(lambda: states(store) == ["delivered"] * 3, within=10)
                await until(lambda: d.health()["ok"] and d.health()["pending"] == 0)
            ids = {r["event_id"]: r["delivery_id"] for r in store.outbox()}
    assert not health["ok"] and health["destinations"]["prop"]["parked"] == 2
    assert health["destinations"]["prop"]["pending"] == 1
    got = [(x.event()["alarm_id"], x.event()["event"]) for x in rx.accepted["prop"]]
    assert sorted(got) == sorted([(a.alarm_id, "raised"), (b.alarm_id, "raised"),
                                  (a.alarm_id, "cleared")])
    assert got.index((a.alarm_id, "raised")) < got.index((a.alarm_id, "cleared"))
    # the same X-Anju-Delivery ids as before parking
    assert {x.delivery_id for x in rx.attempts} == set(ids.values())
    assert rx.duplicates == 0
    assert a_cleared.event == "cleared"


def test_requeue_needs_a_scope_and_old_dead_rows_are_parked(tmp_path: Path) -> None:
    state = tmp_path / "state"
    SqliteAlarmStore(state).close()
    db = sqlite3.connect(state / "alarms.sqlite3")
    db.execute("INSERT INTO events VALUES ('a:1', 'a', 1, 1, 'raised', x'7b7d', 1)")
    db.execute("INSERT INTO outbox(delivery_id, event_id, alarm_id, team, state, "
               "committed_ms) VALUES ('d-1', 'a:1', 'a', 'prop', 'dead', 1)")
    db.commit()
    db.close()
    with SqliteAlarmStore(state) as store:  # a file written before parking existed
        assert states(store) == ["parked"]
        assert store.undelivered()["prop"]["parked"] == 1
    runner = CliRunner()
    r = runner.invoke(app, ["alarms", "requeue", "--state-dir", str(state)])
    assert r.exit_code == 2 and "--all" in r.output
    r = runner.invoke(app, ["alarms", "requeue", "--state-dir", str(state), "--all", "--json"])
    assert orjson.loads(r.output.strip().splitlines()[-1]) == {"requeued": 1}
    with SqliteAlarmStore(state) as store:
        assert states(store) == ["pending"]
