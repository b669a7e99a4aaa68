"""Webhook delivery against real aiohttp receivers on 127.0.0.1: signatures, retries,
timeouts, every failure retried (CONTRACT §4), parking past the horizon and requeue,
Retry-After, isolation between teams, restarts (clean and SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from anju.alarms import (
    AlarmEvent,
    AlarmManager,
    AlarmStore,
    AlarmStoreError,
    Backoff,
    Delivery,
    SqliteAlarmStore,
    WebhookDispatcher,
    event_body,
)
from anju.alarms.receiver import Attempt, WebhookReceiver
from anju.devices.registry import Site, load_site
from anju.errors import ConfigError
from anju.rules.transition import Transition
from anju.services import free_port

SECRETS = {"prop": b"prop-secret", "fire": b"fire-secret"}
FAST = Backoff(base_s=0.02, cap_s=0.1, min_s=0.01)


def write_site(root: Path, urls: dict[str, str | None]) -> Site:
    """A site with teams ``prop`` (property of e1) and ``fire`` (every estate)."""
    root.mkdir(parents=True, exist_ok=True)
    teams = []
    for team, role, estates in (("prop", "property", "[e1]"), ("fire", "fire", "['*']")):
        hook = f", webhook: '{urls[team]}'" if urls.get(team) else ""
        teams.append(f"  - {{id: {team}, role: {role}, estates: {estates}{hook}, "
                     f"secret_env: T_WH_SECRET_{team.upper()}}}")
    (root / "site.yaml").write_text(
        "estates:\n  - {id: e1, buildings: [{id: b1, floors: 18}]}\nteams:\n"
        + "\n".join(teams) + "\nescalation: {unacknowledged_after_s: 300}\n", encoding="utf-8")
    (root / "devices.csv").write_text("device,kind,estate,building\n", encoding="utf-8")
    return load_site(root)


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for team, secret in SECRETS.items():
        monkeypatch.setenv(f"T_WH_SECRET_{team.upper()}", secret.decode())


def raises(n: int, start: int = 0,
           roles: tuple[str, ...] = ("property", "fire")) -> list[Transition]:
    return [Transition(rule="heat.fixed", event="raised", kind="smoke", severity="critical",
                       roles=roles, subject=f"s-{i}", device=f"s-{i}", estate="e1",
                       building="b1", floor=3, zone="hall", ts=1_000_000 + i,
                       started_at=1_000_000 + i, value=60.5, message="温度 60.5 °C")
            for i in range(start, start + n)]


async def until(cond: Callable[[], bool], within: float = 5.0, step: float = 0.01) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(SECRETS) as r:
        yield r


@pytest.fixture
async def release(receiver: WebhookReceiver) -> AsyncIterator[asyncio.Event]:
    """Lets hanging handlers return; set at the latest before the receiver stops."""
    ev = asyncio.Event()
    yield ev
    ev.set()


def dispatcher(site: Site, store: AlarmStore, reg: CollectorRegistry | None = None,
               **kw: object) -> WebhookDispatcher:
    args: dict[str, object] = {"timeout_s": 0.3, "horizon_s": 60.0, "backoff": FAST,
                               "poll_s": 0.05, "drain_s": 1.0}
    args.update(kw)
    return WebhookDispatcher(site, store, registry=reg, **args)  # type: ignore[arg-type]


def states(store: AlarmStore, team: str | None = None) -> list[str]:
    return [r["state"] for r in store.outbox(team=team)]


# -------------------------------------------------------------------------------------------
async def test_delivers_signed_events_to_each_team(tmp_path: Path,
                                                   receiver: WebhookReceiver) -> None:
    site = write_site(tmp_path / "site", {t: receiver.url(t) for t in SECRETS})
    reg = CollectorRegistry()
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store, registry=reg)
        async with dispatcher(site, store, reg) as d:
            def commit_and_wake() -> list[AlarmEvent]:
                events = mgr.on_transitions(raises(3))
                d.wake()  # from a worker thread, as the pipeline does
                return events

            events = await asyncio.to_thread(commit_and_wake)
            await until(lambda: states(store) == ["delivered"] * 6)
        bodies = {e.alarm_id: event_body(e) for e in events}
        for team in SECRETS:
            got = receiver.accepted[team]
            assert [a.delivery_id for a in got] == [r["delivery_id"]
                                                    for r in store.outbox(team=team)]
            for a in got:
                assert a.signature_ok and a.timestamp.isdigit()
                assert a.body == bodies[a.event()["alarm_id"]]
                assert a.event()["teams"] == ["prop", "fire"]
        assert receiver.duplicates == 0
        get = reg.get_sample_value
        assert get("anju_webhook_deliveries_total",
                   {"team": "prop", "outcome": "delivered"}) == 3
        assert get("anju_webhook_delivery_latency_seconds_count", {"team": "fire"}) == 3
        assert get("anju_webhook_outbox_pending", {"team": "fire"}) == 0


async def test_500_then_recovers_under_the_same_delivery_id(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    failures = 2

    async def flaky(a: Attempt) -> web.Response | None:
        nonlocal failures
        if failures:
            failures -= 1
            return web.Response(status=500)
        return None

    receiver.behaviour["prop"] = flaky
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    reg = CollectorRegistry()
    with SqliteAlarmStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(1))
        async with dispatcher(site, store, reg):
            await until(lambda: states(store) == ["delivered"])
        [row] = store.outbox()
        assert row["attempts"] == 3
    assert [(a.delivery_id, a.status) for a in receiver.attempts] == [
        (row["delivery_id"], 500), (row["delivery_id"], 500), (row["delivery_id"], 200)]
    assert reg.get_sample_value("anju_webhook_deliveries_total",
                                {"team": "prop", "outcome": "retried"}) == 2


async def test_hang_past_the_timeout_is_retried(tmp_path: Path, receiver: WebhookReceiver,
                                                release: asyncio.Event) -> None:
    hung = 0

    async def hang_once(a: Attempt) -> web.Response | None:
        nonlocal hung
        if hung == 0:
            hung += 1
            await release.wait()
            return web.Response(status=200)
        return None

    receiver.behaviour["prop"] = hang_once
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(1))
        t0 = time.monotonic()
        async with dispatcher(site, store, timeout_s=0.2):
            await until(lambda: states(store) == ["delivered"])
        assert time.monotonic() - t0 >= 0.2
        assert store.outbox()[0]["attempts"] == 2
    assert len(receiver.accepted["prop"]) == 1


async def test_410_is_retried_slowly_never_given_up(tmp_path: Path,
                                                    receiver: WebhookReceiver) -> None:
    gone_for = 3

    async def gone(a: Attempt) -> web.Response | None:
        nonlocal gone_for
        if gone_for:
            gone_for -= 1
            return web.Response(status=410)
        return None

    receiver.behaviour["prop"] = gone
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop"),
                                          "fire": receiver.url("fire")})
    reg = CollectorRegistry()
    with SqliteAlarmStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(1))
        async with dispatcher(site, store, reg):
            await until(lambda: states(store, "prop") == ["delivered"]
                        and states(store, "fire") == ["delivered"])
        [row] = store.outbox(team="prop")
        assert row["attempts"] == 4 and row["last_status"] == 200
    assert [a.status for a in receiver.attempts if a.name == "prop"] == [410] * 3 + [200]
    get = reg.get_sample_value
    assert get("anju_webhook_deliveries_total", {"team": "prop", "outcome": "retried"}) == 3
    assert get("anju_webhook_deliveries_total", {"team": "prop", "outcome": "parked"}) is None


async def test_429_retry_after_is_honoured(tmp_path: Path, receiver: WebhookReceiver) -> None:
    first = True

    async def busy(a: Attempt) -> web.Response | None:
        nonlocal first
        if first:
            first = False
            return web.Response(status=429, headers={"Retry-After": "1"})
        return None

    receiver.behaviour["prop"] = busy
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(1))
        async with dispatcher(site, store):
            await until(lambda: states(store) == ["delivered"])
    a, b = receiver.attempts
    assert a.status == 429 and b.status == 200
    assert b.at - a.at >= 0.95  # not the 20 ms the backoff alone would wait


async def test_each_alarm_in_order_and_a_retried_alarm_holds_back_no_other(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    failed: list[str] = []  # alarm ids refused once

    async def busy_once(a: Attempt) -> web.Response | None:
        alarm_id = a.event()["alarm_id"]
        if alarm_id == first_alarm and alarm_id not in failed:
            failed.append(alarm_id)
            return web.Response(status=503)
        return None

    receiver.behaviour["prop"] = busy_once
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        [a] = mgr.on_transitions(raises(1, roles=("property",)))
        first_alarm = a.alarm_id
        cleared = replace(raises(1, roles=("property",))[0], event="cleared", ts=2_000_000)
        mgr.on_transitions([cleared])
        [b] = mgr.on_transitions(raises(1, start=1, roles=("property",)))
        async with dispatcher(site, store):
            await until(lambda: states(store) == ["delivered"] * 3)
    got = [(x.event()["alarm_id"], x.event()["event"]) for x in receiver.accepted["prop"]]
    assert failed == [a.alarm_id]
    assert got == [(b.alarm_id, "raised"), (a.alarm_id, "raised"), (a.alarm_id, "cleared")]


@pytest.mark.parametrize("concurrency", [4, 1])
async def test_alarms_of_a_fire_go_to_a_webhook_side_by_side_each_in_order(
        tmp_path: Path, receiver: WebhookReceiver, concurrency: int) -> None:
    """Eight detectors at once, a receiver taking 0.1 s a request: up to ``concurrency``
    requests are in flight together, and each alarm's clear still follows its raise."""
    in_flight = [0, 0]  # now, most

    async def slow(a: Attempt) -> None:
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        await asyncio.sleep(0.1)
        in_flight[0] -= 1

    receiver.behaviour["prop"] = slow
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        raised = mgr.on_transitions(raises(8, roles=("property",)))
        mgr.on_transitions([replace(t, event="cleared", ts=2_000_000)
                            for t in raises(8, roles=("property",))])
        async with dispatcher(site, store, concurrency=concurrency, timeout_s=5.0):
            await until(lambda: states(store) == ["delivered"] * 16, within=10)
    assert in_flight[1] == concurrency
    got = [(x.event()["alarm_id"], x.event()["event"]) for x in receiver.accepted["prop"]]
    for ev in raised:
        mine = [e for aid, e in got if aid == ev.alarm_id]
        assert mine == ["raised", "cleared"]
    assert receiver.duplicates == 0


