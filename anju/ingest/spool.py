"""The on-disk spool: points kept while InfluxDB is down or slow, replayed in order after.

Append-only segment files ``{n:016d}.seg`` in one directory; each append (a group of chunks)
is written then ``fsync``'d before the caller acknowledges the readings to the broker, so a
crash loses nothing that was acknowledged. A record is::

    b"ASP1" | u32 body length | u32 crc32(body) | u32 lines | u32 length × lines | lines (UTF-8)

(little-endian). Line boundaries are kept so a replay can split a batch InfluxDB finds too
large. A torn record at the tail (a crash in mid-write) fails its CRC and is cut off at
:meth:`Spool.open`. The read position lives in ``cursor`` (replaced atomically, not fsync'd:
after a crash a few records are replayed twice, which InfluxDB de-duplicates).

Bounded by ``max_bytes``: when an append would pass it, the oldest segments are deleted and
their points counted as dropped, as Telegraf's ``metric_buffer_limit`` drops the oldest
metrics, so a long outage costs the oldest stored history and never stops alarms.

:class:`Spool` is synchronous and single-threaded; :class:`AsyncSpool` runs it on one
dedicated thread so file I/O never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from anju.ingest.metrics import IngestMetrics, ingest_metrics

__all__ = ["AsyncSpool", "Position", "Spool"]

_MAGIC = b"ASP1"
_HEADER = struct.Struct("<4sIII")
_SUFFIX = ".seg"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the spool: segment number and byte offset in it."""

    segment: int
    offset: int


@dataclass
class _Segment:
    number: int
    path: Path
    size: int
    points: int  # points from its start (or from the cursor, for the head) to its end


