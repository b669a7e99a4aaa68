"""The HTTP API of CONTRACT.md §6, on aiohttp.web.

``GET /healthz``, ``GET /metrics``, ``GET /alarms``, ``POST /alarms/{alarm_id}/ack`` and
``GET /openapi.json``. Every ``/alarms`` call needs ``Authorization: Bearer <token>``, a
team's token from its ``token_env``; the team sees and acknowledges only alarms of its
estates (401 without a valid token, 404 for an alarm outside them).

Store and manager calls touch SQLite, so they run in ``asyncio.to_thread``. The events an
acknowledgement commits (the ``acknowledged``, and the ``cleared`` that closes an event
alarm) go to ``on_events`` once committed: the live pipeline stores them in InfluxDB the way
it stores the rules' events (CONTRACT §6: every lifecycle event is an ``alarms`` point).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from anju.alarms.errors import AlarmNotFound, AlarmStateError
from anju.alarms.lifecycle import AlarmManager
from anju.alarms.model import AckRequest, AlarmEvent
from anju.alarms.store import AlarmQuery, AlarmStore
from anju.devices.registry import Site, Team

__all__ = ["BROKER_KEY", "COOKIE", "make_api", "openapi_doc"]

BROKER_KEY = "mqtt"  # the dependency whose state decides /healthz

log = logging.getLogger(__name__)

HealthFn = Callable[[], Mapping[str, Any]]
EventsFn = Callable[[list[AlarmEvent]], Awaitable[None]]

_MANAGER: web.AppKey[AlarmManager] = web.AppKey("manager", AlarmManager)
_STORE: web.AppKey[AlarmStore] = web.AppKey("store", AlarmStore)
_SITE: web.AppKey[Site] = web.AppKey("site", Site)
_HEALTH: web.AppKey[HealthFn] = web.AppKey("health")
_REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
_CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
_ON_EVENTS: web.AppKey[EventsFn | None] = web.AppKey("on_events")

_MAX_LIMIT = 10_000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _dep_ok(state: Any) -> bool:
    """A dependency's state is healthy when it is True, "ok"/"connected"/"up", or a mapping
    with a true ``ok``."""
    if isinstance(state, Mapping):
        return bool(state.get("ok"))
    if isinstance(state, str):
        return state.lower() in ("ok", "connected", "up", "healthy")
    return state is True


COOKIE = "anju_token"  # the console's HttpOnly, SameSite=Strict sign-in cookie


def _team_of(request: web.Request) -> Team | None:
    """The team whose token the request bears; compared in constant time with every team's
    token, so the time taken says nothing about which (if any) matched.

    The token comes from ``Authorization: Bearer``; a read-only request (GET, HEAD) may
    bear it in the console's cookie instead, because a browser's EventSource cannot set
    headers. A request that changes anything needs the header, so a forged cross-site
    request (CSRF) carrying the cookie changes nothing."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not header and request.method in ("GET", "HEAD"):
        scheme, given = "bearer", request.cookies.get(COOKIE, "")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return _team_for_token(request.app[_SITE], given.strip())


def _team_for_token(site: Site, given: str) -> Team | None:
    """The team whose token is ``given``, compared in constant time with every team's."""
    given_b = given.encode()
    found: Team | None = None
    for team in site.teams:
        token = team.token()
        if token and hmac.compare_digest(token.encode(), given_b) and found is None:
            found = team
    return found


def _unauthorized() -> web.Response:
    resp = _error(401, "a valid team token is required")
    resp.headers["WWW-Authenticate"] = 'Bearer realm="anju"'
    return resp


