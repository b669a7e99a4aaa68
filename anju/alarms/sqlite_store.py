"""The alarm store and webhook outbox in one SQLite file, in WAL mode.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so a committed event survives
a SIGKILL of the process and a power cut (with NORMAL, WAL loses the newest transactions
on power loss). Alarm traffic is a few events a second at most, so the fsync per commit
costs nothing that matters.

One connection, guarded by a lock: the methods are short and called from worker threads
(``asyncio.to_thread``) and from the pipeline's rule thread. The partial unique index
``alarms_one_open`` makes "at most one open alarm per (rule, subject)" a database fact.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from anju.alarms.errors import AlarmStoreError
from anju.alarms.model import AlarmEvent, AlarmRecord, Delivery, event_body
from anju.alarms.store import Commit, record_from_json, record_to_json

__all__ = ["SCHEMA_VERSION", "SqliteAlarmStore"]

SCHEMA_VERSION = 1
DB_NAME = "alarms.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id            TEXT PRIMARY KEY,
    rule                TEXT NOT NULL,
    subject             TEXT NOT NULL,
    estate              TEXT NOT NULL,
    is_event            INTEGER NOT NULL,
    state               TEXT NOT NULL,
    started_at          INTEGER NOT NULL,
    next_escalation_ms  INTEGER,
    record              BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alarms_one_open
    ON alarms(rule, subject) WHERE state != 'cleared' AND is_event = 0;
CREATE INDEX IF NOT EXISTS alarms_escalation
    ON alarms(next_escalation_ms) WHERE state = 'raised' AND next_escalation_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS alarms_open_estate ON alarms(estate) WHERE state != 'cleared';
CREATE TABLE IF NOT EXISTS events (
    event_id      TEXT PRIMARY KEY,
    alarm_id      TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    ts            INTEGER NOT NULL,
    event         TEXT NOT NULL,
    body          BLOB NOT NULL,
    committed_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_alarm ON events(alarm_id, seq);
CREATE TABLE IF NOT EXISTS outbox (
    id               INTEGER PRIMARY KEY,
    delivery_id      TEXT NOT NULL UNIQUE,
    event_id         TEXT NOT NULL REFERENCES events(event_id),
    alarm_id         TEXT NOT NULL,
    team             TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL DEFAULT 0,
    committed_ms     INTEGER NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    done_ms          INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(team, next_attempt_ms) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_alarm ON outbox(team, alarm_id, id) WHERE state = 'pending';
"""


def _wall_ms() -> int:
    return int(time.time() * 1000)


