"""The alarm store and webhook outbox in one SQLite file, in WAL mode.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so a committed event survives
a SIGKILL of the process and a power cut (with NORMAL, WAL loses the newest transactions
on power loss). Alarm traffic is a few events a second at most, so the fsync per commit
costs nothing that matters. One kind of write is lighter: marking a delivery done commits
with ``synchronous=NORMAL`` (no fsync; it survives a SIGKILL, and the next durable commit's
fsync covers it). A power cut may forget the mark, and the event is then sent again under
the same ``X-Anju-Delivery`` id, which delivery is at least once anyway. Its fsync, one
after every webhook, held the store (and the disk) from the next alarm's commit.

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

import orjson

from anju.alarms.errors import AlarmStoreError
from anju.alarms.model import AlarmEvent, AlarmRecord, Delivery, event_body
from anju.alarms.store import (
    AlarmQuery,
    Commit,
    Listener,
    LoggedEvent,
    record_from_json,
    record_to_json,
)

__all__ = ["SCHEMA_VERSION", "SqliteAlarmStore"]

SCHEMA_VERSION = 2
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
CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox(team) WHERE state != 'delivered';
-- what a delivery target keeps across restarts (a chat robot's recent sends: its rate limit)
CREATE TABLE IF NOT EXISTS target_state (
    team        TEXT PRIMARY KEY,
    state       BLOB NOT NULL,
    updated_ms  INTEGER NOT NULL
);
-- 'dead' was the name of 'parked' before every failure became retryable (CONTRACT §4)
UPDATE outbox SET state = 'parked' WHERE state = 'dead';
"""