def test_concurrency_below_one_is_refused(tmp_path: Path) -> None:
    site = write_site(tmp_path / "site", {"prop": "http://127.0.0.1:9/prop"})
    with SqliteAlarmStore(tmp_path / "state") as store, \
            pytest.raises(ValueError, match="concurrency"):
        dispatcher(site, store, concurrency=0)


async def test_connection_refused_then_receiver_comes_up(tmp_path: Path) -> None:
    port = free_port()
    late = WebhookReceiver(SECRETS, port=port)
    site = write_site(tmp_path / "site", {"prop": late.url("prop")})
    reg = CollectorRegistry()
    with SqliteAlarmStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(2))
        async with dispatcher(site, store, reg):
            await until(lambda: (reg.get_sample_value(
                "anju_webhook_deliveries_total", {"team": "prop", "outcome": "retried"})
                or 0) >= 4)
            assert "ClientConnectorError" in (store.outbox()[0]["last_error"] or "")
            async with late:
                await until(lambda: states(store) == ["delivered"] * 2)
    assert len(late.accepted["prop"]) == 2 and late.duplicates == 0


async def test_retried_until_the_horizon_then_parked(tmp_path: Path,
                                                     receiver: WebhookReceiver) -> None:
    async def broken(a: Attempt) -> web.Response:
        return web.Response(status=503)

    receiver.behaviour["prop"] = broken
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    reg = CollectorRegistry()
    with SqliteAlarmStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(1))
        t0 = time.monotonic()
        async with dispatcher(site, store, reg, horizon_s=0.4) as d:
            await until(lambda: states(store) == ["parked"])
            await until(lambda: d.health()["undelivered"] == 1)  # seen at the next check
            health = d.health()
        assert time.monotonic() - t0 >= 0.35
        [row] = store.outbox()
        # retried, then parked (how many tries fit in 0.4 s depends on the box's load)
        assert row["attempts"] >= 2 and "horizon" in row["last_error"]
    assert not health["ok"] and health["undelivered"] == 1
    prop = health["destinations"]["prop"]
    assert prop["parked"] == 1 and prop["last_error"] == "HTTP 503"
    assert prop["failing_since_ms"] is not None and prop["oldest_undelivered_s"] >= 0.35
    get = reg.get_sample_value
    assert get("anju_webhook_deliveries_total", {"team": "prop", "outcome": "parked"}) == 1
    assert get("anju_webhook_outbox_parked", {"team": "prop"}) == 1


