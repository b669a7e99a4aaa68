"""The API routes the web console needs, beside CONTRACT §6's (docs/contract-notes.md):

- ``POST /session`` ``{"token": "..."}`` signs in: checks a team's token, answers with the
  team and its estates and sets the HttpOnly, SameSite=Strict cookie that lets the browser's
  EventSource (which cannot set headers) and page loads read. ``GET /session`` says who the
  caller is; ``DELETE /session`` signs out. Failed sign-ins are rate-limited per address.
- ``GET /alarms/{alarm_id}`` — the alarm's row, its full timeline (every event, with its
  log id) and every webhook delivery of it with its outcome, per team.
- ``POST /alarms/{alarm_id}/assign`` ``{"to", "by", "note"}`` and
  ``POST /alarms/{alarm_id}/comments`` ``{"by", "text"}`` — ``assigned`` and ``commented``
  events of the alarm's history.
- ``GET /events`` — live alarm events as Server-Sent Events (:mod:`anju.alarms.stream`).

Scoping is the API's: a team sees and acts on its estates only, and an alarm outside them
is a 404, exactly as for ``/ack``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anju.alarms.api import (
    _CLOCK,
    _MANAGER,
    _SITE,
    _STORE,
    COOKIE,
    _error,
    _json,
    _team_for_token,
    _team_of,
    _unauthorized,
)
from anju.alarms.errors import AlarmNotFound, AlarmStateError
from anju.alarms.model import AssignRequest, CommentRequest
from anju.alarms.stream import EventNotifier, stream_events
from anju.devices.registry import Site, Team

__all__ = ["SignInLimiter", "install", "visible_estates"]

_NOTIFIER: web.AppKey[EventNotifier] = web.AppKey("event-notifier", EventNotifier)
_LIMITER: web.AppKey[SignInLimiter] = web.AppKey("sign-in-limiter")


class SignInRequest(BaseModel):
    """Body of ``POST /session``."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=1024)


class SignInLimiter:
    """At most ``max_failures`` failed sign-ins per address within ``window_s``; then 429
    until the oldest failure leaves the window. Remembers at most ``max_peers`` addresses
    (the least recently failed are forgotten first), so a flood cannot grow it unbounded."""

    def __init__(self, max_failures: int = 5, window_s: float = 60.0, max_peers: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_peers = max_peers
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, peer: str) -> float:
        """Seconds this address must wait before it may try again; 0 when it may now."""
        q = self._failures.get(peer)
        if q is None:
            return 0.0
        now = self._clock()
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if len(q) < self.max_failures:
            return 0.0
        return max(0.0, self.window_s - (now - q[0]))

    def failed(self, peer: str) -> None:
        q = self._failures.pop(peer, None) or deque(maxlen=self.max_failures)
        q.append(self._clock())
        self._failures[peer] = q
        while len(self._failures) > self.max_peers:
            self._failures.popitem(last=False)


def visible_estates(site: Site, team: Team) -> list[str]:
    """The estates whose alarms the team sees (a supervisor's too): CONTRACT §6."""
    return [e for e in site.estates if team.covers(e)]


def _session_body(site: Site, team: Team) -> dict[str, object]:
    estates = []
    for eid in visible_estates(site, team):
        est = site.estates[eid]
        estates.append({"id": eid, "name": est.name, "district": est.district,
                        "street": est.street, "buildings": list(est.buildings)})
    return {"team": team.id, "role": team.role, "estates": estates,
            "unacknowledged_after_s": site.unacknowledged_after_s}


