"""``anju alarms``: outbox summary, requeue of parked deliveries, signing a body."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from anju.alarms import Commit, Delivery, SqliteAlarmStore
from anju.cli import app


def test_outbox_requeue_and_sign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    runner = CliRunner()
    r = runner.invoke(app, ["alarms", "outbox", "--state-dir", str(state)])
    assert r.exit_code == 2 and "no alarm store" in r.output

    from anju.alarms.model import AlarmEvent

    ev = AlarmEvent(alarm_id="a" * 20, event="raised", rule="r.x", severity="minor", kind="smoke",
                    device="d", estate="e", building="b", floor=None, zone=None, ts=1,
                    started_at=1, value=None, message="m")
    with SqliteAlarmStore(state) as store:
        store.commit(Commit(events=[(1, ev)], deliveries=[
            Delivery("d-1", "a" * 20 + ":1", "a" * 20, "fire", b""),
            Delivery("d-2", "a" * 20 + ":1", "a" * 20, "prop", b"")]))
        store.mark_parked("d-1", 5, attempts=1, status=410, error="HTTP 410")
        store.mark_delivered("d-2", 5, 200)

    r = runner.invoke(app, ["alarms", "outbox", "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    out = orjson.loads(r.output.strip().splitlines()[-1])
    assert out["teams"] == {"fire": {"parked": 1}, "prop": {"delivered": 1}}
    assert out["parked"][0]["delivery_id"] == "d-1" and out["parked"][0]["last_status"] == 410

    monkeypatch.setenv("ANJU_STATE_DIR", str(state))
    r = runner.invoke(app, ["alarms", "requeue", "--team", "fire", "--json"])
    assert orjson.loads(r.output.strip().splitlines()[-1]) == {"requeued": 1}
    with SqliteAlarmStore(state) as store:
        assert [(r["delivery_id"], r["state"], r["attempts"]) for r in store.outbox()] == [
            ("d-1", "pending", 0), ("d-2", "delivered", 1)]
        assert store.prune_outbox(6) == 1 and [r["delivery_id"] for r in store.outbox()] == ["d-1"]

    monkeypatch.setenv("T_CLI_SECRET", "anju-test-secret")
    body = tmp_path / "body.json"
    body.write_bytes(b'{"alarm_id":"3f2a9c0d1e4b5a6f7c8d","event":"raised"}')
    r = runner.invoke(app, ["alarms", "sign", "--secret-env", "T_CLI_SECRET",
                            "--timestamp", "1763800000000", "--body", str(body)])
    assert r.exit_code == 0
    assert ("X-Anju-Signature: sha256=9932f6bc13d03b39fe833267cff1b68cace8f932820c5700355b"
            "5499e3ad3d0e") in r.output
