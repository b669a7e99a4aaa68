"""``GET /reports?from=&to=`` on the pipeline's API: the report of the caller's estates.

Scoped by the team token exactly as ``/alarms`` is (a street office sees its streets, a
property company its estates); ``format=html`` answers the self-contained page (the
console links to it), otherwise the JSON of every figure. ``from``/``to`` as for
``anju report`` (dates are local midnights in ``tz``, default Asia/Shanghai; neither:
the last full month, which is what the console links to);
``jurisdiction=street=…`` narrows further. The work runs in a thread: it reads SQLite.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from anju.alarms.api import _CLOCK, _SITE, _STORE, _error, _team_of, _unauthorized
from anju.report.build import build_report
from anju.report.html import render_html
from anju.report.load import StoreMissing
from anju.report.period import DEFAULT_TZ, last_month, parse_period
from anju.report.scope import parse_jurisdiction, scope_for

__all__ = ["REPORT_CSP", "add_reports"]

# The page has inline CSS and SVG and no script at all: nothing else may load or run.
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
              "base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


async def _reports(request: web.Request) -> web.Response:
    team = _team_of(request)
    if team is None:
        return _unauthorized()
    q = request.query
    try:
        tz = q.get("tz", DEFAULT_TZ)
        if q.get("from") or q.get("to"):
            period = parse_period(q.get("from", ""), q.get("to", ""), tz)
        else:  # the console's link: the last full month
            period = last_month(request.app[_CLOCK](), tz)
        jur = parse_jurisdiction(q["jurisdiction"]) if q.get("jurisdiction") else ()
        scope = scope_for(request.app[_SITE], team=team.id, jurisdiction=jur)
    except ValueError as exc:
        return _error(400, str(exc))
    try:
        report = await asyncio.to_thread(build_report, request.app[_SITE],
                                         request.app[_STORE], period, scope)
    except StoreMissing as exc:
        return _error(503, str(exc))
    if q.get("format") == "html":
        return web.Response(text=render_html(report), content_type="text/html",
                            charset="utf-8", headers={
                                "Content-Security-Policy": REPORT_CSP,
                                "X-Content-Type-Options": "nosniff",
                                "Referrer-Policy": "no-referrer"})
    return web.Response(body=orjson.dumps(report.as_dict()), content_type="application/json")


def add_reports(app: web.Application) -> None:
    """Adds ``GET /reports`` to an application made by :func:`anju.alarms.api.make_api`."""
    app.router.add_get("/reports", _reports)