class Spool:
    """Append-only, fsync'd, bounded segment files; one thread at a time."""

    def __init__(self, directory: str | Path, max_bytes: int, *,
                 segment_bytes: int | None = None, metrics: IngestMetrics | None = None) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        # Several segments fit in the bound, so dropping the oldest frees room gradually.
        self.segment_bytes = segment_bytes or max(64 * 1024, min(16 << 20, max_bytes // 8))
        self.metrics = metrics or ingest_metrics(None)
        self._segments: list[_Segment] = []
        self._cursor = Position(0, 0)
        self._writer: Any = None  # open file of the last segment
        self.dropped = 0  # points dropped because the spool was full (since open)
        self.replayed = 0

    # -- state -----------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def points(self) -> int:
        """Points not yet replayed."""
        return sum(s.points for s in self._segments)

    @property
    def segments(self) -> int:
        return len(self._segments)

    def __len__(self) -> int:
        return self.points

    # -- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Finds the segments, cuts a torn tail, restores the read position."""
        self.dir.mkdir(parents=True, exist_ok=True)
        numbers = sorted(int(p.stem) for p in self.dir.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        cursor = self._load_cursor()
        self._segments = []
        for n in numbers:
            path = self._path(n)
            if cursor is not None and n < cursor.segment:
                path.unlink(missing_ok=True)  # fully replayed before a crash
                continue
            start = cursor.offset if cursor is not None and n == cursor.segment else 0
            valid_end, points = _scan(path, start)
            size = path.stat().st_size
            if valid_end < size:
                with path.open("r+b") as fh:  # a torn record from a crash: cut it off
                    fh.truncate(valid_end)
                    os.fsync(fh.fileno())
                size = valid_end
            self._segments.append(_Segment(n, path, size, points))
        if cursor is not None and self._segments and self._segments[0].number == cursor.segment:
            self._cursor = cursor
        elif self._segments:
            self._cursor = Position(self._segments[0].number, 0)
        else:
            self._cursor = Position((cursor.segment + 1) if cursor else 0, 0)
        self._update_metrics()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- writing ---------------------------------------------------------------------------
    def append(self, chunks: list[list[str]]) -> int:
        """Appends chunks of lines as records, fsync'd once; returns points dropped
        (oldest first) to stay within ``max_bytes``."""
        records = [_encode(lines) for lines in chunks if lines]
        if not records:
            return 0
        need = sum(len(r) for r, _ in records)
        dropped = self._make_room(need)
        seg = self._active_segment()
        size, points = seg.size, seg.points
        try:
            for rec, n in records:
                if seg.size >= self.segment_bytes:
                    self._sync_writer()
                    seg = self._new_segment()
                    size, points = seg.size, seg.points
                self._writer.write(rec)
                seg.size += len(rec)
                seg.points += n
            self._sync_writer()
        except OSError:
            # Disk full or an I/O error: cut the segment back to its last whole record, so
            # a later append does not follow a torn one (open() would cut everything after
            # it). Records of this call fsync'd in earlier segments stay: replayed twice at
            # worst, which InfluxDB de-duplicates.
            seg.size, seg.points = size, points
            self._rewind(seg)
            raise
        self.metrics.spooled.inc(sum(n for _, n in records))
        self._update_metrics()
        return dropped

    def _make_room(self, need: int) -> int:
        dropped = 0
        while self._segments and self.bytes + need > self.max_bytes:
            if len(self._segments) == 1:
                # The only segment is being written: start a fresh one, so the old one
                # can go (a single append larger than the bound still goes through).
                self._sync_writer()
                self._new_segment()
            victim = self._segments.pop(0)
            self._unlink(victim)
            dropped += victim.points
            head = self._segments[0].number if self._segments else victim.number + 1
            self._cursor = Position(head, 0)
            self._save_cursor()
        if dropped:
            self.dropped += dropped
            self.metrics.spool_dropped.inc(dropped)
        return dropped

    def _active_segment(self) -> _Segment:
        if not self._segments or self._segments[-1].size >= self.segment_bytes:
            self._sync_writer()
            return self._new_segment()
        seg = self._segments[-1]
        if self._writer is None:
            self._writer = seg.path.open("ab")
        return seg

    def _new_segment(self) -> _Segment:
        if self._writer is not None:
            self._writer.close()
            self._writer = None  # if the open below fails, no closed file is left behind
        n = self._segments[-1].number + 1 if self._segments else self._cursor.segment
        seg = _Segment(n, self._path(n), 0, 0)
        self._writer = seg.path.open("ab")
        _fsync_dir(self.dir)  # the new file's directory entry must survive a crash too
        self._segments.append(seg)
        if len(self._segments) == 1:
            self._cursor = Position(n, 0)
        return seg

    def _rewind(self, seg: _Segment) -> None:
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()  # may fail to flush what the disk refused: dropped anyway
        except OSError:
            pass
        try:
            with seg.path.open("r+b") as fh:
                fh.truncate(seg.size)
        except OSError:
            pass  # nothing more to do now; open() cuts a torn tail after a restart

    def _sync_writer(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())

    # -- reading ---------------------------------------------------------------------------
    def read(self, max_points: int) -> tuple[list[str], Position, int]:
        """Lines of whole records from the read position (at least one record, else no more
        than ``max_points`` lines), the position after the last of them, and their count."""
        lines: list[str] = []
        cur = self._cursor
        last = cur
        count = 0
        for seg in self._segments:
            if seg.number < cur.segment:
                continue
            offset = cur.offset if seg.number == cur.segment else 0
            if offset >= seg.size:
                continue
            with seg.path.open("rb") as fh:
                fh.seek(offset)
                while offset < seg.size:
                    _magic, length, _crc, n = _HEADER.unpack(fh.read(_HEADER.size))
                    if lines and count + n > max_points:
                        return lines, last, count
                    lines += _decode(fh.read(length), n)
                    count += n
                    offset += _HEADER.size + length
                    last = Position(seg.number, offset)
            if count >= max_points:
                break
        return lines, last, count

    def commit(self, pos: Position, points: int) -> None:
        """Marks everything before ``pos`` (``points`` points, as :meth:`read` said) replayed."""
        remaining = points
        while len(self._segments) > 1 and self._segments[0].number < pos.segment:
            seg = self._segments.pop(0)
            remaining -= seg.points
            self._unlink(seg)
        if self._segments and self._segments[0].number == pos.segment:
            head = self._segments[0]
            head.points = max(0, head.points - max(0, remaining))
            self._cursor = pos
            if pos.offset >= head.size and len(self._segments) > 1:
                # Fully replayed and no longer written to (a later segment exists).
                self._segments.pop(0)
                self._unlink(head)
                self._cursor = Position(self._segments[0].number, 0)
        # else: the segments read were dropped meanwhile to make room; the cursor has moved.
        self._save_cursor()
        self.replayed += points
        self.metrics.replayed.inc(points)
        self._update_metrics()

    def _unlink(self, seg: _Segment) -> None:
        if self._writer is not None and self._writer.name == str(seg.path):
            self._writer.close()
            self._writer = None
        seg.path.unlink(missing_ok=True)

    # -- helpers ---------------------------------------------------------------------------
    def _path(self, n: int) -> Path:
        return self.dir / f"{n:016d}{_SUFFIX}"

    def _load_cursor(self) -> Position | None:
        try:
            seg, off = (self.dir / "cursor").read_text().split()
            return Position(int(seg), int(off))
        except (OSError, ValueError):
            return None

    def _save_cursor(self) -> None:
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(f"{self._cursor.segment} {self._cursor.offset}\n")
        os.replace(tmp, self.dir / "cursor")

    def _update_metrics(self) -> None:
        self.metrics.spool_bytes.set(self.bytes)
        self.metrics.spool_segments.set(len(self._segments))


def _encode(lines: list[str]) -> tuple[bytes, int]:
    encoded = [s.encode() for s in lines]
    lengths = np.fromiter(map(len, encoded), dtype="<u4", count=len(encoded)).tobytes()
    body = lengths + b"".join(encoded)
    return _HEADER.pack(_MAGIC, len(body), zlib.crc32(body), len(encoded)) + body, len(encoded)


def _decode(body: bytes, n: int) -> list[str]:
    lengths = np.frombuffer(body, dtype="<u4", count=n)
    ends = (np.cumsum(lengths) + 4 * n).tolist()
    out = []
    start = 4 * n
    for end in ends:
        out.append(body[start:end].decode())
        start = end
    return out


def _scan(path: Path, start: int) -> tuple[int, int]:
    """The end of the last valid record of a segment, and the points from ``start`` on."""
    points = 0
    offset = start
    with path.open("rb") as fh:
        fh.seek(start)
        while True:
            header = fh.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return offset, points
            magic, length, crc, n = _HEADER.unpack(header)
            if magic != _MAGIC:
                return offset, points
            body = fh.read(length)
            if len(body) < length or zlib.crc32(body) != crc:
                return offset, points
            points += n
            offset += _HEADER.size + length


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AsyncSpool:
    """A :class:`Spool` driven from the event loop; its I/O runs on one dedicated thread
    (one thread, so appends, reads and commits never interleave). ``points``, ``bytes`` and
    ``segments`` are snapshots taken on that thread after each operation, safe to read
    from the loop."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.points = 0
        self.bytes = 0
        self.segments = 0
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="anju-spool")

    def _snapshot(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(*args)
        finally:
            self.points = self.spool.points
            self.bytes = self.spool.bytes
            self.segments = self.spool.segments

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, self._snapshot, fn, *args)

    async def open(self) -> None:
        await self._run(self.spool.open)

    async def append(self, chunks: list[list[str]]) -> int:
        """Appends and fsyncs; returns points dropped to stay within the bound."""
        return await self._run(self.spool.append, chunks)

    async def read(self, max_points: int) -> tuple[list[str], Position, int]:
        return await self._run(self.spool.read, max_points)

    async def commit(self, pos: Position, points: int) -> None:
        await self._run(self.spool.commit, pos, points)

    async def close(self) -> None:
        try:
            await self._run(self.spool.close)
        finally:
            self._io.shutdown(wait=True)
