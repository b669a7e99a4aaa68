"""Alarm lifecycle, de-duplication, routing and escalation on an injected clock; the SQLite
store across restarts (close and reopen, and SIGKILL)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from anju.alarms import (
    AlarmEvent,
    AlarmManager,
    AlarmNotFound,
    AlarmStateError,
    AlarmStore,
    AlarmStoreError,
    MemoryAlarmStore,
    SqliteAlarmStore,
    alarm_id_for,
    delivery_id_for,
)
from anju.devices.registry import Site, load_site
from anju.rules.transition import Transition

SITE_YAML = """
estates:
  - {id: e1, buildings: [{id: b1, floors: 18}]}
  - {id: e2, buildings: [{id: b1, floors: 6}]}
teams:
  - {id: prop-e1, role: property, estates: [e1], webhook: 'http://127.0.0.1:9/p1',
     secret_env: T_SECRET_P1, token_env: T_TOKEN_P1}
  - {id: prop-e2, role: property, estates: [e2], secret_env: T_SECRET_P2}
  - {id: fire, role: fire, estates: ['*'], webhook: 'http://127.0.0.1:9/fire',
     secret_env: T_SECRET_FIRE}
  - {id: street-e1, role: supervisor, estates: [e1], webhook: 'http://127.0.0.1:9/sup',
     secret_env: T_SECRET_SUP}
escalation:
  unacknowledged_after_s: 300
