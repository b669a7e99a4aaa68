"""Device clocks (DESIGN.md "Time"): what the engines agree a device's time is.

A reading's ``ts`` is its device's clock. Between readings a device's clock advances with
the receiving clock from the moment its last reading arrived::

    device_now = newest_ts + (now - received_at)

so a device whose clock runs minutes slow or fast, a backlog drained after downtime and a
replay all give the same alarms. A clock can also *jump*; judged on the first reading of
each device in a batch (both engines, so they agree):

* **back**: a reading more than ``CLOCK_STEP_MS`` older than the device's newest is not a
  reordered message (those are ``late``: counted, not applied) but a clock set back. Left
  as late, every later reading would be hidden until the clock caught up again.
* **forward**: a reading more than ``CLOCK_STEP_MS`` ahead of the receiving clock, and that
  much further ahead of it than the device has ever been, and ahead of the device's own
  clock by as much — a reading a few minutes ahead, then normal ones again. A backlog is
  never ahead of the receiving clock, so draining one is not a step.

A step rebases the device: every time its state holds moves by ``ts − device_now``, so
its runs, clear delays and windows carry on for as long as they had run, neither cut
short nor stretched by the jump.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anju.rules.jit import compiled

__all__ = ["CLOCK_STEP_MS", "NEVER", "advance", "in_order", "step_scan"]

CLOCK_STEP_MS = 30_000
NEVER = int(np.iinfo(np.int64).min)  # newest ts of a device that has not reported yet


# explicit signature: compiled once at import, cached
@compiled("i8(i8[::1], i8[::1], i8[::1], i8[::1], i8[::1], i8, i8[::1], i8[::1])")
def step_scan(newest: Any, recv_at: Any, skew_base: Any, dev: Any, t: Any, now: Any,
              step_dev: Any, step_by: Any) -> int:  # pragma: no cover  (compiled)
    """Devices whose clock jumped, judged on the first of their readings (sorted by device
    then time) received at ``now``, and each one's jump (``ts − device_now``) into
    ``step_dev``/``step_by``; how many.

    Updates ``skew_base`` (per device: the smallest ``arrival − ts`` seen, how far ahead
    of the receiving clock its clock usually runs; a step starts it afresh).
    """
    k = 0
    for i in range(len(dev)):
        d = dev[i]
        if i > 0 and dev[i - 1] == d:
            continue  # judged on each device's first reading
        ft = t[i]
        nw = newest[d]
        seen = nw != NEVER
        expected = nw + (now - recv_at[d]) if seen else ft
        lag = now - ft
        back = seen and ft < nw - CLOCK_STEP_MS
        fwd = seen and lag < -CLOCK_STEP_MS and lag < skew_base[d] - CLOCK_STEP_MS \
            and ft > expected + CLOCK_STEP_MS
        if back or fwd:
            skew_base[d] = lag
            step_dev[k] = d
            step_by[k] = ft - expected
            k += 1
        elif lag < skew_base[d]:
            skew_base[d] = lag
    return k


@compiled("b1(i8[::1], i8[::1])")
def in_order(dev: Any, t: Any) -> bool:  # pragma: no cover  (compiled)
    """Whether rows are sorted by device then time (a gateway's batch and a single
    device's stream nearly always are: no sort)."""
    for i in range(1, len(dev)):
        if dev[i] < dev[i - 1] or (dev[i] == dev[i - 1] and t[i] < t[i - 1]):
            return False
    return True


@compiled("void(i8[::1], i8[::1], i8, i8[::1], i8[::1], i8[::1])")
def advance(dev: Any, t: Any, now: Any, newest: Any, recv_at: Any, last_seen: Any
            ) -> None:  # pragma: no cover  (compiled)
    """Each device's newest applied reading (rows sorted by device then time) and when
    it arrived."""
    for i in range(len(dev)):
        d = dev[i]
        newest[d] = t[i]
        last_seen[d] = t[i]
        recv_at[d] = now
