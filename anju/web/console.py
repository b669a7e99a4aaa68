"""Serving the console's static files, with headers that keep the page to itself."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

__all__ = ["CSP", "add_console"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

# No inline script or style, nothing from elsewhere: even a value that slipped past the
# page's text-only rendering could not run, and the page never reaches the internet.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str]]:
    """The static files, read once: name → (bytes, content type)."""
    out: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("anju.web").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            out[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return out


def add_console(app: web.Application) -> None:
    """Adds ``GET /`` and ``GET /console/{name}`` to the API application."""
    files = _load()

    def respond(name: str) -> web.Response:
        if name not in files:
            raise web.HTTPNotFound()
        body, ctype = files[name]
        return web.Response(body=body, headers={**_HEADERS, "Content-Type": ctype})

    async def index(request: web.Request) -> web.Response:
        return respond("index.html")

    async def static(request: web.Request) -> web.Response:
        return respond(request.match_info["name"])

    app.router.add_get("/", index)
    app.router.add_get("/console/{name}", static)