async def _healthz(request: web.Request) -> web.Response:
    try:
        deps = dict(request.app[_HEALTH]())
    except Exception as exc:  # a broken probe is itself an unhealthy state
        deps = {"health": {"ok": False, "error": type(exc).__name__}}
    ok = _dep_ok(deps.get(BROKER_KEY))
    # CONTRACT §6: 503 only without the broker; ``status`` (ok | degraded | down) also
    # counts storage, deliveries and rules when the health function composes one
    status = deps.pop("status", None) if ok else "down"
    if status not in ("ok", "degraded", "down"):
        status = "ok" if ok else "down"
    return _json({"status": status, "dependencies": deps}, 200 if ok else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_REGISTRY])
    # aiohttp's content_type argument refuses parameters; the exposition format needs them.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _list_alarms(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    q = request.query
    state = q.get("state", "open")
    if state not in ("open", "cleared", "all"):
        return _error(400, "state must be 'open', 'cleared' or 'all'")
    try:
        limit = int(q.get("limit", "1000"))
        since = int(q["since"]) if q.get("since") else None
        until = int(q["until"]) if q.get("until") else None
    except ValueError:
        return _error(400, "limit, since and until must be integers")
    if not 1 <= limit <= _MAX_LIMIT:
        return _error(400, f"limit must be within 1…{_MAX_LIMIT}")
    site = request.app[_SITE]
    visible = [e for e in site.estates if team.covers(e)]
    wanted = _many(q, "estate")
    estates = [e for e in visible if e in wanted] if wanted else visible
    query = AlarmQuery(state=state, estates=estates, buildings=_many(q, "building"),  # type: ignore[arg-type]
                       kinds=_many(q, "kind"), severities=_many(q, "severity"),
                       rules=_many(q, "rule"), since_ms=since, until_ms=until, limit=limit)
    store = request.app[_STORE]
    recs = await asyncio.to_thread(store.query_alarms, query)
    return _json({"alarms": [r.row() for r in recs]})


def _many(query: Mapping[str, str], name: str) -> list[str] | None:
    """A filter's values: the parameter repeated or comma-separated; None when absent."""
    getall = getattr(query, "getall", None)
    raw = getall(name, []) if getall is not None else [query.get(name, "")]
    values = [v.strip() for r in raw for v in r.split(",") if v.strip()]
    return values or None


