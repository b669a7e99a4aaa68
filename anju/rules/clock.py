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

__all__ = ["CLOCK_STEP_MS", "NEVER"]

CLOCK_STEP_MS = 30_000
NEVER = int(np.iinfo(np.int64).min)  # newest ts of a device that has not reported yet
