"""``GET /events``: the alarm events of the caller's estates as Server-Sent Events.

Each committed event is one SSE message ``event: alarm``, its ``id`` the event's position
in the store's log (:meth:`AlarmStore.events_since`) and its data
``{"event": <CONTRACT §4 event>, "alarm": <the alarm's API row now>}``. A connection
without ``Last-Event-ID`` first gets ``event: snapshot`` (the open alarms and the log
position they reflect); one with it gets every event after that id (a browser's
EventSource resends it by itself when it reconnects), or a fresh snapshot when it is too
far behind. A comment line keeps idle connections alive through proxies.

The store calls a listener after each commit, from whichever thread committed; the
listener wakes every connection on the loop, which then reads the log off the loop. A
connection also looks at the log once a second by itself, so events committed by another
process on the same SQLite file (``anju alarms`` commands) still arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

import orjson
from aiohttp import web

from anju.alarms.store import AlarmStore, LoggedEvent

__all__ = ["EventNotifier", "stream_events"]

_BATCH = 500  # events read from the log at a time
_MAX_GAP = 5000  # a client further behind than this gets a snapshot instead of the gap
_PROBE_S = 1.0  # look at the log unprompted this often
_KEEPALIVE_S = 15.0
_SNAPSHOT_LIMIT = 10_000


class EventNotifier:
    """Wakes the waiting SSE connections when the store commits events.

    ``attach`` on the loop that serves them (the app's startup), ``close`` at shutdown:
    closing wakes everyone for the last time so that long-lived streams end and the server
    need not wait for them.
    """

    def __init__(self, store: AlarmStore) -> None:
        self._store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self.closed = False

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._store.add_listener(self._from_thread)

    def close(self) -> None:
        self.closed = True
        self._store.remove_listener(self._from_thread)
        self._fire()

    def _from_thread(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody listens
            loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        # Every waiter holds the current Event; set it and hand out a fresh one.
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    def current(self) -> asyncio.Event:
        """The Event the next commit sets; take it before reading the log, then wait."""
        return self._event


def _message(event: str, data: Any, msg_id: int | None) -> bytes:
    head = f"id: {msg_id}\n" if msg_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _logged(item: LoggedEvent) -> bytes:
    return _message("alarm", {"event": item.event.model_dump(mode="json"),
                              "alarm": item.alarm.row()}, item.id)


def _snapshot(store: AlarmStore, estates: Collection[str] | None) -> tuple[bytes, int]:
    # The log position first: an event committed while the rows are read is sent again
    # afterwards, and applying an alarm's newer row twice is harmless.
    position = store.last_event_id()
    recs = store.list_alarms(open_only=True, estates=estates, limit=_SNAPSHOT_LIMIT)
    return _message("snapshot", {"alarms": [r.row() for r in recs],
                                 "last_event_id": position}, position), position


def _read(store: AlarmStore, cursor: int,
          estates: Collection[str] | None) -> tuple[list[LoggedEvent], int]:
    """The next events and the cursor after them. When the log holds nothing more for these
    estates the cursor moves to its end, so other estates' events are not read again."""
    end = store.last_event_id()
    items = store.events_since(cursor, estates=estates, limit=_BATCH)
    if items:
        cursor = items[-1].id
    if len(items) < _BATCH:
        cursor = max(cursor, end)
    return items, cursor


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


async def stream_events(request: web.Request, store: AlarmStore, notifier: EventNotifier,
                        estates: Collection[str] | None) -> web.StreamResponse:
    """Serves one SSE connection until the client leaves or the server shuts down."""
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    })
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    await resp.write(b"retry: 2000\n\n")
    resume = _last_event_id(request)
    if resume is not None:
        end = await asyncio.to_thread(store.last_event_id)
        if end - resume > _MAX_GAP or resume > end:  # too far behind, or another store's id
            resume = None
    if resume is None:
        snap, cursor = await asyncio.to_thread(_snapshot, store, estates)
        await resp.write(snap)
    else:
        cursor = resume
    last_write = loop.time()
    try:
        while not notifier.closed:
            wake = notifier.current()
            items, cursor = await asyncio.to_thread(_read, store, cursor, estates)
            if items:
                await resp.write(b"".join(_logged(i) for i in items))
                last_write = loop.time()
                if len(items) == _BATCH:
                    continue
            elif loop.time() - last_write >= _KEEPALIVE_S:
                await resp.write(b": keep-alive\n\n")
                last_write = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), _PROBE_S)
    except (ConnectionResetError, ConnectionError):
        pass  # the client left
    return resp
