"""Maintenance windows and elevator maintenance records, kept in the alarm store's file.

A window covers a device, a building (``estate/building``) or an estate from ``from_ms``
to ``to_ms`` (data time of the receiving clock). Alarms raised inside it are recorded but
not delivered (the maintenance stage of :mod:`anju.alarms.stages`). Every change is a row of
``maintenance_audit`` (who, when, what). An elevator's ``last_maintained_at`` is set when a
window covering it ends, or through the API; it feeds ``elevator.maintenance_overdue``.

The tables live in the same SQLite file as the alarms (``alarms.sqlite3``), opened with
their own connection: each call is one short transaction, so ``anju maintenance`` is safe
while ``anju run`` runs (WAL). ``path=":memory:"`` serves replays and tests.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from anju.devices.registry import Site

__all__ = ["MaintenanceBook", "MaintenanceRequest", "Window", "window_covers"]

Scope = Literal["device", "building", "estate"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS maintenance (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    scope       TEXT NOT NULL,
    target      TEXT NOT NULL,
    estate      TEXT NOT NULL,
    from_ms     INTEGER NOT NULL,
    to_ms       INTEGER NOT NULL,
    by          TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    ended_ms    INTEGER,
    ended_by    TEXT,
    closed      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS maintenance_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms   INTEGER NOT NULL,
    action  TEXT NOT NULL,
    window  INTEGER,
    device  TEXT,
    by      TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS maintained (
    device      TEXT PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    by          TEXT NOT NULL
);
"""


