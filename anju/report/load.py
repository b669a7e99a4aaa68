"""The alarm store read into columns, as it stood at the end of the period.

What the report needs of an alarm is in its record (raise, acknowledgement and its team,
clearance) and in its ``escalated`` events (how often and to which level). Everything is
judged as of the period's end: an acknowledgement or clearance at or after ``to`` has not
happened yet, so a report on a past month gives the same figures whenever it is run.

Which alarms: those raised before the end that were still open at the start or began
within the period — the alarms of the period, and those carried into it (for availability
and "open at end"). The SQL fast path reads the SQLite file directly (read-only, beside a
running pipeline: WAL lets readers in) and parses records with orjson, not pydantic: a city
month is a few hundred thousand alarms.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from anju.alarms.model import AlarmEvent, AlarmRecord
from anju.alarms.store import AlarmQuery, AlarmStore
from anju.report.period import Period

__all__ = ["NONE", "AlarmTable", "StoreMissing", "from_records", "load_sqlite", "load_store",
           "store_file"]

NONE = -1  # "has not happened (by the end of the period)" in the time columns
_DB_NAME = "alarms.sqlite3"


class StoreMissing(Exception):
    """There is no alarm store where one was expected."""


@dataclass
class AlarmTable:
    """One row per alarm; times in ms (data time), :data:`NONE` where absent."""

    alarm_id: list[str]
    rule: list[str]
    severity: list[str]
    kind: list[str]
    estate: list[str]
    building: list[str]
    device: list[str | None]
    floor: np.ndarray  # float64, NaN when unknown (falling objects: the origin floor)
    is_event: np.ndarray  # bool
    raised: np.ndarray  # int64
    started: np.ndarray  # int64
    acked: np.ndarray  # int64, NONE when not acknowledged before the end
    ack_team: list[str | None]  # the acknowledging team ("" for an operator outside teams)
    cleared: np.ndarray  # int64, NONE when not cleared before the end
    escalations: np.ndarray  # int32: escalated events before the end
    level: np.ndarray  # int32: the highest escalation level reached before the end
    asked: np.ndarray  # int64: when the company was told (the escalation chain's start)
    held: np.ndarray  # bool: recorded but never delivered (maintenance, inhibited)
    windows: list[tuple[str, str, int, int]] = field(default_factory=list)
    # maintenance windows (scope, target, from, to) overlapping the period (issue 18)

    def __len__(self) -> int:
        return len(self.alarm_id)


def store_file(state_dir: str | Path) -> Path:
    """The SQLite file of a state dir (or the file itself); :class:`StoreMissing` if absent."""
    p = Path(state_dir)
    if p.suffix not in (".sqlite3", ".sqlite", ".db"):
        p = p / _DB_NAME
    if not p.is_file():
        raise StoreMissing(f"no alarm store at {p} (is --state-dir the pipeline's "
                           f"ANJU_STATE_DIR?)")
    return p


def _in(n: int) -> str:
    return ",".join("?" * n)


def load_sqlite(path: str | Path, period: Period, estates: Sequence[str]) -> AlarmTable:
    """The alarms of ``estates`` relevant to ``period``, from the SQLite file at ``path``."""
    path = store_file(path)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        db.execute("CREATE TEMP TABLE scope(estate TEXT PRIMARY KEY)")
        db.executemany("INSERT INTO scope VALUES (?)", [(e,) for e in estates])
        t0, t1 = period.start_ms, period.end_ms
        # started_at ≤ the raise, so "started before the end" keeps every alarm raised
        # before it; of those that began before the start, only the ones still open at the
        # start matter: not cleared yet, or cleared at or after the start.
        rows = db.execute(
            "SELECT record FROM alarms WHERE estate IN (SELECT estate FROM scope) "
            "AND started_at < ? AND (started_at >= ? OR state != 'cleared' OR alarm_id IN "
            "(SELECT alarm_id FROM events WHERE event = 'cleared' AND ts >= ?))",
            (t1, t0, t0)).fetchall()
        esc = db.execute(
            "SELECT e.alarm_id, e.body FROM events e JOIN alarms a ON a.alarm_id = e.alarm_id "
            "WHERE e.event = 'escalated' AND e.ts < ? AND a.started_at < ? "
            "AND a.estate IN (SELECT estate FROM scope)", (t1, t1)).fetchall()
        windows = _windows(db, period)
    except sqlite3.Error as exc:
        raise StoreMissing(f"{path}: {exc}") from exc
    finally:
        db.close()
    levels: dict[str, list[int]] = {}
    for aid, body in esc:
        levels.setdefault(aid, []).append(_level(orjson.loads(body)))
    table = _build((orjson.loads(r[0]) for r in rows), period, levels)
    wanted = set(estates)
    table.windows = [(str(w[0]), str(w[1]), int(w[2]), int(w[3])) for w in windows
                     if w[4] in wanted]
    return table


def _windows(db: sqlite3.Connection, period: Period) -> list[tuple[Any, ...]]:
    """Maintenance windows overlapping the period; none in a store older than issue 18."""
    have = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                      "name = 'maintenance'").fetchone()
    if not have:
        return []
    return db.execute("SELECT scope, target, from_ms, to_ms, estate FROM maintenance "
                      "WHERE from_ms < ? AND to_ms > ?", (period.end_ms, period.start_ms)
                      ).fetchall()


def _level(event: dict[str, Any]) -> int:
    """The escalation level an ``escalated`` event carries (1 when it carries none)."""
    esc = (event.get("details") or {}).get("escalation") or {}
    try:
        return int(esc.get("level", 1))
    except (TypeError, ValueError):
        return 1


def load_store(store: AlarmStore, period: Period, estates: Sequence[str]) -> AlarmTable:
    """The same table from any :class:`AlarmStore` (the in-memory one, or ``:memory:``):
    the slow path, through the store's own interface."""
    recs = store.query_alarms(AlarmQuery(state="all", estates=list(estates),
                                         until_ms=period.end_ms))
    return from_records(store, recs, period)