class SqliteAlarmStore:
    """The durable :class:`~anju.alarms.store.AlarmStore`.

    ``path`` is a directory (the state dir: the file ``alarms.sqlite3`` inside it), a file
    path ending in ``.sqlite3``/``.db``, or ``":memory:"``.
    """

    def __init__(self, path: str | Path, *, wall_ms: Callable[[], int] = _wall_ms) -> None:
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        if str(path) == ":memory:":
            target = ":memory:"
        else:
            p = Path(path)
            if p.suffix not in (".sqlite3", ".sqlite", ".db"):
                p = p / DB_NAME
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AlarmStoreError(f"cannot create {p.parent}: {exc}") from exc
            target = str(p)
        self.path = target
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so a write
            # transaction takes the write lock at its start rather than on its first write.
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AlarmStoreError(
                    f"{target}: alarm store schema {version} was written by a newer anju; "
                    f"this one reads up to schema {SCHEMA_VERSION}. Run the newer anju, or "
                    "`anju alarms restore` a backup made by this version "
                    "(docs/operations.md, Upgrade)")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise AlarmStoreError(f"{target}: {exc}") from exc

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite3 errors become :class:`AlarmStoreError`."""
        with self._lock:
            db = self._db
            try:
                if write:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        yield db
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
                else:
                    yield db
            except sqlite3.Error as exc:
                raise AlarmStoreError(f"{self.path}: {exc}") from exc

    # -- alarms ----------------------------------------------------------------------------
    def get(self, alarm_id: str) -> AlarmRecord | None:
        with self._tx() as db:
            row = db.execute("SELECT record FROM alarms WHERE alarm_id = ?", (alarm_id,)).fetchone()
        return record_from_json(row[0]) if row else None

    def find_open(self, rule: str, subject: str) -> AlarmRecord | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT record FROM alarms WHERE rule = ? AND subject = ? "
                "AND state != 'cleared' AND is_event = 0", (rule, subject)).fetchone()
        return record_from_json(row[0]) if row else None

    def commit(self, commit: Commit) -> None:
        if not commit:
            return
        now = self._wall_ms()
        with self._tx(write=True) as db:
            db.executemany(
                "INSERT INTO alarms(alarm_id, rule, subject, estate, is_event, state, "
                "started_at, next_escalation_ms, record) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(alarm_id) DO UPDATE SET state = excluded.state, "
                "next_escalation_ms = excluded.next_escalation_ms, record = excluded.record",
                [(r.alarm_id, r.rule, r.subject, r.estate, int(r.is_event), r.state,
                  r.base.started_at, r.next_escalation_ms, record_to_json(r))
                 for r in commit.alarms])
            db.executemany(
                "INSERT INTO events(event_id, alarm_id, seq, ts, event, body, committed_ms) "
                "VALUES (?,?,?,?,?,?,?)",
                [(f"{ev.alarm_id}:{seq}", ev.alarm_id, seq, ev.ts, ev.event, event_body(ev), now)
                 for seq, ev in commit.events])
            db.executemany(
                "INSERT INTO outbox(delivery_id, event_id, alarm_id, team, next_attempt_ms, "
                "committed_ms) VALUES (?,?,?,?,?,?)",
                [(d.delivery_id, d.event_id, d.alarm_id, d.team, d.next_attempt_ms,
                  d.committed_ms or now) for d in commit.deliveries])

    def due_escalations(self, now_ms: int) -> list[AlarmRecord]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT record FROM alarms WHERE state = 'raised' AND next_escalation_ms "
                "IS NOT NULL AND next_escalation_ms <= ? ORDER BY next_escalation_ms, alarm_id",
                (now_ms,)).fetchall()
        return [record_from_json(r[0]) for r in rows]

    def list_alarms(self, *, open_only: bool = True, estates: Collection[str] | None = None,
                    limit: int | None = None) -> list[AlarmRecord]:
        sql = "SELECT record FROM alarms WHERE 1=1"
        args: list[Any] = []
        if open_only:
            sql += " AND state != 'cleared'"
        if estates is not None:
            est = list(estates)
            if not est:
                return []
            sql += f" AND estate IN ({','.join('?' * len(est))})"
            args += est
        sql += " ORDER BY started_at DESC, alarm_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._tx() as db:
            rows = db.execute(sql, args).fetchall()
        return [record_from_json(r[0]) for r in rows]

    def events(self, alarm_id: str) -> list[AlarmEvent]:
        with self._tx() as db:
            rows = db.execute("SELECT body FROM events WHERE alarm_id = ? ORDER BY seq",
                              (alarm_id,)).fetchall()
        return [AlarmEvent.model_validate_json(r[0]) for r in rows]

    # -- outbox ----------------------------------------------------------------------------
    # A pending row is at the head of its alarm when no older row of the same alarm and team
    # is pending: only heads are handed out, so each alarm's events arrive in order.
    _HEAD = ("NOT EXISTS (SELECT 1 FROM outbox p WHERE p.team = o.team AND p.alarm_id = "
             "o.alarm_id AND p.state = 'pending' AND p.id < o.id)")

    def due_deliveries(self, team: str, now_ms: int, limit: int = 100) -> list[Delivery]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT o.delivery_id, o.event_id, o.alarm_id, o.team, e.body, o.attempts, "
                "o.next_attempt_ms, o.committed_ms FROM outbox o JOIN events e "
                "ON e.event_id = o.event_id WHERE o.team = ? AND o.state = 'pending' "
                f"AND o.next_attempt_ms <= ? AND {self._HEAD} ORDER BY o.id LIMIT ?",
                (team, now_ms, limit)).fetchall()
        return [Delivery(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7]) for r in rows]

    def next_attempt_ms(self, team: str) -> int | None:
        with self._tx() as db:
            row = db.execute("SELECT MIN(o.next_attempt_ms) FROM outbox o WHERE o.team = ? "
                             f"AND o.state = 'pending' AND {self._HEAD}", (team,)).fetchone()
        return row[0] if row else None

    def mark_delivered(self, delivery_id: str, now_ms: int, status: int) -> None:
        with self._tx(write=True) as db:
            db.execute("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, "
                       "last_status = ?, done_ms = ? WHERE delivery_id = ?",
                       (status, now_ms, delivery_id))

    def mark_retry(self, delivery_id: str, *, attempts: int, next_attempt_ms: int,
                   status: int | None, error: str) -> None:
        with self._tx(write=True) as db:
            db.execute("UPDATE outbox SET attempts = ?, next_attempt_ms = ?, last_status = ?, "
                       "last_error = ? WHERE delivery_id = ?",
                       (attempts, next_attempt_ms, status, error, delivery_id))

    def mark_dead(self, delivery_id: str, now_ms: int, *, attempts: int, status: int | None,
                  error: str) -> None:
        with self._tx(write=True) as db:
            db.execute("UPDATE outbox SET state = 'dead', attempts = ?, last_status = ?, "
                       "last_error = ?, done_ms = ? WHERE delivery_id = ?",
                       (attempts, status, error, now_ms, delivery_id))

    def pending_counts(self) -> dict[str, int]:
        with self._tx() as db:
            rows = db.execute("SELECT team, COUNT(*) FROM outbox WHERE state = 'pending' "
                              "GROUP BY team").fetchall()
        return {r[0]: r[1] for r in rows}

    def outbox(self, *, state: str | None = None, team: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT delivery_id, event_id, alarm_id, team, state, attempts, last_status, "
               "last_error FROM outbox WHERE 1=1")
        args: list[Any] = []
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        if team is not None:
            sql += " AND team = ?"
            args.append(team)
        with self._tx() as db:
            rows = db.execute(sql + " ORDER BY id", args).fetchall()
        keys = ("delivery_id", "event_id", "alarm_id", "team", "state", "attempts",
                "last_status", "last_error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def requeue(self, now_ms: int, *, team: str | None = None,
                delivery_ids: Collection[str] | None = None) -> int:
        sql = ("UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = 0, "
               "committed_ms = ?, done_ms = NULL WHERE state = 'dead'")
        args: list[Any] = [now_ms]
        if team is not None:
            sql += " AND team = ?"
            args.append(team)
        if delivery_ids is not None:
            ids = list(delivery_ids)
            if not ids:
                return 0
            sql += f" AND delivery_id IN ({','.join('?' * len(ids))})"
            args += ids
        with self._tx(write=True) as db:
            return db.execute(sql, args).rowcount

    def prune_outbox(self, before_ms: int) -> int:
        with self._tx(write=True) as db:
            return db.execute("DELETE FROM outbox WHERE state = 'delivered' AND done_ms < ?",
                              (before_ms,)).rowcount

    def close(self) -> None:
        """Closes the connection (checkpointing the WAL); idempotent."""
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error as exc:
                raise AlarmStoreError(f"{self.path}: {exc}") from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
