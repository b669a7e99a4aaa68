"""Alarms first: storage's work waits while an alarm is on its way (issue 15).

An alarm's way through the pipeline (judged by the rules, committed to the alarm store, sent
by a webhook worker) takes a few milliseconds of the event loop and of the machine. Storage's
work in the same moments lengthens it: encoding a chunk holds the loop, and writing ~30 KB
to InfluxDB wakes influxd on the same cores (one such write step measured ~1 ms in the
pipeline, 72 µs to an idle influxd). Held until the webhook has gone out, that work no
longer competes: in the peer run at 5 000 msg/s the alarm p99 went from 9.0–9.8 ms to
6.6–7.7 ms (three runs each, with the rules' batches closing as soon as a socket read is
decoded).

Storage loses nothing by waiting: its chunks linger 50 ms anyway, and a hold ends after
``hold_max_s`` however busy the alarms are, so an alarm storm slows storage, never stops it.
Reading and decoding are never held: the next alarm may be in the next reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

__all__ = ["AlarmsFirst"]


class AlarmsFirst:
    """Clear when no transition waits for the alarm store and no webhook is sending.

    The rules (and the clock) call :meth:`judged` when they queue transitions; the alarm
    branch calls :meth:`committed` once it has committed them and woken the webhooks; the
    dispatcher calls :meth:`check` after each webhook round. ``sending`` says whether a
    webhook worker has events to send (the dispatcher's :meth:`sending
    <anju.alarms.delivery.WebhookDispatcher.sending>`)."""

    def __init__(self, hold_max_s: float = 0.02,
                 on_held: Callable[[float], None] | None = None) -> None:
        """``on_held`` is told the seconds of every wait that found an alarm on its way
        (the pipeline counts them in ``anju_storage_held_for_alarms_seconds``)."""
        self.hold_max_s = hold_max_s
        self.on_held = on_held
        self.sending: Callable[[], bool] = lambda: False
        self._on_way = 0  # queued lists of transitions not yet committed
        self._clear = asyncio.Event()
        self._clear.set()
        self.holds = 0  # waits that found an alarm on its way (for tests and stats)

    @property
    def clear(self) -> bool:
        """No alarm on its way: storage goes ahead at once."""
        return self._clear.is_set()

    def judged(self) -> None:
        """Transitions were queued for the alarm store."""
        self._on_way += 1
        self._clear.clear()

    def committed(self, n: int) -> None:
        """``n`` queued lists of transitions were committed (their webhooks woken)."""
        self._on_way = max(0, self._on_way - n)
        self.check()

    def check(self) -> None:
        """Clears the way if nothing is on it any more."""
        if self._on_way == 0 and not self.sending():
            self._clear.set()

    async def wait(self) -> None:
        """Returns at once when the way is clear, else when it clears or after
        ``hold_max_s``."""
        if self._clear.is_set():
            return
        self.holds += 1
        t0 = time.perf_counter()
        with contextlib.suppress(TimeoutError):  # not wait_for: see MqttConsumer.wait
            async with asyncio.timeout(self.hold_max_s):
                await self._clear.wait()
        if self.on_held is not None:
            self.on_held(time.perf_counter() - t0)
