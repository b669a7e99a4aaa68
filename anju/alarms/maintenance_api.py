"""The maintenance routes of the API (issue 18), added to the app by ``make_api``.

* ``GET /maintenance`` → ``{"windows": [...], "maintained": {device: ms}}`` of the team's
  estates;
* ``POST /maintenance`` (:class:`MaintenanceRequest`) → 201 and the window;
* ``POST /maintenance/{id}/end`` ``{"by": …}`` → the window, ended now;
* ``POST /devices/{device}/maintained`` ``{"by": …, "at": ms?}`` → the record (an
  elevator's fortnightly maintenance done outside a window).

A team acts within its estates only (404 outside them). Times default to the API's clock.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anju.alarms.api import _CLOCK, _MANAGER, _SITE, _error, _json, _team_of, _unauthorized
from anju.alarms.maintenance import MaintenanceBook, MaintenanceRequest, resolve
from anju.devices.registry import Team

__all__ = ["MaintainedRequest", "install"]


class _EndRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200)


class MaintainedRequest(BaseModel):
    """Body of ``POST /devices/{device}/maintained``."""

    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200)
    at: int | None = None


def _gate(request: web.Request) -> tuple[Team, MaintenanceBook] | web.Response:
    """The caller's team and the maintenance book, or the answer that refuses the call."""
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    book: MaintenanceBook | None = request.app[_MANAGER].book
    if book is None:
        return _error(503, "no maintenance book in this process")
    return team, book


def _invalid(exc: ValidationError) -> web.Response:
    return _json({"error": "invalid body",
                  "detail": exc.errors(include_url=False, include_input=False)}, 422)


async def _list(request: web.Request) -> web.Response:
    gate = _gate(request)
    if isinstance(gate, web.Response):
        return gate
    team, book = gate
    site = request.app[_SITE]
    estates = [e for e in site.estates if team.covers(e)]
    windows = await asyncio.to_thread(book.windows, estates=estates)
    maintained = await asyncio.to_thread(book.maintained)
    idx = site.devices.index
    mine = {d: at for d, at in maintained.items() if d in idx and site.buildings[
        int(site.devices.building[idx[d]])].estate in estates}
    return _json({"windows": [w.row() for w in windows], "maintained": mine})


async def _add(request: web.Request) -> web.Response:
    gate = _gate(request)
    if isinstance(gate, web.Response):
        return gate
    team, book = gate
    try:
        body = MaintenanceRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return _invalid(exc)
    site = request.app[_SITE]
    try:
        scope, target, estate = resolve(site, body)
    except ValueError as exc:
        return _error(404, str(exc))
    if not team.covers(estate):
        return _error(404, f"{target!r} is not in your estates")
    now = request.app[_CLOCK]()
    try:
        w = await asyncio.to_thread(book.add, scope, target, estate,
                                    now if body.from_ms is None else body.from_ms,
                                    body.to_ms, body.by, body.reason, now)
    except ValueError as exc:
        return _error(422, str(exc))
    return _json(w.row(), 201)


async def _end(request: web.Request) -> web.Response:
    gate = _gate(request)
    if isinstance(gate, web.Response):
        return gate
    team, book = gate
    try:
        body = _EndRequest.model_validate_json(await request.read())
        wid = int(request.match_info["wid"])
    except ValidationError as exc:
        return _invalid(exc)
    except ValueError:
        return _error(404, "no such window")
    w = await asyncio.to_thread(book.get, wid)
    if w is None or not team.covers(w.estate):
        return _error(404, f"no window {wid} in your estates")
    w = await asyncio.to_thread(book.end, wid, body.by, request.app[_CLOCK]())
    return _json(w.row())


async def _maintained(request: web.Request) -> web.Response:
    gate = _gate(request)
    if isinstance(gate, web.Response):
        return gate
    team, book = gate
    try:
        body = MaintainedRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return _invalid(exc)
    site = request.app[_SITE]
    dev = request.match_info["device"]
    i = site.devices.index.get(dev)
    if i is None or not team.covers(site.buildings[int(site.devices.building[i])].estate):
        return _error(404, f"no device {dev!r} in your estates")
    now = request.app[_CLOCK]()
    at = now if body.at is None else body.at
    await asyncio.to_thread(book.set_maintained, dev, at, body.by, now)
    return _json({"device": dev, "last_maintained_at": at})


def install(app: web.Application) -> None:
    """Adds the maintenance routes to the API application made by ``make_api``."""
    app.router.add_get("/maintenance", _list)
    app.router.add_post("/maintenance", _add)
    app.router.add_post("/maintenance/{wid}/end", _end)
    app.router.add_post("/devices/{device}/maintained", _maintained)