async def test_a_hanging_team_does_not_delay_another(tmp_path: Path, receiver: WebhookReceiver,
                                                     release: asyncio.Event) -> None:
    async def hang(a: Attempt) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    receiver.behaviour["prop"] = hang
    site = write_site(tmp_path / "site", {t: receiver.url(t) for t in SECRETS})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        async with dispatcher(site, store, timeout_s=5.0) as d:
            await asyncio.sleep(0.1)
            for i in range(5):
                t0 = time.monotonic()
                mgr.on_transitions(raises(1, start=i))
                assert time.monotonic() - t0 < 0.5  # committing never waits on delivery
                d.wake()
                # well under the 5 s that prop's receiver hangs
                await until(lambda i=i: len(receiver.accepted.get("fire", [])) == i + 1,  # type: ignore[misc]
                            within=2.0)
            assert "prop" not in receiver.accepted
            release.set()
            await until(lambda: states(store, "prop") == ["delivered"] * 5)


async def test_invalid_secret_config_fails_before_any_socket(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.delenv("T_WH_SECRET_PROP")
    site = write_site(tmp_path / "site", {"prop": "http://127.0.0.1:9/x"})
    with SqliteAlarmStore(tmp_path / "state") as store:
        with pytest.raises(ConfigError, match="T_WH_SECRET_PROP"):
            async with dispatcher(site, store):
                pass


async def test_restart_in_the_middle_of_deliveries(tmp_path: Path,
                                                   receiver: WebhookReceiver) -> None:
    async def three_then_down(a: Attempt) -> web.Response | None:
        return web.Response(status=503) if len(receiver.accepted.get("prop", [])) >= 3 else None

    receiver.behaviour["prop"] = three_then_down
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    state = tmp_path / "state"
    store = SqliteAlarmStore(state)
    AlarmManager(site, store).on_transitions(raises(8, roles=("property",)))
    ids = [r["delivery_id"] for r in store.outbox()]
    async with dispatcher(site, store):
        await until(lambda: any(a.status == 503 for a in receiver.attempts))
    store.close()

    del receiver.behaviour["prop"]
    with SqliteAlarmStore(state) as store2:
        assert states(store2).count("delivered") == 3
        assert [r["delivery_id"] for r in store2.outbox()] == ids
        async with dispatcher(site, store2):
            await until(lambda: states(store2) == ["delivered"] * 8)
    assert sorted(receiver.accepted_ids("prop")) == sorted(ids)  # each once
    assert receiver.duplicates == 0
    assert {a.delivery_id for a in receiver.attempts} == set(ids)


_DISPATCH_SCRIPT = """
import asyncio, sys
from anju.alarms import Backoff, SqliteAlarmStore, WebhookDispatcher
from anju.devices.registry import load_site

async def main():
    site = load_site(sys.argv[1])
    store = SqliteAlarmStore(sys.argv[2])
    async with WebhookDispatcher(site, store, timeout_s=5, horizon_s=60, poll_s=0.05,
                                 backoff=Backoff(base_s=0.02, cap_s=0.1, min_s=0.01)):
        print("up", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_sigkill_in_the_middle_of_deliveries(tmp_path: Path,
                                                   receiver: WebhookReceiver) -> None:
    async def slow(a: Attempt) -> None:
        await asyncio.sleep(0.05)

    receiver.behaviour["prop"] = slow
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    state = tmp_path / "state"
    with SqliteAlarmStore(state) as store:
        AlarmManager(site, store).on_transitions(raises(10, roles=("property",)))
        ids = [r["delivery_id"] for r in store.outbox()]
    script = tmp_path / "dispatch.py"
    script.write_text(textwrap.dedent(_DISPATCH_SCRIPT), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(site.root), str(state),
        stdout=asyncio.subprocess.DEVNULL, env=dict(os.environ))
    try:
        # 4 lanes (ANJU_WEBHOOK_CONCURRENCY's default): a lane sends its next event only
        # once the last is marked, so a fifth acceptance means a mark is on disk
        await until(lambda: len(receiver.accepted.get("prop", [])) >= 5, within=10)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    with SqliteAlarmStore(state) as store:
        assert 0 < states(store).count("delivered") < 10
        async with dispatcher(site, store):
            await until(lambda: states(store) == ["delivered"] * 10)
    # every event arrived; a delivery in flight at the kill (one a lane) may come again,
    # under its id
    assert sorted(receiver.accepted_ids("prop")) == sorted(ids)
    assert {a.delivery_id for a in receiver.attempts} == set(ids)
    assert receiver.duplicates <= 4


async def test_requeued_parked_delivery_goes_out_under_its_id(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    async def gone(a: Attempt) -> web.Response:
        return web.Response(status=410)

    receiver.behaviour["prop"] = gone
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(1, roles=("property",)))
        async with dispatcher(site, store, horizon_s=0.2) as d:
            await until(lambda: states(store) == ["parked"])
            del receiver.behaviour["prop"]  # the receiver is fixed
            assert store.requeue(int(time.time() * 1000), team="prop") == 1
            d.wake()
            await until(lambda: states(store) == ["delivered"])
        [row] = store.outbox()
    ids = [a.delivery_id for a in receiver.attempts]
    assert len(ids) >= 2 and set(ids) == {row["delivery_id"]}
    assert [a.status for a in receiver.attempts][-1] == 200


class _FlakyStore(SqliteAlarmStore):
    failures = 2

    def due_deliveries(self, team: str, now_ms: int, limit: int = 100) -> list[Delivery]:
        if self.failures:
            self.failures -= 1
            raise AlarmStoreError("database is locked")
        return super().due_deliveries(team, now_ms, limit)


async def test_a_store_error_does_not_stop_a_worker(tmp_path: Path,
                                                    receiver: WebhookReceiver) -> None:
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with _FlakyStore(tmp_path / "state") as store:
        AlarmManager(site, store).on_transitions(raises(1, roles=("property",)))
        async with dispatcher(site, store):
            await until(lambda: states(store) == ["delivered"])
        assert store.failures == 0


async def test_rows_read_ahead_on_the_committing_thread_never_go_out_twice(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    """The pipeline commits on a thread and hands the webhooks their rows there too
    (``committed``), while a worker round may be sending the same rows: each row goes out
    once, a retried row waits for its backoff, and all are delivered."""
    seen: dict[str, int] = {}

    async def slow_and_once_refused(a: Attempt) -> web.Response | None:
        await asyncio.sleep(0.01)  # a round stays in flight while commits continue
        seen[a.delivery_id] = seen.get(a.delivery_id, 0) + 1
        if seen[a.delivery_id] == 1 and int(a.event()["device"].split("-")[1]) % 3 == 0:
            return web.Response(status=500)
        return None

    receiver.behaviour["prop"] = slow_and_once_refused
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        slow = Backoff(base_s=0.3, cap_s=0.3, min_s=0.3)
        async with dispatcher(site, store, backoff=slow, timeout_s=2.0) as d:
            mgr.on_commit = d.committed
            for k in range(12):
                await asyncio.to_thread(mgr.on_transitions,
                                        raises(3, 3 * k, roles=("property",)))
                await asyncio.sleep(0.005)
            await until(lambda: states(store) == ["delivered"] * 36, within=15)
        rows = store.outbox()
    assert receiver.duplicates == 0
    # every row reached the receiver as often as the store says it was attempted: once,
    # or twice for the refused third (never early again from a stale read-ahead)
    assert seen == {r["delivery_id"]: r["attempts"] for r in rows}
    assert sorted(r["attempts"] for r in rows) == [1] * 24 + [2] * 12


async def test_a_read_ahead_older_than_the_workers_own_round_sends_nothing_twice(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    """The race the filter exists for, made certain: rows read ahead, then sent by a round
    the worker started on its own before it took the read-ahead."""
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        async with dispatcher(site, store) as d:
            await asyncio.to_thread(mgr.on_transitions, raises(3, roles=("property",)))
            stale = store.due_deliveries("prop", int(time.time() * 1000) + 1000)
            assert len(stale) == 3
            await until(lambda: states(store) == ["delivered"] * 3)
            d._prefetched["prop"] = (time.monotonic(), stale)  # read before that round
            d.wake("prop")
            mgr.on_commit = d.committed
            await asyncio.to_thread(mgr.on_transitions, raises(1, 10, roles=("property",)))
            await until(lambda: states(store) == ["delivered"] * 4)
            await asyncio.sleep(0.2)  # a few more rounds: nothing else may go out
        assert receiver.duplicates == 0
        assert [r["attempts"] for r in store.outbox()] == [1, 1, 1, 1]
    assert len(receiver.attempts) == 4


async def test_sending_from_read_ahead_until_the_round_that_sent_it_ends(
        tmp_path: Path, receiver: WebhookReceiver, release: asyncio.Event) -> None:
    """What the pipeline's alarms-first hold waits on (anju.app.alarms_first): ``sending()``
    is true from the commit's read-ahead until the worker's round has sent the events, and
    ``on_round`` tells when a round ends so the hold can look again."""
    async def held(_a: Attempt) -> None:
        await release.wait()

    receiver.behaviour["prop"] = held  # type: ignore[assignment]
    rounds: list[bool] = []
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        d = dispatcher(site, store, timeout_s=5.0, poll_s=0.05)
        d._on_round = lambda: rounds.append(d.sending())
        async with d:
            await until(lambda: bool(rounds))  # the worker waits for work
            assert not d.sending()

            mgr.on_commit = d.committed
            await asyncio.to_thread(mgr.on_transitions, raises(1, roles=("property",)))
            assert d.sending()  # handed over: the worker has not taken it yet, or sends it
            await until(lambda: bool(receiver.attempts))
            n = len(rounds)
            await asyncio.sleep(0.1)
            assert d.sending() and len(rounds) == n  # no round ends while the send hangs
            release.set()
            await until(lambda: states(store) == ["delivered"])
            await until(lambda: len(rounds) > n)
            assert rounds[n] is False and not d.sending()


async def test_a_raise_goes_to_the_webhook_as_committed_without_a_query(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    """The rows of a raise are handed to the idle worker by the commit itself: the outbox
    is not queried between the commit and the send."""
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        queried: list[str] = []
        due = store.due_deliveries

        def counted(key: str, now_ms: int, limit: int = 100) -> list[Delivery]:
            queried.append(key)
            return due(key, now_ms, limit)

        store.due_deliveries = counted  # type: ignore[method-assign]
        at_send: list[int] = []  # queries made when each request arrived

        async def note(_a: Attempt) -> None:
            at_send.append(len(queried))

        receiver.behaviour["prop"] = note  # type: ignore[assignment]
        rounds: list[int] = []
        async with dispatcher(site, store, poll_s=5.0) as d:
            d._on_round = lambda: rounds.append(len(queried))
            mgr.on_commit = d.committed
            await until(lambda: bool(rounds))  # the worker waits for work
            n = len(queried)
            await asyncio.to_thread(mgr.on_transitions, raises(2, roles=("property",)))
            await until(lambda: states(store) == ["delivered"] * 2)
            assert at_send == [n, n]  # both sent before any query
        bodies = [a.event() for a in receiver.attempts]
        assert [b["event"] for b in bodies] == ["raised", "raised"]
        assert {a.delivery_id for a in receiver.attempts} == \
            {r["delivery_id"] for r in store.outbox()}


async def test_a_clear_is_not_handed_over_ahead_of_its_raise_still_pending(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    """A commit's later event of an alarm whose raise waits for a retry goes out after
    the raise: only raises are handed over as committed, the rest in the store's order."""
    tries: dict[str, int] = {}

    async def refuse_the_first_raise(a: Attempt) -> web.Response | None:
        tries[a.delivery_id] = tries.get(a.delivery_id, 0) + 1
        if a.event()["event"] == "raised" and tries[a.delivery_id] == 1:
            return web.Response(status=500)
        return None

    receiver.behaviour["prop"] = refuse_the_first_raise
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        slow = Backoff(base_s=0.5, cap_s=0.5, min_s=0.5)
        async with dispatcher(site, store, backoff=slow) as d:
            mgr.on_commit = d.committed
            await asyncio.to_thread(mgr.on_transitions, raises(1, roles=("property",)))
            await until(lambda: len(receiver.attempts) == 1)  # refused: retried in 0.5 s
            await until(lambda: "prop" in d._idle_keys)
            clear = [replace(t, event="cleared", ts=t.ts + 1)
                     for t in raises(1, roles=("property",))]
            await asyncio.to_thread(mgr.on_transitions, clear)
            await until(lambda: states(store) == ["delivered"] * 2, within=10)
        events = [a.event()["event"] for a in receiver.attempts]
        assert events == ["raised", "raised", "cleared"]


async def test_a_commit_wakes_only_the_workers_of_its_teams(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    """``wake_for`` wakes the destinations its events go to; an idle worker of another
    team does not go to the outbox for nothing."""
    site = write_site(tmp_path / "site", {"prop": receiver.url("prop"),
                                          "fire": receiver.url("fire")})
    with SqliteAlarmStore(tmp_path / "state") as store:
        mgr = AlarmManager(site, store)
        asked: list[str] = []
        async with dispatcher(site, store, poll_s=5.0) as d:
            ask = d._due_or_peek

            def counted(key: str, now_ms: int) -> tuple[list[Delivery], tuple[int | None, int]]:
                asked.append(key)
                return ask(key, now_ms)

            d._due_or_peek = counted  # type: ignore[method-assign]
            await until(lambda: d._idle_keys == {"prop", "fire"})
            asked.clear()
            events = await asyncio.to_thread(mgr.on_transitions,
                                             raises(2, roles=("property",)))
            d.wake_for(events)
            await until(lambda: states(store) == ["delivered"] * 2)
            await until(lambda: "prop" in d._idle_keys)
            await asyncio.sleep(0.05)
        assert "prop" in asked and "fire" not in asked
        assert {a.name for a in receiver.attempts} == {"prop"}
