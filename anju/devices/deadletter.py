"""The dead-letter file: every rejected message or reading, one JSON line each.

``DeadLetters(path, max_bytes, keep)`` keeps ``path`` (JSON lines) under the state
directory, rotated by size like logrotate: ``path`` → ``path.1`` → … → ``path.{keep}``,
the oldest dropped. Each line::

    {"received_ms": 1767225600123, "topic": "anju/e1/b1/smoke/s-1", "reason": "not_finite",
     "detail": "...", "field": "temp_c", "device": "s-1",
     "payload": "{\\"ts\\": ...", "payload_b64": false, "payload_bytes": 58, "truncated": false}

``payload`` is cut to 1 KiB: the text itself when it is UTF-8 (cut on a character
boundary), else base64 of the cut bytes with ``payload_b64: true``.

Threading: :meth:`write` is thread-safe and never touches the disk. It formats the line
and appends it to an in-memory buffer under a lock (microseconds), so it may be called
from the event loop. A writer thread (``anju-deadletters``) writes the buffer every
``flush_interval_s`` (or sooner once ``flush_bytes`` are pending) with one ``write`` and
no fsync; :meth:`close` flushes, fsyncs once and joins the thread (from async code:
``await dead.aclose()``). If the disk falls behind, the buffer is bounded by
``max_pending_bytes``: newer letters are then dropped and counted in ``dropped``: a
dead-letter file is a diagnostic, never a reason to stall ingestion.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from anju.devices.decode import Rejection

__all__ = ["DEFAULT_NAME", "PAYLOAD_LIMIT", "DeadLetters", "letter"]

DEFAULT_NAME = "deadletters.jsonl"
PAYLOAD_LIMIT = 1024  # bytes of payload kept per letter
_TEXT_LIMIT = 1024  # characters of topic / detail kept


def letter(rejection: Rejection) -> dict[str, Any]:
    """The dead-letter record of a rejection (what one line of the file holds)."""
    payload = rejection.payload
    cut = payload[:PAYLOAD_LIMIT]
    text: str | None
    try:
        text = cut.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut through a multi-byte character is still text: keep what precedes it.
        text = (cut[:exc.start].decode("utf-8")
                if len(payload) > PAYLOAD_LIMIT and exc.start >= len(cut) - 3
                and exc.reason == "unexpected end of data" else None)
    return {
        "received_ms": rejection.received_ms,
        "topic": rejection.topic[:_TEXT_LIMIT],
        "reason": rejection.reason,
        "detail": rejection.detail[:_TEXT_LIMIT],
        "field": rejection.field,
        "device": rejection.device,
        "payload": text if text is not None else base64.b64encode(cut).decode("ascii"),
        "payload_b64": text is None,
        "payload_bytes": len(payload),
        "truncated": len(payload) > PAYLOAD_LIMIT,
    }


def _line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record) + b"\n"
    except TypeError:  # orjson.JSONEncodeError: a str with a lone surrogate (e.g. a topic)
        return json.dumps(record, ensure_ascii=True).encode("ascii") + b"\n"


class DeadLetters:
    """A size-rotated JSON-lines dead-letter file, written by a background thread.

    ``counts`` holds the letters by reason since start (the pipeline exports them as a
    metric); ``written`` the lines that reached the file, ``dropped`` those refused
    while the buffer was full. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: Path, max_bytes: int, keep: int = 5, *,
                 flush_interval_s: float = 1.0, flush_bytes: int = 256 * 1024,
                 max_pending_bytes: int = 8 * 1024 * 1024) -> None:
        if max_bytes < 4096:
            raise ValueError(f"max_bytes={max_bytes}: at least 4096, a letter can be ~3 KiB")
        if keep < 0:
            raise ValueError("keep must be ≥ 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.flush_interval_s = flush_interval_s
        self.flush_bytes = flush_bytes
        self.max_pending_bytes = max_pending_bytes
        self.counts: Counter[str] = Counter()
        self.written = 0
        self.dropped = 0
        self.rotations = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._io_lock = threading.Lock()  # one writer at a time: the thread, or flush()
        self._closed = False
        self._error: OSError | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")
        self._size = self._fh.tell()
        self._thread = threading.Thread(target=self._run, name="anju-deadletters", daemon=True)
        self._thread.start()

    # -- public -----------------------------------------------------------------------
    def write(self, rejection: Rejection) -> None:
        """Queues one letter; never blocks on the disk. Thread-safe."""
        line = _line(letter(rejection))
        with self._lock:
            self.counts[rejection.reason] += 1
            if self._closed or self._pending_bytes + len(line) > self.max_pending_bytes:
                self.dropped += 1
                return
            self._pending.append(line)
            self._pending_bytes += len(line)
            if self._pending_bytes >= self.flush_bytes:
                self._wake.notify()

    __call__ = write  # so that a DeadLetters can be a Decoder's ``on_reject``

    def flush(self) -> None:
        """Writes what is pending now, from the calling thread (blocking: not on the loop)."""
        with self._lock:
            lines, self._pending, self._pending_bytes = self._pending, [], 0
        self._write(lines)

    @property
    def error(self) -> OSError | None:
        """The last error writing the file, if any (letters of that flush are lost)."""
        return self._error

    def close(self) -> None:
        """Flushes, fsyncs once, stops the writer thread and closes the file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self.flush()
        with contextlib.suppress(OSError):
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self._fh.close()

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread, for async code."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._closed and self._pending_bytes < self.flush_bytes:
                    self._wake.wait(self.flush_interval_s)
                if self._closed:
                    return  # close() flushes what is left
                lines, self._pending, self._pending_bytes = self._pending, [], 0
            self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        with self._io_lock:
            try:
                chunk: list[bytes] = []
                size = 0
                for line in lines:
                    if self._size + size + len(line) > self.max_bytes and (self._size or size):
                        self._fh.write(b"".join(chunk))
                        self._size += size
                        chunk, size = [], 0
                        self._rotate()
                    chunk.append(line)
                    size += len(line)
                self._fh.write(b"".join(chunk))
                self._fh.flush()  # to the OS, so readers see it; no fsync per flush
                self._size += size
                self.written += len(lines)
                self._error = None
            except OSError as exc:
                self._error = exc

    def _rotate(self) -> None:
        """path → path.1 → … → path.{keep}; the oldest is removed."""
        self._fh.close()
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
            oldest.unlink(missing_ok=True)
            for i in range(self.keep - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    src.rename(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        self._fh = self.path.open("ab")
        self._size = 0
        self.rotations += 1
