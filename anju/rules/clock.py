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

import numpy as np

from anju.rules.arrays import changes

__all__ = ["CLOCK_STEP_MS", "NEVER", "find_steps"]

CLOCK_STEP_MS = 30_000
NEVER = int(np.iinfo(np.int64).min)  # newest ts of a device that has not reported yet


def find_steps(newest: np.ndarray, recv_at: np.ndarray, skew_base: np.ndarray,
               dev: np.ndarray, t: np.ndarray, now: int) -> tuple[np.ndarray, np.ndarray]:
    """Devices whose clock jumped, judged on the first of their readings (sorted by device
    then time) received at ``now``, and each one's jump (``ts − device_now``).

    Updates ``skew_base`` (per device: the smallest ``arrival − ts`` seen, how far ahead
    of the receiving clock its clock usually runs; a step starts it afresh).
    """
    first = changes(dev)
    fd, ft = dev[first], t[first]
    nw = newest[fd]
    seen = nw != NEVER
    expected = np.where(seen, nw + (now - recv_at[fd]), ft)
    lag = now - ft
    back = seen & (ft < nw - CLOCK_STEP_MS)
    fwd = seen & (lag < -CLOCK_STEP_MS) & (lag < skew_base[fd] - CLOCK_STEP_MS) \
        & (ft > expected + CLOCK_STEP_MS)
    step = back | fwd
    keep = ~step
    skew_base[fd[keep]] = np.minimum(skew_base[fd[keep]], lag[keep])
    if not step.any():
        return fd[:0], ft[:0]
    skew_base[fd[step]] = lag[step]
    return fd[step], (ft - expected)[step]
