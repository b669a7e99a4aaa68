"""Capped exponential backoff with jitter: the one policy of every retry loop."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Capped exponential backoff with jitter.

    Attempt n (1-based) waits ``min(cap, base·2^(n−1))`` scaled by a uniform factor in
    [1 − jitter, 1] ("equal jitter"), so receivers coming back are not hit by every sender
    at once. A refusal by the receiver (``slow``: a 4xx other than 408/429) waits
    ``client_factor`` times longer, capped at ``client_cap_s``. A ``Retry-After`` replaces
    the computed delay, bounded by ``max_retry_after_s``.

    Shared by every retry loop: webhook deliveries call :meth:`delay` with their own
    attempt count; a loop that retries one thing (the MQTT connection, the InfluxDB
    writer) calls :meth:`next` and :meth:`reset`. ``jitter=1, min_s=0`` is "full jitter",
    ``U(0, min(cap, base·2ⁿ))``.
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.5
    max_retry_after_s: float = 3600.0
    min_s: float = 0.1  # floor, so "Retry-After: 0" cannot make a tight loop
    client_factor: float = 4.0
    client_cap_s: float = 900.0
    rng: random.Random | None = field(default=None, repr=False, compare=False)
    attempt: int = field(default=0, compare=False)  # of :meth:`next`, since :meth:`reset`

    def delay(self, attempt: int, retry_after_s: float | None = None,
              rng: random.Random | None = None, *, slow: bool = False) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after_s is not None:
            return min(max(retry_after_s, self.min_s), self.max_retry_after_s)
        growth = 2.0 ** min(max(attempt - 1, 0), 60)  # bounded exponent: no float overflow
        if slow:
            raw = min(self.client_cap_s, self.base_s * self.client_factor * growth)
        else:
            raw = min(self.cap_s, self.base_s * growth)
        u = (rng or random).random()
        return max(self.min_s, raw * (1.0 - self.jitter * u))

    def next(self) -> float:
        """The delay before the next attempt of this loop, counting attempts."""
        self.attempt += 1
        return self.delay(self.attempt, rng=self.rng)

    def reset(self) -> None:
        """The loop succeeded: the next failure starts from ``base_s`` again."""
        self.attempt = 0
