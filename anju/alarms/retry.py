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

from typing import Literal

from anju.backoff import Backoff
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