async def _sign_in(request: web.Request) -> web.Response:
    limiter = request.app[_LIMITER]
    peer = request.remote or "?"
    wait = limiter.retry_after(peer)
    if wait > 0:
        resp = _error(429, "too many failed sign-ins; try again later")
        resp.headers["Retry-After"] = str(int(wait) + 1)
        return resp
    try:
        body = SignInRequest.model_validate_json(await request.read())
    except ValidationError:
        limiter.failed(peer)
        return _error(422, "body must be {\"token\": \"...\"}")
    site = request.app[_SITE]
    team = _team_for_token(site, body.token.strip())
    if team is None:
        limiter.failed(peer)
        return _unauthorized()
    resp = _json(_session_body(site, team))
    # The raw token: the cookie is HttpOnly (no script reads it), SameSite=Strict (no other
    # site's page sends it) and accepted for reading only (api._team_of).
    resp.set_cookie(COOKIE, body.token.strip(), httponly=True, samesite="Strict", path="/",
                    secure=request.secure)
    return resp


async def _session(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    return _json(_session_body(request.app[_SITE], team))


async def _sign_out(request: web.Request) -> web.Response:
    resp = _json({"signed_out": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def _alarm(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    alarm_id = request.match_info["alarm_id"]
    manager = request.app[_MANAGER]
    store = request.app[_STORE]

    def read() -> web.Response:
        rec = manager.get(alarm_id, team.id)  # AlarmNotFound outside the team's estates
        events = store.events(alarm_id)
        deliveries = store.outbox(alarm_id=alarm_id)
        return _json({
            "alarm": rec.row(),
            "events": [{"seq": i + 1, **ev.model_dump(mode="json")}
                       for i, ev in enumerate(events)],
            "deliveries": deliveries,
        })

    try:
        return await asyncio.to_thread(read)
    except AlarmNotFound:
        return _error(404, f"no alarm {alarm_id!r} in your estates")


def _invalid(exc: ValidationError) -> web.Response:
    return _json({"error": "invalid body",
                  "detail": exc.errors(include_url=False, include_input=False)}, 422)


async def _assign(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    alarm_id = request.match_info["alarm_id"]
    try:
        body = AssignRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return _invalid(exc)
    manager = request.app[_MANAGER]
    now = request.app[_CLOCK]()
    try:
        event = await asyncio.to_thread(manager.assign, alarm_id, team.id, body.to, body.by,
                                        body.note, now)
    except AlarmNotFound:
        return _error(404, f"no alarm {alarm_id!r} in your estates")
    except AlarmStateError as exc:
        return _error(409, str(exc))
    return _json(event.model_dump(mode="json"))


async def _comment(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    alarm_id = request.match_info["alarm_id"]
    try:
        body = CommentRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return _invalid(exc)
    manager = request.app[_MANAGER]
    now = request.app[_CLOCK]()
    try:
        event = await asyncio.to_thread(manager.comment, alarm_id, team.id, body.by,
                                        body.text, now)
    except AlarmNotFound:
        return _error(404, f"no alarm {alarm_id!r} in your estates")
    return _json(event.model_dump(mode="json"), 201)


async def _events(request: web.Request) -> web.StreamResponse:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    site = request.app[_SITE]
    estates = None if "*" in team.estates else visible_estates(site, team)
    return await stream_events(request, request.app[_STORE], request.app[_NOTIFIER], estates)


async def _on_startup(app: web.Application) -> None:
    app[_NOTIFIER].attach(asyncio.get_running_loop())


async def _on_shutdown(app: web.Application) -> None:
    app[_NOTIFIER].close()  # ends the open streams, so shutdown need not wait for them


def install(app: web.Application) -> None:
    """Adds the console's routes to the API application made by ``make_api``."""
    app[_NOTIFIER] = EventNotifier(app[_STORE])
    app[_LIMITER] = SignInLimiter()
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.router.add_post("/session", _sign_in)
    app.router.add_get("/session", _session)
    app.router.add_delete("/session", _sign_out)
    app.router.add_get("/events", _events)
    app.router.add_get("/alarms/{alarm_id}", _alarm)
    app.router.add_post("/alarms/{alarm_id}/assign", _assign)
    app.router.add_post("/alarms/{alarm_id}/comments", _comment)