async def _ack(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    alarm_id = request.match_info["alarm_id"]
    try:
        body = AckRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return _json({"error": "invalid body", "detail": exc.errors(include_url=False,
                                                                   include_input=False)}, 422)
    manager = request.app[_MANAGER]
    now = request.app[_CLOCK]()
    try:
        event = await asyncio.to_thread(manager.acknowledge, alarm_id, team.id, body.by,
                                        body.note, now)
    except AlarmNotFound:
        return _error(404, f"no alarm {alarm_id!r} in your estates")
    except AlarmStateError as exc:
        return _error(409, str(exc))
    on_events = request.app[_ON_EVENTS]
    if on_events is not None:
        committed = await asyncio.to_thread(_committed_with, request.app[_STORE], event)
        try:
            await on_events(committed)
        except Exception:  # the acknowledgement is committed: answer it, report the rest
            log.exception("acknowledgement of %s: its events were not passed on", alarm_id)
    return _json(event.model_dump(mode="json"))


def _committed_with(store: AlarmStore, ack: AlarmEvent) -> list[AlarmEvent]:
    """``ack`` and the events of its alarm after it: the ``cleared`` that closes an event
    alarm in the same commit (a clear of a state alarm that the rules committed since is
    passed on again, which rewrites the same point)."""
    events = store.events(ack.alarm_id)
    at = max((i for i, ev in enumerate(events)
              if ev.event == "acknowledged" and ev.ts == ack.ts), default=None)
    return [ack] if at is None else events[at:]


async def _openapi(request: web.Request) -> web.Response:
    return _json(openapi_doc())


def make_api(
    manager: AlarmManager, store: AlarmStore, site: Site, *,
    health: HealthFn, registry: CollectorRegistry,
    clock_ms: Callable[[], int] | None = None,
    on_events: EventsFn | None = None,
    last_readings: Callable[[], tuple[Any, Any]] | None = None,
) -> web.Application:
    """The API application. ``health`` returns each dependency's state (``BROKER_KEY``
    decides the status code); ``registry`` is what ``/metrics`` exposes; ``clock_ms`` gives
    the ``ts`` of acknowledgements (the wall clock by default); ``on_events`` receives the
    events each acknowledgement committed, in order; ``last_readings`` gives each device's
    newest reading ts and arrival time for ``/devices/health`` (anju.alarms.devices_api)."""
    app = web.Application(client_max_size=64 * 1024)
    app[_MANAGER] = manager
    app[_STORE] = store
    app[_SITE] = site
    app[_HEALTH] = health
    app[_REGISTRY] = registry
    app[_CLOCK] = clock_ms or (lambda: int(time.time() * 1000))
    app[_ON_EVENTS] = on_events
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/alarms", _list_alarms)
    app.router.add_post("/alarms/{alarm_id}/ack", _ack)
    app.router.add_get("/openapi.json", _openapi)
    from anju.alarms import console_api  # it builds on this module's helpers

    console_api.install(app)
    from anju.alarms import maintenance_api

    maintenance_api.install(app)
    from anju.alarms import devices_api

    devices_api.install(app, last_readings)
    return app


# Written by hand: aiohttp has no schema generation of its own (that would take another
# framework or a plugin such as aiohttp-apispec, for five routes); the models' JSON schemas
# come from pydantic so they cannot drift from the code.
def _openapi_doc() -> dict[str, Any]:
    from anju.alarms.model import AlarmEvent

    bearer: list[dict[str, list[str]]] = [{"teamToken": []}]
    err = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}
    row = {"allOf": [{"$ref": "#/components/schemas/AlarmEvent"}, {"type": "object",
           "properties": {
               "state": {"type": "string", "enum": ["raised", "acknowledged", "cleared"]},
               "escalations": {"type": "integer"},
               "acknowledged_at": {"type": ["integer", "null"]},
               "acknowledged_by": {"type": ["string", "null"]},
               "cleared_at": {"type": ["integer", "null"]}}}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "anju pipeline API", "version": "1"},
        "components": {
            "securitySchemes": {
                "teamToken": {"type": "http", "scheme": "bearer"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": COOKIE}},
            "schemas": {
                "AlarmEvent": AlarmEvent.model_json_schema(),
                "AckRequest": AckRequest.model_json_schema(),
                "AlarmRow": row,
            },
        },
        "paths": {
            "/healthz": {"get": {
                "summary": "health of the broker link, storage and deliveries "
                           "(docs/operations.md)",
                "responses": {"200": {"description": "ok or degraded"},
                              "503": {"description": "down: broker unreachable or refused, "
                                                     "a critical alarm undelivered"}}}},
            "/metrics": {"get": {"summary": "Prometheus text format",
                                 "responses": {"200": {"description": "metrics",
                                               "content": {"text/plain": {}}}}}},
            "/alarms": {"get": {
                "summary": "alarms of the caller's estates, newest first",
                "security": bearer,
                "parameters": [
                    {"name": "state", "in": "query",
                     "schema": {"type": "string", "enum": ["open", "all"], "default": "open"}},
                    {"name": "estate", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {
                        "type": "integer", "minimum": 1, "maximum": _MAX_LIMIT,
                        "default": 1000}}],
                "responses": {
                    "200": {"description": "alarms", "content": {"application/json": {
                        "schema": {"type": "object", "properties": {"alarms": {
                            "type": "array", "items": {"$ref": "#/components/schemas/AlarmRow"},
                        }}}}}},
                    "400": err, "401": err}}},
            "/alarms/{alarm_id}/ack": {"post": {
                "summary": "acknowledge an alarm",
                "security": bearer,
                "parameters": [{"name": "alarm_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/AckRequest"}}}},
                "responses": {
                    "200": {"description": "the acknowledged event", "content": {
                        "application/json": {"schema": {
                            "$ref": "#/components/schemas/AlarmEvent"}}}},
                    "401": err, "404": err,
                    "409": {"description": "already acknowledged or cleared"},
                    "422": {"description": "invalid body"}}}},
            "/devices/health": {"get": {
                "summary": "devices per building: reported, offline, obstructed, low battery, "
                           "last reading (anju.alarms.devices_api)",
                "security": bearer,
                "parameters": [
                    {"name": "estate", "in": "query", "schema": {"type": "string"}},
                    {"name": "building", "in": "query", "schema": {"type": "string"}},
                    {"name": "devices", "in": "query", "schema": {
                        "type": "string", "enum": ["problems", "all", "none"],
                        "default": "problems"}},
                    {"name": "limit", "in": "query", "schema": {
                        "type": "integer", "minimum": 1, "maximum": 10_000,
                        "default": 1000}}],
                "responses": {"200": {"description": "buildings and devices", "content": {
                    "application/json": {"schema": {"type": "object"}}}},
                    "400": err, "401": err}}},
            "/reports": {"get": {
                "summary": "the accountability report of the caller's estates (docs/report.md)",
                "security": bearer,
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string"},
                     "description": "date or ISO time; neither from nor to: last full month"},
                    {"name": "to", "in": "query", "schema": {"type": "string"}},
                    {"name": "tz", "in": "query",
                     "schema": {"type": "string", "default": "Asia/Shanghai"}},
                    {"name": "jurisdiction", "in": "query", "schema": {"type": "string"},
                     "description": "e.g. street=…"},
                    {"name": "format", "in": "query",
                     "schema": {"type": "string", "enum": ["json", "html"]}}],
                "responses": {"200": {"description": "the report", "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "text/html": {}}},
                    "400": err, "401": err, "503": err}}},
            "/openapi.json": {"get": {"summary": "this document",
                                      "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
    }


@functools.cache
def openapi_doc() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route the pipeline's API serves (built on first
    use: the console, maintenance and report modules it describes import this one)."""
    doc = _openapi_doc()
    doc["paths"].update(_more_paths(doc["components"]["schemas"]))
    return doc


def _more_paths(schemas: dict[str, Any]) -> dict[str, Any]:
    from anju.alarms.console_api import SignInRequest
    from anju.alarms.maintenance import MaintenanceRequest
    from anju.alarms.maintenance_api import MaintainedRequest, _EndRequest
    from anju.alarms.model import AssignRequest, CommentRequest

    bearer: list[dict[str, list[str]]] = [{"teamToken": []}, {"sessionCookie": []}]
    err = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}
    obj = {"application/json": {"schema": {"type": "object"}}}
    alarm_id = {"name": "alarm_id", "in": "path", "required": True,
                "schema": {"type": "string"}}

    def body(model: type[Any]) -> dict[str, Any]:
        schemas[model.__name__.lstrip("_")] = model.model_json_schema()
        return {"required": True, "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{model.__name__.lstrip('_')}"}}}}

    def op(summary: str, ok: str, *, req: type[Any] | None = None,
           params: list[dict[str, Any]] | None = None, auth: bool = True,
           codes: tuple[str, ...] = ("401",)) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": summary,
                               "responses": {"200": {"description": ok, "content": obj},
                                             **{c: err for c in codes}}}
        if auth:
            out["security"] = bearer
        if req is not None:
            out["requestBody"] = body(req)
            out["responses"]["422"] = {"description": "invalid body"}
        if params:
            out["parameters"] = params
        return out

    return {
        "/session": {
            "post": op("sign in with a team token; sets the console's session cookie",
                       "the team and its estates", req=SignInRequest, auth=False,
                       codes=("401", "429")),
            "get": op("who the caller is", "the team and its estates"),
            "delete": op("sign out: clears the session cookie", "signed out"),
        },
        "/events": {"get": {
            "summary": "live alarm events of the caller's estates (Server-Sent Events)",
            "security": bearer,
            "responses": {"200": {"description": "an event stream",
                                  "content": {"text/event-stream": {}}}, "401": err}}},
        "/alarms/{alarm_id}": {"get": op(
            "an alarm: its row, its timeline and every webhook delivery of it",
            "the alarm", params=[alarm_id], codes=("401", "404"))},
        "/alarms/{alarm_id}/assign": {"post": op(
            "assign an alarm to someone (an `assigned` event)", "the event",
            req=AssignRequest, params=[alarm_id], codes=("401", "404", "409"))},
        "/alarms/{alarm_id}/comments": {"post": op(
            "comment on an alarm (a `commented` event)", "the event",
            req=CommentRequest, params=[alarm_id], codes=("401", "404", "409"))},
        "/maintenance": {
            "get": op("maintenance windows and records of the caller's estates",
                      "windows and maintained devices", codes=("401", "503")),
            "post": op("open a maintenance window (alarms of its devices are held)",
                       "the window (201)", req=MaintenanceRequest,
                       codes=("401", "404", "503")),
        },
        "/maintenance/{wid}/end": {"post": op(
            "end a maintenance window now", "the window", req=_EndRequest,
            params=[{"name": "wid", "in": "path", "required": True,
                     "schema": {"type": "string"}}], codes=("401", "404", "503"))},
        "/devices/{device}/maintained": {"post": op(
            "record a device's periodic maintenance done", "the record",
            req=MaintainedRequest,
            params=[{"name": "device", "in": "path", "required": True,
                     "schema": {"type": "string"}}], codes=("401", "404", "503"))},
    }
