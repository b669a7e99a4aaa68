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

import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from anju.devices.registry import Site
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
        self.newest = np.full(len(site.devices), NEVER, np.int64)
        self.recv_at = np.full(len(site.devices), NEVER, np.int64)

    def load(self, site: Site) -> int:
        """Reads the saved times; returns how many devices of ``site`` they cover. A missing
        file is a first start; an unreadable one is logged and left for the next save to
        replace (the view then starts empty, as before this file existed)."""
        try:
            # the file opened here: np.load leaves its own open when the zip is broken
            with open(self.path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                ids, ts, recv = f["ids"], f["newest"], f["recv_at"]
            if not (ids.ndim == ts.ndim == recv.ndim == 1 and len(ids) == len(ts) == len(recv)):
                raise ValueError("arrays of different lengths")
            self._saved = (ids.astype(str), ts.astype(np.int64), recv.astype(np.int64))
        except FileNotFoundError:
            self._saved = None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("%s cannot be read (%s): the devices' last readings start empty",
                        self.path, exc)
            self._saved = None
        return self.use(site)

    def use(self, site: Site) -> int:
        """Lays the saved times out in ``site``'s device order (at start, and after a
        registry reload); returns how many of its devices they cover."""
        n = len(site.devices)
        self.newest = np.full(n, NEVER, np.int64)
        self.recv_at = np.full(n, NEVER, np.int64)
        if self._saved is None:
            return 0
        ids, ts, recv = self._saved
        index = site.devices.index
        pos = np.array([index.get(i, -1) for i in ids.tolist()], np.int64)
        known = pos >= 0
        self.newest[pos[known]] = ts[known]
        self.recv_at[pos[known]] = recv[known]
        return int(known.sum())

    def merged(self, newest: np.ndarray, recv_at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The engine's times, and the saved ones for devices it has not heard from."""
        heard = newest != NEVER
        return np.where(heard, newest, self.newest), np.where(heard, recv_at, self.recv_at)

    def save(self, site: Site, newest: np.ndarray, recv_at: np.ndarray) -> int:
        """Writes the merged times of the devices heard (now or before); returns how many.
        Written to a temporary file and renamed over the old one, so a crash mid-way leaves
        the last whole file. Call it off the event loop, with arrays that are not changing."""
        ts, recv = self.merged(newest, recv_at)
        heard = np.flatnonzero(ts != NEVER)
        ids = np.array([site.devices.ids[i] for i in heard.tolist()], dtype=str)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, ids=ids, newest=ts[heard], recv_at=recv[heard])
        os.replace(tmp, self.path)
        self._saved = (ids, ts[heard].copy(), recv[heard].copy())
        return len(heard)