"""

T0 = 1_763_800_000_000
AFTER = 300_000


def write_site(root: Path) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(SITE_YAML, encoding="utf-8")
    (root / "devices.csv").write_text("device,kind,estate,building,floor,zone,params\n",
                                      encoding="utf-8")
    return load_site(root)


def tr(event: str = "raised", *, rule: str = "smoke.alarm", subject: str = "s-1",
       estate: str = "e1", ts: int = T0, started_at: int | None = None,
       severity: str = "major", roles: tuple[str, ...] = ("property",),
       is_event: bool = False, value: float | None = 0.2) -> Transition:
    return Transition(
        rule=rule, event=event, kind=rule.split(".")[0], severity=severity,  # type: ignore[arg-type]
        roles=roles, subject=subject, device=subject, estate=estate, building="b1",
        floor=12, zone="stair-A", ts=ts, started_at=started_at if started_at is not None else ts,
        value=value, message=f"{rule} {event}", details={"k": 1}, is_event=is_event)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return write_site(tmp_path / "site")


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlarmStore]:
    s: AlarmStore = (MemoryAlarmStore() if request.param == "memory"
                     else SqliteAlarmStore(tmp_path / "state"))
    yield s
    s.close()


@pytest.fixture
def mgr(site: Site, store: AlarmStore) -> AlarmManager:
    return AlarmManager(site, store)


def kinds(events: list[AlarmEvent]) -> list[str]:
    return [e.event for e in events]


# -- lifecycle ------------------------------------------------------------------------------
def test_raise_ack_clear(mgr: AlarmManager, store: AlarmStore) -> None:
    [raised] = mgr.on_transitions([tr()])
    aid = alarm_id_for("smoke.alarm", "s-1", T0)
    assert raised.alarm_id == aid and raised.event == "raised" and raised.ts == T0
    assert raised.teams == ["prop-e1"]
    ack = mgr.acknowledge(aid, "prop-e1", "Wang", "on my way", T0 + 5000)
    assert ack.event == "acknowledged" and ack.ts == T0 + 5000
    assert ack.details["ack"] == {"by": "Wang", "note": "on my way", "team": "prop-e1"}
    assert ack.details["k"] == 1
    [cleared] = mgr.on_transitions([tr("cleared", ts=T0 + 60_000, started_at=T0, value=0.01)])
    assert cleared.event == "cleared" and cleared.value == 0.01 and cleared.alarm_id == aid
    assert kinds(store.events(aid)) == ["raised", "acknowledged", "cleared"]
    assert mgr.open_alarms() == []
    rec = store.get(aid)
    assert rec is not None and rec.state == "cleared" and rec.acked_by == "Wang"


def test_cleared_before_ack_then_ack_is_refused(mgr: AlarmManager) -> None:
    [raised] = mgr.on_transitions([tr()])
    [cleared] = mgr.on_transitions([tr("cleared", ts=T0 + 1000)])
    assert cleared.alarm_id == raised.alarm_id
    with pytest.raises(AlarmStateError):
        mgr.acknowledge(raised.alarm_id, "prop-e1", "Wang", "", T0 + 2000)


def test_duplicate_raises_and_stray_clears_change_nothing(mgr: AlarmManager,
                                                          store: AlarmStore) -> None:
    [raised] = mgr.on_transitions([tr()])
    assert mgr.on_transitions([tr()]) == []  # the same transition again
    assert mgr.on_transitions([tr(ts=T0 + 5000, started_at=T0 + 4000)]) == []  # still open
    assert len(mgr.open_alarms()) == 1
    assert mgr.on_transitions([tr("cleared", subject="s-2")]) == []  # nothing open there
    mgr.acknowledge(raised.alarm_id, None, "ops", "", T0 + 1)
    with pytest.raises(AlarmStateError):
        mgr.acknowledge(raised.alarm_id, None, "ops", "", T0 + 2)
    assert kinds(store.events(raised.alarm_id)) == ["raised", "acknowledged"]


def test_new_alarm_only_after_clear(mgr: AlarmManager) -> None:
    [a] = mgr.on_transitions([tr()])
    mgr.on_transitions([tr("cleared", ts=T0 + 10_000)])
    [b] = mgr.on_transitions([tr(ts=T0 + 20_000)])
    assert b.alarm_id != a.alarm_id and b.alarm_id == alarm_id_for("smoke.alarm", "s-1",
                                                                   T0 + 20_000)
    # the first alarm's raise replayed (a restart re-reading the broker) is still a duplicate
    assert mgr.on_transitions([tr()]) == []


def test_raise_clear_raise_in_one_batch(mgr: AlarmManager, store: AlarmStore) -> None:
    events = mgr.on_transitions([tr(), tr("cleared", ts=T0 + 1), tr(ts=T0 + 2)])
    assert kinds(events) == ["raised", "cleared", "raised"]
    assert [r["alarm_id"] for r in mgr.open_alarms()] == [events[2].alarm_id]


def test_event_rules_are_closed_by_acknowledgement(mgr: AlarmManager, store: AlarmStore) -> None:
    def cam(event: str = "raised", ts: int = T0, started_at: int | None = None) -> Transition:
        return tr(event, rule="camera.falling_object", subject="c-1", is_event=True, ts=ts,
                  started_at=started_at)

    [a] = mgr.on_transitions([cam()])
    [b] = mgr.on_transitions([cam(ts=T0 + 1000)])
    assert a.alarm_id != b.alarm_id  # one alarm per event
    assert mgr.on_transitions([cam()]) == []  # the same event replayed
    assert mgr.on_transitions([cam("cleared", ts=T0 + 2000, started_at=T0)]) == []
    ack = mgr.acknowledge(a.alarm_id, "prop-e1", "Li", "seen", T0 + 3000)
    assert ack.event == "acknowledged"
    assert kinds(store.events(a.alarm_id)) == ["raised", "acknowledged", "cleared"]
    assert [r["alarm_id"] for r in mgr.open_alarms()] == [b.alarm_id]


def test_routing_by_estate_and_roles(mgr: AlarmManager) -> None:
    [e] = mgr.on_transitions([tr(rule="heat.fixed", severity="critical",
                                 roles=("property", "fire"), estate="e2")])
    assert e.teams == ["prop-e2", "fire"]


def test_outbox_rows_only_for_teams_with_a_webhook(mgr: AlarmManager, store: AlarmStore) -> None:
    [e1] = mgr.on_transitions([tr(roles=("property", "fire"), estate="e2")])
    rows = store.outbox()
    assert [r["team"] for r in rows] == ["fire"]  # prop-e2 has no webhook: stored only
    assert rows[0]["delivery_id"] == delivery_id_for(e1.alarm_id, 1, "fire")
    assert rows[0]["state"] == "pending" and store.pending_counts() == {"fire": 1}


def test_acknowledge_scoped_to_team_estates(mgr: AlarmManager) -> None:
    [e] = mgr.on_transitions([tr(estate="e1")])
    with pytest.raises(AlarmNotFound):
        mgr.acknowledge(e.alarm_id, "prop-e2", "x", "", T0)
    with pytest.raises(KeyError):  # AlarmNotFound is a KeyError too
        mgr.acknowledge("nope", "prop-e1", "x", "", T0)
    assert mgr.acknowledge(e.alarm_id, "fire", "x", "", T0).event == "acknowledged"


# -- escalation ------------------------------------------------------------------------------
def test_escalation_to_supervisor_and_reminders(mgr: AlarmManager, store: AlarmStore) -> None:
    [r] = mgr.on_transitions([tr(severity="minor")])
    assert mgr.tick(T0 + AFTER - 1) == []
    [esc] = mgr.tick(T0 + AFTER)
    assert esc.event == "escalated" and esc.teams == ["street-e1"] and esc.ts == T0 + AFTER
    assert esc.details["escalation"] == {"level": 1, "unacknowledged_s": 300.0, "step": 0,
                                         "notify": ["supervisor"], "reminder": False}
    assert mgr.tick(T0 + AFTER) == [] and mgr.tick(T0 + 2 * AFTER - 1) == []
    # a late tick: the reminder goes out then, and the next one an interval after it
    [rem] = mgr.tick(T0 + 2 * AFTER + 7000)
    assert rem.details["escalation"]["level"] == 2
    assert mgr.tick(T0 + 3 * AFTER + 6999) == []
    assert len(mgr.tick(T0 + 3 * AFTER + 7000)) == 1
    # acknowledgement goes to everyone told so far, and stops the reminders
    ack = mgr.acknowledge(r.alarm_id, "prop-e1", "Wang", "", T0 + 4 * AFTER)
    assert ack.teams == ["prop-e1", "street-e1"]
    assert mgr.tick(T0 + 10 * AFTER) == []
    [cl] = mgr.on_transitions([tr("cleared", ts=T0 + 11 * AFTER)])
    assert cl.teams == ["prop-e1", "street-e1"]


def test_reminders_spacing_under_frequent_ticks(mgr: AlarmManager) -> None:
    mgr.on_transitions([tr()])
    times = [t for t in range(T0, T0 + 5 * AFTER + 1, 7_000) if mgr.tick(t)]
    # each reminder an interval after the one before it, at the first tick when due
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] - T0 < AFTER + 7000 and len(times) == 4
    assert all(AFTER <= g < AFTER + 7000 for g in gaps)


def test_escalation_fallback_to_fire_for_critical_only(mgr: AlarmManager) -> None:
    mgr.on_transitions([tr(estate="e2", severity="critical", subject="s-c"),
                        tr(estate="e2", severity="major", subject="s-m")])
    escalated = mgr.tick(T0 + AFTER)
    assert [(e.device, e.teams) for e in escalated] == [("s-c", ["fire"])]
    # the major alarm, with nobody to escalate to, is not asked about again
    assert [e.device for e in mgr.tick(T0 + 2 * AFTER)] == ["s-c"]


def test_clear_stops_escalation(mgr: AlarmManager) -> None:
    mgr.on_transitions([tr()])
    mgr.on_transitions([tr("cleared", ts=T0 + 1000)])
    assert mgr.tick(T0 + 10 * AFTER) == []


def test_event_alarm_escalates_until_acknowledged(mgr: AlarmManager) -> None:
    [a] = mgr.on_transitions([tr(rule="camera.falling_object", subject="c-1", is_event=True)])
    assert kinds(mgr.tick(T0 + AFTER)) == ["escalated"]
    mgr.acknowledge(a.alarm_id, None, "ops", "", T0 + AFTER + 1)
    assert mgr.tick(T0 + 5 * AFTER) == []


def test_metrics_count_events_by_rule_and_event(site: Site, store: AlarmStore) -> None:
    reg = CollectorRegistry()
    mgr = AlarmManager(site, store, registry=reg)
    mgr.on_transitions([tr(), tr()])
    mgr.on_transitions([tr("cleared", ts=T0 + 1)])
    get = reg.get_sample_value
    assert get("anju_alarm_events_total", {"rule": "smoke.alarm", "event": "raised"}) == 1
    assert get("anju_alarm_events_total", {"rule": "smoke.alarm", "event": "cleared"}) == 1
    assert get("anju_alarm_transitions_ignored_total",
               {"rule": "smoke.alarm", "event": "raised"}) == 1


# -- durability -----------------------------------------------------------------------------
def test_sqlite_restart_resumes_open_alarms_and_escalation(site: Site, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with SqliteAlarmStore(state) as s1:
        m1 = AlarmManager(site, s1)
        [a] = m1.on_transitions([tr()])
        m1.on_transitions([tr(subject="s-2"), tr("cleared", subject="s-2", ts=T0 + 5)])
    with SqliteAlarmStore(state) as s2:
        assert s2._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        m2 = AlarmManager(site, s2)
        assert [r["alarm_id"] for r in m2.open_alarms()] == [a.alarm_id]
        assert m2.on_transitions([tr()]) == []  # still de-duplicated after the restart
        assert kinds(m2.tick(T0 + AFTER)) == ["escalated"]
        [cl] = m2.on_transitions([tr("cleared", ts=T0 + AFTER + 1)])
        assert cl.alarm_id == a.alarm_id and cl.teams == ["prop-e1", "street-e1"]
        # raised s-1; raised and cleared s-2; escalated; cleared s-1 to prop-e1 and street-e1
        assert len(s2.outbox()) == 1 + 2 + 1 + 2


def test_sqlite_one_open_alarm_per_rule_subject_is_enforced(site: Site, tmp_path: Path) -> None:
    from anju.alarms import AlarmStoreError, Commit

    with SqliteAlarmStore(tmp_path / "state") as s:
        [a] = AlarmManager(site, s).on_transitions([tr()])
        rec = s.get(a.alarm_id)
        assert rec is not None
        twin = replace(rec, alarm_id="x" * 20)
        with pytest.raises(AlarmStoreError):
            s.commit(Commit(alarms=[twin]))
        assert s.get("x" * 20) is None  # rolled back


_KILL_SCRIPT = """
import sys, time
from anju.alarms import AlarmManager, SqliteAlarmStore
from anju.devices.registry import load_site
from anju.rules.transition import Transition
site = load_site(sys.argv[1])
store = SqliteAlarmStore(sys.argv[2])
mgr = AlarmManager(site, store)
for i in range(20):
    mgr.on_transitions([Transition(
        rule="smoke.alarm", event="raised", kind="smoke", severity="major",
        roles=("property", "fire"), subject=f"s-{i}", device=f"s-{i}", estate="e1",
        building="b1", floor=1, zone=None, ts=1000 + i, started_at=1000 + i, value=0.2,
        message="m")])
    print(i, flush=True)
