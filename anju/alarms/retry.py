"""The retry decisions of webhook delivery, in one table (STYLE.md: decide retries once).

=====================  ==========================================================
outcome                what happens
=====================  ==========================================================
2xx                    delivered
408, 429               retried; ``Retry-After`` honoured
other 4xx              dead-lettered at once: the receiver refuses this body
5xx, 1xx, 3xx          retried (``Retry-After`` honoured); redirects not followed
timeout, refused, …    retried
past the horizon       dead-lettered (counted)
=====================  ==========================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from anju.httputil import parse_retry_after

__all__ = ["Backoff", "Verdict", "classify_status", "parse_retry_after"]

Verdict = Literal["delivered", "retry", "dead"]


def classify_status(status: int) -> Verdict:
    """What an HTTP status means for a webhook delivery."""
    if 200 <= status < 300:
        return "delivered"
    if 400 <= status < 500 and status not in (408, 429):
        return "dead"
    return "retry"


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter.

    Attempt n (1-based) waits ``min(cap, base·2^(n−1))`` scaled by a uniform factor in
    [1 − jitter, 1] ("equal jitter"), so receivers coming back are not hit by every sender
    at once. A ``Retry-After`` replaces the computed delay, bounded by ``max_retry_after_s``.
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    jitter: float = 0.5
    max_retry_after_s: float = 3600.0
    min_s: float = 0.1  # floor, so "Retry-After: 0" cannot make a tight loop

    def delay(self, attempt: int, retry_after_s: float | None = None,
              rng: random.Random | None = None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, self.min_s), self.max_retry_after_s)
        raw = min(self.cap_s, self.base_s * 2.0 ** max(attempt - 1, 0))
        u = (rng or random).random()
        return max(self.min_s, raw * (1.0 - self.jitter * u))