class MaintenanceRequest(BaseModel):
    """Body of ``POST /maintenance``: exactly one of device, building (``estate/building``
    or with ``estate``) and estate; from/to in ms (``from`` defaults to now)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    device: str | None = None
    building: str | None = None
    estate: str | None = None
    from_ms: int | None = Field(None, alias="from")
    to_ms: int = Field(alias="to")
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field("", max_length=4000)

    @model_validator(mode="after")
    def _one_target(self) -> MaintenanceRequest:
        if self.device is not None and (self.building or self.estate):
            raise ValueError("name a device, or a building, or an estate")
        if self.device is None and not (self.building or self.estate):
            raise ValueError("name a device, a building or an estate")
        return self


@dataclass(frozen=True, slots=True)
class Window:
    id: int
    scope: Scope
    target: str  # device id, "estate/building", or estate id
    estate: str
    from_ms: int
    to_ms: int  # the planned end, or when it was ended early
    by: str
    reason: str
    created_ms: int
    ended_ms: int | None = None
    ended_by: str | None = None

    def active(self, now_ms: int) -> bool:
        return self.from_ms <= now_ms < self.to_ms

    def row(self) -> dict[str, Any]:
        return asdict(self)


def window_covers(w: Window, estate: str, building: str, device: str | None) -> bool:
    """Whether an alarm's place lies inside the window's target."""
    if w.scope == "device":
        return device == w.target
    if w.scope == "building":
        return w.target == f"{estate}/{building}"
    return w.target == estate


def resolve(site: Site, req: MaintenanceRequest) -> tuple[Scope, str, str]:
    """(scope, target, estate) of a request, checked against the site; ValueError if the
    target is unknown."""
    if req.device is not None:
        i = site.devices.index.get(req.device)
        if i is None:
            raise ValueError(f"unknown device {req.device!r}")
        b = site.buildings[int(site.devices.building[i])]
        return "device", req.device, b.estate
    if req.building:
        estate, _, bid = req.building.rpartition("/")
        estate = estate or (req.estate or "")
        if site.building(estate, bid) is None:
            raise ValueError(f"unknown building {bid!r} in estate {estate!r}")
        return "building", f"{estate}/{bid}", estate
    assert req.estate is not None
    if req.estate not in site.estates:
        raise ValueError(f"unknown estate {req.estate!r}")
    return "estate", req.estate, req.estate


class MaintenanceBook:
    """Windows, audit and maintenance records over one SQLite connection (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        target = Path(path) / "alarms.sqlite3" if Path(path).is_dir() else path
        self._db = sqlite3.connect(str(target), check_same_thread=False, isolation_level=None,
                                   timeout=10)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        self.version = 0  # bumped by every write through this book: caches compare it

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[Any, ...], audit: tuple[Any, ...]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(sql, args)
                rowid = int(cur.lastrowid or 0)
                a = list(audit)
                if a[2] is None:
                    a[2] = rowid
                self._db.execute("INSERT INTO maintenance_audit (ts_ms, action, window, "
                                 "device, by, detail) VALUES (?, ?, ?, ?, ?, ?)", a)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.version += 1
            return rowid

    def add(self, scope: Scope, target: str, estate: str, from_ms: int, to_ms: int, by: str,
            reason: str, now_ms: int | None = None) -> Window:
        """Opens a window; ValueError when it ends before it starts."""
        if to_ms <= from_ms:
            raise ValueError("a window must end after it starts")
        created = int(time.time() * 1000) if now_ms is None else now_ms
        wid = self._write(
            "INSERT INTO maintenance (scope, target, estate, from_ms, to_ms, by, reason, "
            "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (scope, target, estate, from_ms, to_ms, by, reason, created),
            (created, "add", None, None, by, orjson.dumps(
                {"scope": scope, "target": target, "from": from_ms, "to": to_ms,
                 "reason": reason}).decode()))
        w = self.get(wid)
        assert w is not None
        return w

    def end(self, wid: int, by: str, now_ms: int) -> Window:
        """Ends a window now (if it would end later); KeyError for an unknown window."""
        w = self.get(wid)
        if w is None:
            raise KeyError(wid)
        to = min(w.to_ms, max(now_ms, w.from_ms))
        self._write("UPDATE maintenance SET to_ms = ?, ended_ms = ?, ended_by = ? WHERE id = ?",
                    (to, now_ms, by, wid),
                    (now_ms, "end", wid, None, by, orjson.dumps({"to": to}).decode()))
        out = self.get(wid)
        assert out is not None
        return out

    def get(self, wid: int) -> Window | None:
        rows = self._select("WHERE id = ?", (wid,))
        return rows[0] if rows else None

    def windows(self, *, open_only: bool = False, estates: Any = None) -> list[Window]:
        """Windows, newest first; ``open_only``: not yet closed by the lifecycle."""
        ws = self._select("WHERE closed = 0" if open_only else "", ())
        return [w for w in ws if estates is None or w.estate in estates]

    def to_close(self, now_ms: int) -> list[Window]:
        """Windows over at ``now_ms`` that the lifecycle has not closed yet."""
        return self._select("WHERE closed = 0 AND to_ms <= ?", (now_ms,))

    def mark_closed(self, wid: int) -> None:
        with self._lock:
            self._db.execute("UPDATE maintenance SET closed = 1 WHERE id = ?", (wid,))

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Window]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, scope, target, estate, from_ms, to_ms, by, reason, created_ms, "
                f"ended_ms, ended_by FROM maintenance {where} ORDER BY id DESC", args
            ).fetchall()
        return [Window(*r) for r in rows]

    # -- elevator maintenance records ------------------------------------------------------
    def set_maintained(self, device: str, at_ms: int, by: str, now_ms: int) -> None:
        """Records a completed maintenance of a device (an elevator's fortnightly service)."""
        self._write("INSERT INTO maintained (device, at_ms, by) VALUES (?, ?, ?) "
                    "ON CONFLICT(device) DO UPDATE SET at_ms = MAX(at_ms, excluded.at_ms), "
                    "by = excluded.by", (device, at_ms, by),
                    (now_ms, "maintained", 0, device, by, orjson.dumps({"at": at_ms}).decode()))

    def maintained(self) -> dict[str, int]:
        """Device → when it was last maintained (ms)."""
        with self._lock:
            return dict(self._db.execute("SELECT device, at_ms FROM maintained").fetchall())

    def audit(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The audit trail, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ts_ms, action, window, device, by, detail FROM maintenance_audit "
                "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "ts": r[1], "action": r[2], "window": r[3] or None,
                 "device": r[4], "by": r[5], "detail": orjson.loads(r[6])} for r in rows]