# Version 2: the alarm's building, kind and severity as columns, so the console's list and
# history filter in SQL. Added to version-1 files (and fresh ones) by ALTER TABLE and filled
# from each alarm's record, in one transaction: an old state file stays loadable.
_V2_COLUMNS = ("building", "kind", "severity")
_V2_INDEX = ("CREATE INDEX IF NOT EXISTS alarms_history ON alarms(estate, started_at) "
             "WHERE state = 'cleared'")


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
            self._migrate()
        except sqlite3.Error as exc:
            raise AlarmStoreError(f"{target}: {exc}") from exc
        self._listeners: list[Listener] = []

    def _migrate(self) -> None:
        """Brings a version-0/1 file to :data:`SCHEMA_VERSION` in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            have = {r[1] for r in db.execute("PRAGMA table_info(alarms)")}
            missing = [c for c in _V2_COLUMNS if c not in have]
            for col in missing:
                db.execute(f"ALTER TABLE alarms ADD COLUMN {col} TEXT")
            if missing:
                rows = db.execute("SELECT alarm_id, record FROM alarms").fetchall()
                fill = []
                for aid, blob in rows:
                    base = record_from_json(blob).base
                    fill.append((base.building, base.kind, base.severity, aid))
                db.executemany("UPDATE alarms SET building = ?, kind = ?, severity = ? "
                               "WHERE alarm_id = ?", fill)
            db.execute(_V2_INDEX)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _tx(self, write: bool = False, *, fsync: bool = True
            ) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite3 errors become :class:`AlarmStoreError`.
        ``fsync=False``: a write committed without waiting for the disk (see the module's
        docstring for which writes may)."""
        with self._lock:
            db = self._db
            try:
                if write:
                    if not fsync:
                        db.execute("PRAGMA synchronous=NORMAL")
                    try:
                        db.execute("BEGIN IMMEDIATE")
                        try:
                            yield db
                        except BaseException:
                            db.execute("ROLLBACK")
                            raise
                        db.execute("COMMIT")
                    finally:
                        if not fsync:
                            db.execute("PRAGMA synchronous=FULL")
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
                "started_at, next_escalation_ms, record, building, kind, severity) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(alarm_id) DO UPDATE SET state = excluded.state, "
                "next_escalation_ms = excluded.next_escalation_ms, record = excluded.record",
                [(r.alarm_id, r.rule, r.subject, r.estate, int(r.is_event), r.state,
                  r.base.started_at, r.next_escalation_ms, record_to_json(r),
                  r.base.building, r.base.kind, r.base.severity)
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
        if commit.events:
            for fn in list(self._listeners):
                fn()

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

    def query_alarms(self, query: AlarmQuery) -> list[AlarmRecord]:
        sql = "SELECT record FROM alarms WHERE 1=1"
        args: list[Any] = []
        if query.state == "open":
            sql += " AND state != 'cleared'"
        elif query.state == "cleared":
            sql += " AND state = 'cleared'"
        for col, values in (("estate", query.estates), ("building", query.buildings),
                            ("kind", query.kinds), ("severity", query.severities),
                            ("rule", query.rules)):
            if values is None:
                continue
            vals = list(values)
            if not vals:
                return []
            sql += f" AND {col} IN ({','.join('?' * len(vals))})"
            args += vals
        if query.since_ms is not None:
            sql += " AND started_at >= ?"
            args.append(query.since_ms)
        if query.until_ms is not None:
            sql += " AND started_at < ?"
            args.append(query.until_ms)
        sql += " ORDER BY started_at DESC, alarm_id"
        if query.limit is not None:
            sql += " LIMIT ?"
            args.append(query.limit)
        with self._tx() as db:
            rows = db.execute(sql, args).fetchall()
        return [record_from_json(r[0]) for r in rows]

    # The event log is the events table in rowid order: rows are only ever appended (and
    # anju never VACUUMs), so a rowid is a stable, ascending position.
    def events_since(self, after_id: int, *, estates: Collection[str] | None = None,
                     limit: int = 500) -> list[LoggedEvent]:
        sql = ("SELECT e.rowid, e.body, a.record FROM events e JOIN alarms a "
               "ON a.alarm_id = e.alarm_id WHERE e.rowid > ?")
        args: list[Any] = [after_id]
        if estates is not None:
            est = list(estates)
            if not est:
                return []
            sql += f" AND a.estate IN ({','.join('?' * len(est))})"
            args += est
        sql += " ORDER BY e.rowid LIMIT ?"
        args.append(limit)
        with self._tx() as db:
            rows = db.execute(sql, args).fetchall()
        return [LoggedEvent(r[0], AlarmEvent.model_validate_json(r[1]), record_from_json(r[2]))
                for r in rows]

    def last_event_id(self) -> int:
        with self._tx() as db:
            row = db.execute("SELECT MAX(rowid) FROM events").fetchone()
        return int(row[0] or 0)

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # -- outbox ----------------------------------------------------------------------------
    # A pending row is at the head of its alarm when no older row of the same alarm and team
    # is pending or parked: only heads are handed out, so each alarm's events arrive in
    # order, also across a parking and its requeue (never ``cleared`` before ``raised``).
    _HEAD = ("NOT EXISTS (SELECT 1 FROM outbox p WHERE p.team = o.team AND p.alarm_id = "
             "o.alarm_id AND p.state IN ('pending', 'parked') AND p.id < o.id)")

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
        with self._tx(write=True, fsync=False) as db:
            db.execute("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, "
                       "last_status = ?, done_ms = ? WHERE delivery_id = ?",
                       (status, now_ms, delivery_id))

    def mark_delivered_many(self, delivery_ids: Collection[str], now_ms: int,
                            status: int) -> None:
        # one transaction: a digest is delivered or not
        with self._tx(write=True, fsync=False) as db:
            db.executemany("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, "
                           "last_status = ?, done_ms = ? WHERE delivery_id = ?",
                           [(status, now_ms, did) for did in delivery_ids])

    def mark_retry_many(self, delivery_ids: Collection[str], *, next_attempt_ms: int,
                        status: int | None, error: str) -> None:
        with self._tx(write=True) as db:
            db.executemany("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?, "
                           "last_status = ?, last_error = ? WHERE delivery_id = ?",
                           [(next_attempt_ms, status, error, did) for did in delivery_ids])

    def target_state(self, team: str) -> dict[str, Any] | None:
        with self._tx() as db:
            row = db.execute("SELECT state FROM target_state WHERE team = ?",
                             (team,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def save_target_state(self, team: str, state: dict[str, Any]) -> None:
        with self._tx(write=True) as db:
            db.execute("INSERT INTO target_state(team, state, updated_ms) VALUES (?, ?, ?) "
                       "ON CONFLICT(team) DO UPDATE SET state = excluded.state, "
                       "updated_ms = excluded.updated_ms",
                       (team, orjson.dumps(state), self._wall_ms()))

    def mark_retry(self, delivery_id: str, *, attempts: int, next_attempt_ms: int,
                   status: int | None, error: str) -> None:
        with self._tx(write=True) as db:
            db.execute("UPDATE outbox SET attempts = ?, next_attempt_ms = ?, last_status = ?, "
                       "last_error = ? WHERE delivery_id = ?",
                       (attempts, next_attempt_ms, status, error, delivery_id))

    def mark_parked(self, delivery_id: str, now_ms: int, *, attempts: int,
                    status: int | None, error: str) -> None:
        with self._tx(write=True) as db:
            db.execute("UPDATE outbox SET state = 'parked', attempts = ?, last_status = ?, "
                       "last_error = ?, done_ms = ? WHERE delivery_id = ?",
                       (attempts, status, error, now_ms, delivery_id))

    def undelivered(self) -> dict[str, dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT o.team, SUM(o.state = 'pending'), SUM(o.state = 'parked'), "
                "MIN(e.committed_ms), MAX(CASE WHEN o.state = 'parked' THEN o.done_ms END) "
                "FROM outbox o JOIN events e ON e.event_id = o.event_id "
                "WHERE o.state != 'delivered' GROUP BY o.team").fetchall()
        return {r[0]: {"pending": r[1], "parked": r[2], "oldest_committed_ms": r[3],
                       "last_parked_ms": r[4]} for r in rows}

    def pending_counts(self) -> dict[str, int]:
        with self._tx() as db:
            rows = db.execute("SELECT team, COUNT(*) FROM outbox WHERE state = 'pending' "
                              "GROUP BY team").fetchall()
        return {r[0]: r[1] for r in rows}

    def outbox(self, *, state: str | None = None, team: str | None = None,
               alarm_id: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT delivery_id, event_id, alarm_id, team, state, attempts, last_status, "
               "last_error FROM outbox WHERE 1=1")
        args: list[Any] = []
        if alarm_id is not None:
            sql += " AND alarm_id = ?"
            args.append(alarm_id)
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
        where = " WHERE state = 'parked'"
        args: list[Any] = []
        if team is not None:
            where += " AND team = ?"
            args.append(team)
        if delivery_ids is not None:
            ids = list(delivery_ids)
            if not ids:
                return 0
            where += f" AND delivery_id IN ({','.join('?' * len(ids))})"
            args += ids
        with self._tx(write=True) as db:
            # the later events of the same alarms waited behind the parked rows, never tried:
            # their horizon starts again too
            db.execute("UPDATE outbox SET committed_ms = ? WHERE state = 'pending' AND "
                       "(team, alarm_id) IN (SELECT team, alarm_id FROM outbox" + where + ")",
                       [now_ms, *args])
            return db.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = 0, "
                "committed_ms = ?, done_ms = NULL" + where, [now_ms, *args]).rowcount

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
