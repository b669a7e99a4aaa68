"""paho's socket driven by the asyncio event loop instead of paho's network thread.

paho tells us about its socket through callbacks (opened, closed, has something to
write); :class:`LoopSocket` registers it with the event loop, which calls the consumer's
``on_readable`` when there is something to read and paho's ``loop_write`` when the socket
takes more. Why not paho's own thread: see anju.ingest.mqtt. paho may call these from
the thread that runs ``connect``; everything hops to the loop first (:meth:`in_loop`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

__all__ = ["LoopSocket"]


class LoopSocket:
    """The event loop's side of one paho client's socket at a time.

    ``on_readable`` reads (and decides when to stop); ``may_read`` says whether reading is
    wanted at all (not draining, not paused by back-pressure); ``on_lost`` is told when a
    write fails.
    """

    def __init__(self, on_readable: Callable[[], None], may_read: Callable[[], bool],
                 on_lost: Callable[[str], None],
                 wrap: Callable[[mqtt.Client, Any], Any] | None = None) -> None:
        self.on_readable = on_readable
        self.wrap = wrap  # called with each new socket, on paho's thread: what to register
        self.may_read = may_read
        self.on_lost = on_lost
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: mqtt.Client | None = None
        self.sock: Any = None  # paho's socket while open
        self.reader_on = False

    def attach(self, client: mqtt.Client) -> None:
        """Takes over ``client``'s socket callbacks (a new client for each connection)."""
        self.client = client
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    def drop(self, client: mqtt.Client) -> None:
        """Takes the socket off the loop and closes it."""
        self.reader(False)
        sock = self.sock
        if sock is not None and self.loop is not None:
            self.loop.remove_writer(sock)
        self.sock = None
        raw = client.socket()
        if raw is not None:
            raw.close()

    def in_loop(self, fn: Any, *args: Any) -> None:
        """Runs ``fn`` on the event loop: now if we are on it, else soon (from connect's
        thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def reader(self, on: bool) -> None:
        """Watches the socket for reading (if ``may_read``), or stops watching it."""
        loop, sock = self.loop, self.sock
        if loop is None or sock is None or on == self.reader_on:
            return
        if on:
            if self.may_read():
                loop.add_reader(sock, self.on_readable)
                self.reader_on = True
        else:
            loop.remove_reader(sock)
            self.reader_on = False

    def _on_writable(self) -> None:
        client = self.client
        if client is not None and client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
            self.on_lost("connection lost while writing")

    # paho callbacks ----------------------------------------------------------------------
    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        if self.wrap is not None:
            sock = self.wrap(client, sock)

        def opened() -> None:
            self.sock = sock
            self.reader_on = False
            self.reader(True)
        self.in_loop(opened)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        def closed() -> None:
            if self.sock is sock:
                self.reader(False)
                if self.loop is not None:
                    self.loop.remove_writer(sock)
                self.sock = None
        self.in_loop(closed)

    def _on_register_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        def register() -> None:
            if self.loop is not None and self.sock is sock:
                self.loop.add_writer(sock, self._on_writable)
        self.in_loop(register)

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.in_loop(lambda: self.loop.remove_writer(sock) if self.loop else None)
