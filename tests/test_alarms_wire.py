"""What crosses the wire: the signature test vector, the retry table, the event body, and
the ``alarms`` line protocol (exact, and read back from a real InfluxDB)."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from anju.alarms import AlarmEvent, Backoff, alarm_lines, event_body, signature, verify
from anju.alarms.influx import escape_field_string, escape_tag, event_states
from anju.alarms.model import alarm_id_for, delivery_id_for
from anju.alarms.retry import classify_status, parse_retry_after
from anju.services import LocalServices

DOCS = Path(__file__).resolve().parent.parent / "docs" / "alarms.md"

# The test vector of docs/alarms.md: checked here and, independently, with
#   printf '%s' '1763800000000.{"alarm_id":"3f2a9c0d1e4b5a6f7c8d","event":"raised"}' \
#     | openssl dgst -sha256 -hmac anju-test-secret
VECTOR_SECRET = b"anju-test-secret"
VECTOR_TS = 1763800000000
VECTOR_BODY = b'{"alarm_id":"3f2a9c0d1e4b5a6f7c8d","event":"raised"}'
VECTOR_SIG = "sha256=9932f6bc13d03b39fe833267cff1b68cace8f932820c5700355b5499e3ad3d0e"


def test_signature_test_vector() -> None:
    assert signature(VECTOR_SECRET, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    assert verify(VECTOR_SECRET, str(VECTOR_TS), VECTOR_BODY, VECTOR_SIG)
    assert not verify(VECTOR_SECRET, str(VECTOR_TS + 1), VECTOR_BODY, VECTOR_SIG)
    assert not verify(b"other", str(VECTOR_TS), VECTOR_BODY, VECTOR_SIG)
    assert not verify(VECTOR_SECRET, str(VECTOR_TS), VECTOR_BODY, VECTOR_SIG,
                      now_ms=VECTOR_TS + 10 * 60_000)


def test_the_docs_carry_the_same_vector() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for part in (VECTOR_SECRET.decode(), str(VECTOR_TS), VECTOR_BODY.decode(), VECTOR_SIG):
        assert part in text


def event(**kw: object) -> AlarmEvent:
    base: dict[str, object] = dict(
        alarm_id="3f2a9c0d1e4b5a6f7c8d", event="raised", rule="smoke.alarm",
        severity="major", kind="smoke", device="s-0001", estate="e001", building="b01",
        floor=12, zone="stair-A", ts=1763800000000, started_at=1763799990000, value=0.31,
        message="烟雾 0.31 dB/m", details={"n": 2}, teams=["property-e001"])
    base.update(kw)
    return AlarmEvent.model_validate(base)


def test_event_body_is_compact_json_in_contract_order() -> None:
    body = event_body(event())
    assert body.startswith(b'{"alarm_id":"3f2a9c0d1e4b5a6f7c8d","event":"raised","rule":')
    assert b", " not in body and b": " not in body
    assert list(orjson.loads(body)) == [
        "alarm_id", "event", "rule", "severity", "kind", "device", "estate", "building",
        "floor", "zone", "ts", "started_at", "value", "message", "details", "teams"]


def test_ids_are_stable() -> None:
    assert alarm_id_for("smoke.alarm", "s-1", 5) == alarm_id_for("smoke.alarm", "s-1", 5)
    assert re.fullmatch(r"[0-9a-f]{20}", alarm_id_for("smoke.alarm", "s-1", 5))
    assert alarm_id_for("smoke.alarm", "s-1", 5) != alarm_id_for("smoke.alarm", "s-1", 6)
    d = delivery_id_for("a", 1, "fire")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", d)
    assert d != delivery_id_for("a", 1, "prop") != delivery_id_for("a", 2, "fire")


@pytest.mark.parametrize(("status", "verdict"), [
    (200, "delivered"), (202, "delivered"), (204, "delivered"),
    (400, "retry_slow"), (401, "retry_slow"), (403, "retry_slow"), (404, "retry_slow"),
    (410, "retry_slow"), (413, "retry_slow"),
    (408, "retry"), (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"),
    (301, "retry"), (307, "retry"),
])
def test_retry_table(status: int, verdict: str) -> None:
    assert classify_status(status) == verdict


def test_retry_after_and_backoff() -> None:
    now = datetime(2025, 11, 22, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Sat, 22 Nov 2025 08:00:30 GMT", now) == 30.0
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None
    b = Backoff(base_s=1, cap_s=8, jitter=0.5, min_s=0.1)
    rng = random.Random(1)
    for attempt, raw in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        d = b.delay(attempt, rng=rng)
        assert raw * 0.5 <= d <= raw
    assert b.delay(3, retry_after_s=120) == 120
    assert b.delay(3, retry_after_s=0) == 0.1
    assert b.delay(3, retry_after_s=10**9) == b.max_retry_after_s
    # a receiver's refusal (4xx) backs off client_factor times slower, to its own cap
    slow = Backoff(base_s=1, cap_s=8, jitter=0.0, client_factor=4, client_cap_s=20)
    assert [slow.delay(n, slow=True) for n in (1, 2, 3)] == [4, 8, 16]
    assert slow.delay(4, slow=True) == 20 and slow.delay(4) == 8
    assert slow.delay(10_000) == 8  # no overflow however long it has failed


# -- line protocol --------------------------------------------------------------------------
def test_alarm_lines_exact() -> None:
    lines = alarm_lines([event(), event(event="cleared", ts=1763800060000, value=0.0,
                                        device=None, floor=None, zone=None)])
    assert lines == (
        'alarms,alarm_id=3f2a9c0d1e4b5a6f7c8d,building=b01,estate=e001,event=raised,kind=smoke,'
        'rule=smoke.alarm,severity=major alarm_id="3f2a9c0d1e4b5a6f7c8d",device="s-0001",'
        'floor=12i,zone="stair-A",value=0.31,message="烟雾 0.31 dB/m",state="open",state_rank=0i,'
        'text="s-0001: 烟雾 0.31 dB/m" 1763800000000\n'
        'alarms,alarm_id=3f2a9c0d1e4b5a6f7c8d,building=b01,estate=e001,event=cleared,'
        'kind=smoke,rule=smoke.alarm,severity=major alarm_id="3f2a9c0d1e4b5a6f7c8d",value=0.0,'
        'message="烟雾 0.31 dB/m",state="closed",state_rank=2i,'
        'text="烟雾 0.31 dB/m" 1763800060000\n'
    ).encode()


def test_alarm_points_state_is_the_state_after_the_commit() -> None:
    """raised/escalated → open; acknowledged → acknowledged, unless the same commit closes
    the alarm (an event alarm's acknowledgement and clear, same alarm and ts) → closed."""
    t = 1763800000000
    assert event_states([event(), event(event="escalated", ts=t + 1),
                         event(event="acknowledged", ts=t + 2),
                         event(event="cleared", ts=t + 3)]) == [
        "open", "open", "acknowledged", "closed"]
    cam = {"alarm_id": "c" * 20, "rule": "camera.obstructed", "kind": "camera"}
    assert event_states([event(event="acknowledged", ts=t, **cam),
                         event(event="cleared", ts=t, **cam)]) == ["closed", "closed"]
    # a clear of another alarm, or of this one at another time, closes nothing else
    assert event_states([event(event="acknowledged", ts=t),
                         event(event="cleared", ts=t, **cam),
                         event(event="cleared", ts=t + 1)]) == [
        "acknowledged", "closed", "closed"]


def test_alarm_lines_escaping() -> None:
    assert escape_tag("a b,c=d") == r"a\ b\,c\=d"
    assert escape_tag("end\\") == "end"
    assert escape_field_string('say "hi" \\ now\nnext') == r'"say \"hi\" \\ now\nnext"'
    line = alarm_lines([event(zone='zone "A", west', value=None,
                              message="line1\nline2", building="b 1")]).decode()
    assert line.count("\n") == 1
    assert ",building=b\\ 1," in line and "value=" not in line
    assert 'zone="zone \\"A\\", west"' in line and 'message="line1\\nline2"' in line
    assert alarm_lines([]) == b""
    assert "value=" not in alarm_lines([event(value=float("nan"))]).decode()
    assert "value=1e-05," in alarm_lines([event(value=1e-5)]).decode()


@pytest.mark.integration
def test_alarm_lines_read_back_from_influxdb(services: LocalServices, influx_db: str) -> None:
    evs = [event(), event(event="acknowledged", ts=1763800030000, zone='楼梯 "A", 西',
                          message='say "hi" \\ now\nnext', building="b 1")]
    services.influx.write(influx_db, alarm_lines(evs).decode(), precision="ms")
    res = services.influx.query(
        'SELECT alarm_id, building, device, floor, zone, value, message, event FROM alarms',
        db=influx_db, epoch="ms")
    [series] = res["results"][0]["series"]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    assert [r["time"] for r in rows] == [1763800000000, 1763800030000]
    assert rows[0]["floor"] == 12 and rows[0]["value"] == 0.31 and rows[0]["event"] == "raised"
    assert rows[1]["zone"] == '楼梯 "A", 西' and rows[1]["building"] == "b 1"
    assert rows[1]["message"] == 'say "hi" \\ now\\nnext'  # the newline kept as text
    assert services.influx.count("alarms", influx_db, "\"rule\" = 'smoke.alarm'") == 2
