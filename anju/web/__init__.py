"""The operators' web console: static files shipped in the package, served by the API.

``add_console(app)`` adds ``GET /`` (the page) and ``GET /console/{file}`` (its scripts and
style) to the API application. Everything it needs is in ``anju/web/static``: no build step
at install, nothing fetched from the internet at run time (control rooms are often
offline). The page talks only to the API it is served by (docs/console.md).
"""

from __future__ import annotations

from anju.web.console import add_console

__all__ = ["add_console"]
