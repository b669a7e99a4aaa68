"""``GET /devices/health``: the "no blind spots" check, per estate and building.

For each building of the caller's estates (CONTRACT §6 scoping, as ``/alarms``): how many
devices it has, how many have reported, how many are offline, cameras obstructed and
detectors with a low battery (the open alarms of rules ``*.offline``, ``*.obstructed`` and
``*.battery_low``: ``device.offline``, ``camera.obstructed``, ``smoke.battery_low``), and
when it last heard from any device. Then the devices themselves — those with a problem, or
every one (``devices=all``) — each with its last reading time.

The last reading times come from the rule engine's state through a small callable the
pipeline passes to ``make_api`` (``last_readings``): per device (the site's dense index)
the newest reading's ``ts`` on the device's own clock (``NEVER`` when it has not reported)
and when that reading arrived on the receiving clock. Without it (the API served over a
store alone) the times are ``null``. Query parameters:

- ``estate``, ``building``: narrow (repeated or comma-separated, as ``/alarms``);
- ``devices``: ``problems`` (default: offline, obstructed, low battery or never heard),
  ``all`` or ``none``;
- ``limit``: at most this many devices (default 1000, at most 10 000); ``truncated`` says
  when more matched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
from aiohttp import web

from anju.alarms.api import _CLOCK, _SITE, _STORE, _error, _json, _many, _team_of, _unauthorized
from anju.alarms.store import AlarmStore
from anju.devices.registry import Site
from anju.kinds import KINDS
from anju.rules.clock import NEVER

__all__ = ["HEALTH_RULES", "LastReadingsFn", "device_health", "install"]

# newest ts (device clock) and arrival (receiving clock) per device, ms, int64 arrays
LastReadingsFn = Callable[[], tuple[np.ndarray, np.ndarray]]

# The open alarms that make a device unhealthy, by the rule id's last part, whatever the
# kind (device.offline, camera.obstructed, smoke.battery_low today; a new kind's
# <kind>.battery_low counts with no change here): the column each counts in.
HEALTH_RULES = {"offline": "offline", "obstructed": "obstructed", "battery_low": "battery_low"}
_PROBLEMS = tuple(HEALTH_RULES.values())
_LIMIT, _MAX_LIMIT = 1000, 10_000

_READINGS: web.AppKey[LastReadingsFn | None] = web.AppKey("last-readings")
_KIND_NAMES = list(KINDS)


def device_health(site: Site, store: AlarmStore, estates: list[str],
                  buildings: list[str] | None, readings: tuple[np.ndarray, np.ndarray] | None,
                  *, devices: str = "problems", limit: int = _LIMIT) -> dict[str, Any]:
    """The health document for ``estates`` (already scoped to the caller); touches SQLite,
    so call it off the event loop."""
    table = site.devices
    n = len(table)
    flags = {p: np.zeros(n, bool) for p in _PROBLEMS}
    for rec in store.list_alarms(open_only=True, estates=estates):
        col = HEALTH_RULES.get(rec.rule.rpartition(".")[2])
        dev = table.index.get(rec.base.device or "")
        if col is not None and dev is not None:
            flags[col][dev] = True
    if readings is not None:
        newest, recv = readings
        heard = newest != NEVER
    else:
        newest = recv = np.zeros(n, np.int64)
        heard = np.zeros(n, bool)
    picked = [b for e in estates for b in site.estates[e].buildings.values()
              if buildings is None or b.id in buildings]
    in_scope = np.zeros(n, bool)
    rows: list[dict[str, Any]] = []
    for b in picked:
        members = table.building == b.index
        in_scope |= members
        row: dict[str, Any] = {"estate": b.estate, "building": b.id,
                               "devices": int(members.sum()),
                               "reporting": int((members & heard).sum())}
        for p in _PROBLEMS:
            row[p] = int((members & flags[p]).sum())
        seen = members & heard
        row["last_reading_at"] = int(recv[seen].max()) if seen.any() else None
        row["oldest_reading_at"] = int(recv[seen].min()) if seen.any() else None
        rows.append(row)
    if devices == "none":
        chosen = np.zeros(0, np.int64)
    elif devices == "all":
        chosen = np.flatnonzero(in_scope)
    else:
        bad = ~heard if readings is not None else np.zeros(n, bool)
        for p in _PROBLEMS:
            bad |= flags[p]
        chosen = np.flatnonzero(in_scope & bad)
    listed = [_device_row(site, int(d), heard, newest, recv, flags) for d in chosen[:limit]]
    return {"buildings": rows, "devices": listed, "truncated": len(chosen) > limit,
            "readings_known": readings is not None}


def _device_row(site: Site, d: int, heard: np.ndarray, newest: np.ndarray, recv: np.ndarray,
                flags: dict[str, np.ndarray]) -> dict[str, Any]:
    table = site.devices
    b = site.buildings[int(table.building[d])]
    floor = table.floor[d]
    return {
        "device": table.ids[d], "kind": _KIND_NAMES[int(table.kind[d])],
        "estate": b.estate, "building": b.id,
        "floor": None if np.isnan(floor) else int(floor), "zone": table.zone[d],
        # the device's own clock, and ours: they differ by its clock's offset and the lag
        "last_reading_ts": int(newest[d]) if heard[d] else None,
        "last_received_at": int(recv[d]) if heard[d] else None,
        **{p: bool(flags[p][d]) for p in _PROBLEMS},
    }


async def _health(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    q = request.query
    devices = q.get("devices", "problems")
    if devices not in ("problems", "all", "none"):
        return _error(400, "devices must be 'problems', 'all' or 'none'")
    try:
        limit = int(q.get("limit", str(_LIMIT)))
    except ValueError:
        return _error(400, "limit must be an integer")
    if not 1 <= limit <= _MAX_LIMIT:
        return _error(400, f"limit must be within 1…{_MAX_LIMIT}")
    site = request.app[_SITE]
    visible = [e for e in site.estates if team.covers(e)]
    wanted = _many(q, "estate")
    estates = [e for e in visible if e in wanted] if wanted else visible
    fn = request.app[_READINGS]
    # Copied here, on the loop the engine runs on: a consistent picture of its state.
    readings = None if fn is None else tuple(np.array(a, np.int64, copy=True) for a in fn())
    doc = await asyncio.to_thread(device_health, site, request.app[_STORE], estates,
                                  _many(q, "building"), readings,  # type: ignore[arg-type]
                                  devices=devices, limit=limit)
    return _json({"now": request.app[_CLOCK](), **doc})


def install(app: web.Application, last_readings: LastReadingsFn | None) -> None:
    """Adds ``GET /devices/health`` to the API application made by ``make_api``."""
    app[_READINGS] = last_readings
    app.router.add_get("/devices/health", _health)
