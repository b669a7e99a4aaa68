"""Rate limits of the chat robots, kept by delaying, never by dropping.

A robot platform counts messages in a window ("20 a minute": DingTalk blocks the robot for
10 minutes beyond it). A token bucket of capacity N refilled at N per minute lets 2N through
in a minute's window (a full bucket, then the refill), so this keeps a log of the last sends
instead (a sliding window log): at most ``count`` sends in any ``per_s`` seconds, for each
of several limits at once (Feishu: 5 a second and 100 a minute).

A send is logged when its answer has come, not when it starts: the platform counts a
message when it arrives, which is somewhere between the two, so logging the end keeps any
two sends ``count`` apart at least ``per_s`` apart *at the platform*, whatever the latency.

The log is kept in wall-clock seconds so that it can be saved with the outbox
(:meth:`WindowLimiter.snapshot`, :meth:`WindowLimiter.restore`): a restarted pipeline must
not take a fresh 20 a minute on a robot that had 20 in the minute before it went down.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence

__all__ = ["WindowLimiter"]


class WindowLimiter:
    """At most ``count`` acquisitions in any ``per_s`` seconds, for each ``(count, per_s)``."""

    def __init__(self, limits: Sequence[tuple[int, float]], *,
                 clock: Callable[[], float] = time.time) -> None:
        if not limits or any(c < 1 or p <= 0 for c, p in limits):
            raise ValueError(f"bad rate limits {limits!r}: need count ≥ 1 and per_s > 0")
        self.limits = [(int(c), float(p)) for c, p in limits]
        self._clock = clock
        self._log: deque[float] = deque(maxlen=max(c for c, _ in self.limits))
        self._lock = asyncio.Lock()
        self.waited_s = 0.0  # total delay imposed, for metrics and tests

    def wait_s(self) -> float:
        """How long until one more send keeps every limit (0: now)."""
        now = self._clock()
        wait = 0.0
        for count, per_s in self.limits:
            if len(self._log) >= count:
                wait = max(wait, self._log[-count] + per_s - now)
        return wait

    def free(self) -> int:
        """How many sends would keep every limit if made now, one after another."""
        now = self._clock()
        return max(0, min(count - sum(1 for t in self._log if t > now - per_s)
                          for count, per_s in self.limits))

    def snapshot(self) -> list[int]:
        """The send log, as wall-clock ms, for saving."""
        return [round(t * 1000) for t in self._log]

    def restore(self, sends_ms: Sequence[int]) -> None:
        """Takes back a saved send log (a send "in the future", after the clock was set
        back, counts as now)."""
        now = self._clock()
        self._log.clear()
        for ms in sorted(sends_ms)[-(self._log.maxlen or 1):]:
            self._log.append(min(ms / 1000, now))

    def record(self) -> None:
        """Counts one send (call when its answer has come, or it failed)."""
        self._log.append(self._clock())

    async def wait(self) -> None:
        """Waits until one more send keeps every limit. One caller at a time (a
        destination has one worker); call :meth:`record` once the send is over."""
        async with self._lock:
            while (w := self.wait_s()) > 0:
                self.waited_s += w
                await asyncio.sleep(w)
