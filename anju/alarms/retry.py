"""The retry decisions of webhook delivery, in one table (STYLE.md: decide retries once).

CONTRACT.md §4: "Any 2xx is delivered; anything else is retried with backoff until it is."
An alarm is never given up: past the horizon a delivery is *parked* in the outbox, loudly
(log, ``/metrics``, :meth:`WebhookDispatcher.health`), until ``anju alarms requeue``.

=========================  ========================================================
outcome                    what happens
=========================  ========================================================
2xx                        delivered
408, 429                   retried at the normal pace; ``Retry-After`` honoured
other 4xx (401, 403, 410)  retried, slower (``client_factor``, ``client_cap_s``): a
                           secret rotation or a receiver's bad deploy is fixed by
                           people, in minutes to hours, not in milliseconds
5xx, 1xx, 3xx              retried (``Retry-After`` honoured); redirects not followed
timeout, refused, …        retried
robot error code in a 200  retried (the platform's own throttle codes wait longer)
past the horizon           parked: kept, counted, shown; ``anju alarms requeue``
=========================  ========================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from anju.httputil import parse_retry_after

__all__ = ["Backoff", "Verdict", "classify_status", "parse_retry_after"]

Verdict = Literal["delivered", "retry", "retry_slow"]


def classify_status(status: int) -> Verdict:
    """What an HTTP status means for a webhook delivery: never "give up"."""
    if 200 <= status < 300:
        return "delivered"
    if 400 <= status < 500 and status not in (408, 429):
        return "retry_slow"
    return "retry"


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter.

    Attempt n (1-based) waits ``min(cap, base·2^(n−1))`` scaled by a uniform factor in
    [1 − jitter, 1] ("equal jitter"), so receivers coming back are not hit by every sender
    at once. A refusal by the receiver (``slow``: a 4xx other than 408/429) waits
    ``client_factor`` times longer, capped at ``client_cap_s``. A ``Retry-After`` replaces
    the computed delay, bounded by ``max_retry_after_s``.
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.5
    max_retry_after_s: float = 3600.0
    min_s: float = 0.1  # floor, so "Retry-After: 0" cannot make a tight loop
    client_factor: float = 4.0
    client_cap_s: float = 900.0

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