def from_records(store: AlarmStore, recs: Iterable[AlarmRecord], period: Period) -> AlarmTable:
    """A table of these records, their escalation levels read from ``store``'s events."""
    dicts: list[dict[str, Any]] = []
    levels: dict[str, list[int]] = {}
    for rec in recs:
        if rec.cleared_ts is not None and rec.cleared_ts < period.start_ms:
            continue
        d = orjson.loads(orjson.dumps({
            "alarm_id": rec.alarm_id, "is_event": rec.is_event, "raised_ts": rec.raised_ts,
            "acked_ts": rec.acked_ts, "ack_team": rec.ack_team, "cleared_ts": rec.cleared_ts,
            "chain_from_ms": getattr(rec, "chain_from_ms", None),
            "held": getattr(rec, "held", None), "base": rec.base.model_dump(mode="json")}))
        dicts.append(d)
        if rec.escalations:
            evs: list[AlarmEvent] = store.events(rec.alarm_id)
            levels[rec.alarm_id] = [_level(e.model_dump(mode="json")) for e in evs
                                    if e.event == "escalated" and e.ts < period.end_ms]
    return _build(dicts, period, levels)


def _build(records: Iterable[dict[str, Any]], period: Period,
           levels: dict[str, list[int]]) -> AlarmTable:
    t1 = period.end_ms
    ids: list[str] = []
    rule: list[str] = []
    sev: list[str] = []
    kind: list[str] = []
    estate: list[str] = []
    building: list[str] = []
    device: list[str | None] = []
    ack_team: list[str | None] = []
    floor: list[float] = []
    is_event: list[bool] = []
    raised: list[int] = []
    started: list[int] = []
    acked: list[int] = []
    cleared: list[int] = []
    n_esc: list[int] = []
    level: list[int] = []
    asked: list[int] = []
    held: list[bool] = []
    for d in records:
        r = int(d["raised_ts"])
        if r >= t1:
            continue
        b = d["base"]
        aid = d["alarm_id"]
        ids.append(aid)
        rule.append(b["rule"])
        sev.append(b["severity"])
        kind.append(b["kind"])
        estate.append(b["estate"])
        building.append(b["building"])
        device.append(b.get("device"))
        f = b.get("floor")
        if f is None:
            f = (b.get("details") or {}).get("floor")
        floor.append(float(f) if isinstance(f, int | float) else np.nan)
        is_event.append(bool(d["is_event"]))
        raised.append(r)
        started.append(int(b["started_at"]))
        a = d.get("acked_ts")
        ok = a is not None and int(a) < t1
        acked.append(int(a) if a is not None and ok else NONE)
        team = d.get("ack_team")
        ack_team.append((team or "") if ok else None)
        c = d.get("cleared_ts")
        cleared.append(int(c) if c is not None and c < t1 else NONE)
        told = d.get("chain_from_ms")
        asked.append(int(told) if told is not None else r)
        held.append(d.get("held") is not None)
        lv = levels.get(aid, ())
        n_esc.append(len(lv))
        level.append(max(lv, default=0))
    return AlarmTable(
        alarm_id=ids, rule=rule, severity=sev, kind=kind, estate=estate, building=building,
        device=device, floor=np.asarray(floor, dtype=np.float64),
        is_event=np.asarray(is_event, dtype=bool), raised=np.asarray(raised, dtype=np.int64),
        started=np.asarray(started, dtype=np.int64), acked=np.asarray(acked, dtype=np.int64),
        ack_team=ack_team, cleared=np.asarray(cleared, dtype=np.int64),
        escalations=np.asarray(n_esc, dtype=np.int32), level=np.asarray(level, dtype=np.int32),
        asked=np.asarray(asked, dtype=np.int64), held=np.asarray(held, dtype=bool))
