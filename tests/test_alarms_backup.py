"""`anju alarms backup` while the pipeline commits alarms, `anju alarms restore`, and the
schema version check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from anju.alarms.backup import backup_store, restore_store, store_path
from anju.alarms.errors import AlarmStoreError
from anju.alarms.sqlite_store import SCHEMA_VERSION, SqliteAlarmStore
from anju.app.pipeline import Pipeline
from anju.cli import app
from anju.config import Settings
from anju.devices.registry import load_site
from anju.services import LocalServices, free_port
from tests.mqtt_support import until

PUMPS = 60


def _count(path: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute(sql).fetchone()[0])


@pytest.mark.integration
async def test_backup_while_the_pipeline_commits_alarms(
        services: LocalServices, influx_db: str, topic_prefix: str, tmp_path: Path, cid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_TEST_SECRET", "x")
    est = topic_prefix
    root = tmp_path / "site"
    root.mkdir()
    (root / "site.yaml").write_text(
        f"estates:\n  - id: {est}\n    name: e\n    buildings:\n"
        "      - {id: b1, floors: 18, floor_height_m: 3.0}\n"
        f"teams:\n  - {{id: p, role: property, estates: [{est}],\n"
        "     webhook: 'http://127.0.0.1:9/hooks', secret_env: ANJU_TEST_SECRET}\n",
        encoding="utf-8")
    (root / "devices.csv").write_text(
        "device,kind,estate,building,floor,zone,params\n"
        + "".join(f"pump-{i},water,{est},b1,-1,,\n" for i in range(PUMPS)), encoding="utf-8")
    site = load_site(root)
    state = tmp_path / "state"
    settings = Settings(mqtt_url=services.mosquitto.url, influx_url=services.influx.url,
                        influx_db=influx_db, state_dir=state, mqtt_client_id=cid,
                        api_addr=f"127.0.0.1:{free_port()}", batch_linger_ms=5, tick_s=0.2)
    backups: list[Path] = []
    stop = threading.Event()

    def keep_backing_up() -> None:
        # as an operator's cron would, but back to back, while alarms are committed
        for n in range(200):
            if stop.is_set() and n >= 3:
                return
            dest = tmp_path / f"b{n}.sqlite3"
            backup_store(state, dest)
            backups.append(dest)

    def publish() -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        c.connect(services.mosquitto.host, services.mosquitto.port)
        c.loop_start()
        try:
            now = int(time.time() * 1000)
            infos = [c.publish(f"anju/{est}/b1/water/pump-{i}", orjson.dumps(
                {"ts": now, "level_pct": 50.0, "pressure_mpa": 0.3, "flow_m3h": 1.0,
                 "pump_running": True, "pump_fault": True}), qos=1) for i in range(PUMPS)]
            for info in infos:
                info.wait_for_publish(10)
        finally:
            c.loop_stop()
            c.disconnect()

    async with Pipeline(settings, site, registry=CollectorRegistry(), api=False) as p:
        await until(lambda: p.consumer.subscribed)
        backer = asyncio.create_task(asyncio.to_thread(keep_backing_up))
        await asyncio.to_thread(publish)
        await until(lambda: _count(store_path(state), "SELECT count(*) FROM alarms") == PUMPS,
                    within_s=20)
        stop.set()
        await backer
    counts = []
    for b in backups:
        with contextlib.closing(sqlite3.connect(b)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("PRAGMA foreign_key_check").fetchall() == []
            # each alarm has its raised event: no half-committed transaction in a backup
            assert db.execute("SELECT count(*) FROM alarms a WHERE NOT EXISTS "
                              "(SELECT 1 FROM events e WHERE e.alarm_id = a.alarm_id)"
                              ).fetchone() == (0,)
            assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            counts.append(db.execute("SELECT count(*) FROM alarms").fetchone()[0])
    assert counts == sorted(counts) and counts[-1] == PUMPS
    assert not _leftovers(tmp_path)

    # restore the last backup into a fresh state dir through the CLI; the store opens on it
    fresh = tmp_path / "fresh"
    r = CliRunner().invoke(app, ["alarms", "restore", str(backups[-1]), "--state-dir",
                                 str(fresh), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert (out["alarms"], out["open_alarms"], out["saved"]) == (PUMPS, PUMPS, None)
    with SqliteAlarmStore(fresh) as store:
        assert len(store.list_alarms(open_only=True)) == PUMPS


def _leftovers(d: Path) -> list[Path]:
    return list(d.glob(".*.tmp"))


def _store_with_one_alarm(state: Path) -> None:
    with SqliteAlarmStore(state):
        pass
    with contextlib.closing(sqlite3.connect(store_path(state))) as db:
        db.execute("INSERT INTO alarms (alarm_id, rule, subject, estate, is_event, state, "
                   "started_at, record) VALUES ('a1', 'r', 's', 'e', 0, 'raised', 1, x'')")
        db.execute("INSERT INTO events (event_id, alarm_id, seq, ts, event, body, committed_ms)"
                   " VALUES ('ev1', 'a1', 0, 1, 'raised', x'', 1)")
        db.commit()


def test_restore_saves_the_current_store_and_refuses_bad_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _store_with_one_alarm(state)
    r = CliRunner().invoke(app, ["alarms", "backup", str(tmp_path / "b.sqlite3"),
                                 "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["alarms"] == 1
    with contextlib.closing(sqlite3.connect(store_path(state))) as db:  # later changes
        db.execute("DELETE FROM events")
        db.execute("DELETE FROM alarms")
        db.commit()
    report, saved = restore_store(tmp_path / "b.sqlite3", state)
    assert report.alarms == 1 and saved is not None and saved.is_file()
    assert _count(store_path(state), "SELECT count(*) FROM alarms") == 1
    assert _count(saved, "SELECT count(*) FROM alarms") == 0  # what was there before

    not_a_store = tmp_path / "x.sqlite3"
    with contextlib.closing(sqlite3.connect(not_a_store)) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(AlarmStoreError, match="not an anju alarm store"):
        restore_store(not_a_store, state)
    (tmp_path / "junk").write_bytes(b"not sqlite at all" * 100)
    r = CliRunner().invoke(app, ["alarms", "restore", str(tmp_path / "junk"),
                                 "--state-dir", str(state)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["alarms", "backup", str(tmp_path / "b2.sqlite3"),
                                 "--state-dir", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no alarm store" in r.output


def test_a_store_from_a_newer_anju_is_refused_clearly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _store_with_one_alarm(state)
    newer = tmp_path / "newer.sqlite3"
    backup_store(state, newer)
    with contextlib.closing(sqlite3.connect(newer)) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(AlarmStoreError, match="newer anju") as err:
        restore_store(newer, state)
    assert f"up to {SCHEMA_VERSION}" in str(err.value)
    assert _count(store_path(state), "SELECT count(*) FROM alarms") == 1  # untouched
    with pytest.raises(AlarmStoreError, match=r"written by a newer anju.*reads up to schema"):
        SqliteAlarmStore(newer)
