"""Backing up and restoring the alarm store (alarms, their events, the webhook outbox).

Both go through SQLite's online backup API (``sqlite3.Connection.backup``), never a file
copy: the store is in WAL mode, so ``alarms.sqlite3`` alone is not the database while the
``-wal`` file holds committed transactions, and a copy taken mid-write is torn. The backup
API copies every page within one read transaction, so a backup taken while the pipeline
commits alarms is the store as of one commit, and the pipeline is never blocked (WAL
readers do not block the writer).

A restore writes through the same API into the store's file (WAL and all), after saving
the current store beside it; the pipeline must be stopped (its open alarms live in memory
too).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from anju.alarms.errors import AlarmStoreError
from anju.alarms.sqlite_store import DB_NAME, SCHEMA_VERSION

__all__ = ["BackupReport", "backup_store", "restore_store", "store_path"]

_PAGES_PER_STEP = -1  # all at once: one read transaction, hence one consistent snapshot


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What was copied: the file, its schema version and row counts."""

    path: Path
    schema_version: int
    alarms: int
    open_alarms: int
    events: int
    outbox: int
    bytes: int

    def summary(self) -> dict[str, object]:
        return {"path": str(self.path), "schema_version": self.schema_version,
                "alarms": self.alarms, "open_alarms": self.open_alarms,
                "events": self.events, "outbox": self.outbox, "bytes": self.bytes}


def store_path(state_dir: Path) -> Path:
    """The alarm store's file in a state directory."""
    return Path(state_dir) / DB_NAME


def _inspect(db: sqlite3.Connection, path: Path) -> BackupReport:
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        raise AlarmStoreError(f"{path}: damaged ({check})")
    version = db.execute("PRAGMA user_version").fetchone()[0]

    def count(sql: str) -> int:
        try:
            return int(db.execute(sql).fetchone()[0])
        except sqlite3.OperationalError as exc:  # not an alarm store at all
            raise AlarmStoreError(f"{path}: not an anju alarm store ({exc})") from None

    return BackupReport(path, version, count("SELECT count(*) FROM alarms"),
                        count("SELECT count(*) FROM alarms WHERE state != 'cleared'"),
                        count("SELECT count(*) FROM events"), count("SELECT count(*) FROM outbox"),
                        path.stat().st_size)


def _copy(src: sqlite3.Connection, dest: Path) -> None:
    """Online backup of ``src`` into a fresh ``dest`` (written beside it, then renamed)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as out:
            src.backup(out, pages=_PAGES_PER_STEP)
            # a single self-contained file: no -wal beside it to lose in transit
            out.execute("PRAGMA journal_mode=DELETE")
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def backup_store(state_dir: Path, dest: Path) -> BackupReport:
    """Copies the alarm store of ``state_dir`` into ``dest``, consistent while the pipeline
    runs. Raises AlarmStoreError when there is no store or the copy is not sound."""
    src_path = store_path(state_dir)
    if not src_path.is_file():
        raise AlarmStoreError(f"no alarm store at {src_path}")
    dest = Path(dest)
    if dest.resolve() == src_path.resolve():
        raise AlarmStoreError(f"{dest}: that is the store itself")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{src_path}?mode=ro", uri=True,
                                                timeout=10.0)) as src:
            _copy(src, dest)
        with contextlib.closing(sqlite3.connect(f"file:{dest}?mode=ro", uri=True)) as db:
            return _inspect(db, dest)
    except sqlite3.Error as exc:
        raise AlarmStoreError(f"backup of {src_path} to {dest}: {exc}") from exc


def restore_store(backup: Path, state_dir: Path) -> tuple[BackupReport, Path | None]:
    """Replaces the alarm store of ``state_dir`` with ``backup`` (stop the pipeline first).

    The backup is checked before anything is touched (integrity, an alarm store, a schema
    this anju reads); the current store, if any, is first saved as
    ``alarms.sqlite3.before-restore-<unix time>``, whose path is returned.
    """
    backup = Path(backup)
    if not backup.is_file():
        raise AlarmStoreError(f"{backup}: no such backup file")
    dest = store_path(state_dir)
    try:
        with contextlib.closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as src:
            report = _inspect(src, backup)
            if report.schema_version > SCHEMA_VERSION:
                raise AlarmStoreError(
                    f"{backup}: written by a newer anju (alarm store schema "
                    f"{report.schema_version}; this anju reads up to {SCHEMA_VERSION}): "
                    "restore it with that version or newer")
            saved = None
            if dest.is_file():
                saved = dest.with_name(f"{DB_NAME}.before-restore-{int(time.time())}")
                with contextlib.closing(sqlite3.connect(dest, timeout=10.0)) as cur:
                    _copy(cur, saved)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(dest, timeout=10.0)) as out:
                src.backup(out, pages=_PAGES_PER_STEP)
                out.execute("PRAGMA journal_mode=WAL")  # as the store runs
        return report, saved
    except sqlite3.Error as exc:
        raise AlarmStoreError(f"restore of {backup} into {dest}: {exc}") from exc
