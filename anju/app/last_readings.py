"""Each device's last reading, kept across restarts for the operators' view.

The rule engine knows when each device last reported (its newest ``ts`` and when that
reading arrived), but only since the process started: after a restart every device read
"never heard" in ``GET /devices/health`` and the console's device view until it reported
again, an hour later for a smoke detector on an hourly heartbeat, and a routine restart
looked like a blind spot over the whole city. The pipeline saves what it knows to
``last_readings.npz`` in the state dir every minute and when it stops; the API shows the
saved times for the devices not heard since.

Only that view uses them. The engine starts from nothing, as before: its ``newest``
decides what is late, and a reading redelivered after a crash must still be judged; its
offline clock starts at the restart, since a backlog queued at the broker during the
downtime is not silence.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import numpy as np

from anju.app.files import replace_file
from anju.devices.registry import Site
from anju.devices.site import DeviceTable
from anju.rules.clock import NEVER

__all__ = ["FILE_NAME", "LastReadings"]

log = logging.getLogger(__name__)

FILE_NAME = "last_readings.npz"


class LastReadings:
    """The times saved by an earlier run, in the order of the current site's devices
    (``NEVER`` where nothing was saved), and the saving of today's."""

    def __init__(self, state_dir: Path, site: Site) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._saved: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # ids, ts, recv
        n = len(site.devices)
        # the saved (ts, arrival) in the current device order: one attribute, replaced
        # whole, so a save on a thread sees the two arrays of one layout
        self.view = (np.full(n, NEVER, np.int64), np.full(n, NEVER, np.int64))
        self._writing = threading.Lock()  # a periodic save still running at the final one

    def load(self, site: Site) -> int:
        """Reads the saved times; returns how many devices of ``site`` they cover. A missing
        file is a first start; an unreadable one (cut short by a power loss, written by
        something else) is logged and left for the next save to replace: the view then
        starts empty, and the pipeline starts all the same."""
        try:
            # the file opened here: np.load leaves its own open when the zip is broken
            with open(self.path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                ids, ts, recv = f["ids"], f["newest"], f["recv_at"]
            if not (ids.ndim == ts.ndim == recv.ndim == 1 and len(ids) == len(ts) == len(recv)):
                raise ValueError("arrays of different lengths")
            self._saved = (ids.astype(str), ts.astype(np.int64), recv.astype(np.int64))
        except FileNotFoundError:
            self._saved = None
        except Exception as exc:  # whatever is wrong with a file that only feeds a view
            log.warning("%s cannot be read (%s: %s): the devices' last readings start "
                        "empty", self.path, type(exc).__name__, exc)
            self._saved = None
        return self.use(site)

    def use(self, site: Site) -> int:
        """Lays the saved times out in ``site``'s device order (at start, and after a
        registry reload); returns how many of its devices they cover."""
        n = len(site.devices)
        ts_view, recv_view = np.full(n, NEVER, np.int64), np.full(n, NEVER, np.int64)
        count = 0
        if self._saved is not None:
            ids, ts, recv = self._saved
            index = site.devices.index
            pos = np.array([index.get(i, -1) for i in ids.tolist()], np.int64)
            known = pos >= 0
            ts_view[pos[known]] = ts[known]
            recv_view[pos[known]] = recv[known]
            count = int(known.sum())
        self.view = (ts_view, recv_view)
        return count

    def merged(self, newest: np.ndarray, recv_at: np.ndarray,
               view: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The newer of the engine's times and the saved ones (``view``, by default the
        current one), device by device: after a crash the engine first sees the backlog
        the broker kept, older than what was saved, and the view must not go back."""
        ts_saved, recv_saved = self.view if view is None else view
        mine = newest >= ts_saved
        return np.where(mine, newest, ts_saved), np.where(mine, recv_at, recv_saved)

    def save(self, devices: DeviceTable, newest: np.ndarray, recv_at: np.ndarray,
             view: tuple[np.ndarray, np.ndarray]) -> int:
        """Writes the merged times of the devices heard (now or before); returns how many.

        Everything in the device order of ``devices``, the table the engine's arrays are
        laid out in (``engine.devices``; during a registry reload the Site already holds
        the next one), taken together on the event loop: copies of the engine's arrays,
        and ``view`` as it was then. Replaced whole (:func:`anju.app.files.replace_file`),
        so a crash or a power loss leaves the last whole file. Runs on a thread."""
        if not len(devices) == len(newest) == len(view[0]):
            return 0  # taken across a reload: the next save has it right
        ts, recv = self.merged(newest, recv_at, view)
        heard = np.flatnonzero(ts != NEVER)
        ids = np.array([devices.ids[i] for i in heard.tolist()], dtype=str)
        data = io.BytesIO()
        np.savez(data, ids=ids, newest=ts[heard], recv_at=recv[heard])
        with self._writing:  # saves in order: an older one never lands after a newer one
            replace_file(self.path, data.getvalue())
            self._saved = (ids, ts[heard].copy(), recv[heard].copy())
        return len(heard)