# delivery marks commit without an fsync: they too must survive the process
for d in store.due_deliveries("prop-e1", 10**13, 5):
    store.mark_delivered(d.delivery_id, 2000, 200)
print("marked", flush=True)
time.sleep(60)
"""


def test_sqlite_survives_sigkill(site: Site, tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = tmp_path / "kill.py"
    script.write_text(textwrap.dedent(_KILL_SCRIPT), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(site.root), str(state)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "marked":
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with SqliteAlarmStore(state) as s:
        assert len(s.list_alarms()) == 20
        assert s.pending_counts() == {"prop-e1": 15, "fire": 20}
        assert len(s.outbox(state="delivered")) == 5


def test_sqlite_delivery_marks_skip_the_fsync_then_put_it_back(site: Site,
                                                              tmp_path: Path) -> None:
    """A delivery mark commits with synchronous=NORMAL; the connection is back at FULL
    after it, also when the mark fails, so alarm commits keep their fsync."""
    with SqliteAlarmStore(tmp_path / "state") as s:
        AlarmManager(site, s).on_transitions([tr(roles=("property", "fire"))])
        sync = lambda: s._db.execute("PRAGMA synchronous").fetchone()[0]  # noqa: E731
        assert sync() == 2  # FULL
        seen = []
        s._db.set_trace_callback(seen.append)
        due = s.due_deliveries("prop-e1", 10**13)
        s.mark_delivered(due[0].delivery_id, 2000, 200)
        s.mark_delivered_many([d.delivery_id for d in s.due_deliveries("fire", 10**13)],
                              2000, 200)
        s._db.set_trace_callback(None)
        assert seen.count("PRAGMA synchronous=NORMAL") == 2
        assert sync() == 2
        assert s.pending_counts() == {}
        s._db.execute("CREATE TRIGGER refuse BEFORE UPDATE ON outbox "
                      "BEGIN SELECT RAISE(ABORT, 'refused'); END")
        AlarmManager(site, s).on_transitions([tr(subject="s-2")])
        with pytest.raises(AlarmStoreError, match="refused"):
            s.mark_delivered(s.due_deliveries("prop-e1", 10**13)[0].delivery_id, 2000, 200)
        assert sync() == 2


def test_a_failing_commit_listener_does_not_undo_the_commit(mgr: AlarmManager,
                                                            store: AlarmStore) -> None:
    """``on_commit`` is told after the store committed: its failure is logged, and the
    events are returned as committed (the webhook workers' own query finds their rows)."""
    told: list[int] = []

    def broken(commit: object) -> None:
        told.append(1)
        raise RuntimeError("listener bug")

    mgr.on_commit = broken
    events = mgr.on_transitions([tr()])
    assert told == [1]
    assert kinds(events) == ["raised"]
    assert len(store.list_alarms()) == 1
    assert sum(store.pending_counts().values()) == 1
