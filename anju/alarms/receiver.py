"""A webhook receiver that checks what a real one should: for the demo and the tests.

It serves ``POST /hooks/{name}`` on a loopback port, verifies ``X-Anju-Signature`` under
the secret given for ``name`` (401 when wrong), de-duplicates on ``X-Anju-Delivery`` (a
repeat is answered 200 and not counted again) and records every attempt. A per-name
``behaviour`` coroutine may answer instead (500, 429, a hang …) to play a failing receiver.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from anju.alarms.signing import verify

__all__ = ["Attempt", "Behaviour", "WebhookReceiver"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request the receiver saw."""

    name: str
    delivery_id: str
    timestamp: str
    signature_ok: bool
    body: bytes
    at: float  # monotonic seconds
    status: int | None = None  # what was answered; None while a behaviour hangs

    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


Behaviour = Callable[[Attempt], Awaitable[web.StreamResponse | None]]


@dataclass
class WebhookReceiver:
    """An aiohttp server on ``host:port`` (0: a free port); an async context manager.

    ``accepted[name]`` holds the first 2xx attempt of each delivery id in arrival order;
    ``attempts`` every request; ``duplicates`` how many repeats of an accepted id came.
    """

    secrets: Mapping[str, bytes]
    host: str = "127.0.0.1"
    port: int = 0
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    shutdown_timeout_s: float = 1.0  # how long stop() lets hung handlers finish
    ok_status: int = 200  # what an accepted delivery is answered (any 2xx)
    attempts: list[Attempt] = field(default_factory=list)
    accepted: dict[str, list[Attempt]] = field(default_factory=dict)
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/hooks/{name}"

    def accepted_ids(self, name: str | None = None) -> list[str]:
        names = [name] if name is not None else list(self.accepted)
        return [a.delivery_id for n in names for a in self.accepted.get(n, [])]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.read()
        secret = self.secrets.get(name)
        ts = request.headers.get("X-Anju-Timestamp", "")
        ok = secret is not None and verify(
            secret, ts, body, request.headers.get("X-Anju-Signature", ""),
            now_ms=int(time.time() * 1000))
        attempt = Attempt(name, request.headers.get("X-Anju-Delivery", ""), ts, ok, body,
                          time.monotonic())
        self.attempts.append(attempt)
        idx = len(self.attempts) - 1
        if not ok:
            return self._answer(idx, web.Response(status=401, text="bad signature"))
        hook = self.behaviour.get(name)
        if hook is not None:
            resp = await hook(attempt)
            if resp is not None:
                return self._answer(idx, resp)
        if attempt.delivery_id in self._seen:
            self.duplicates += 1
        else:
            self._seen.add(attempt.delivery_id)
            self.accepted.setdefault(name, []).append(attempt)
        return self._answer(idx, web.Response(status=self.ok_status,
                                              text=None if self.ok_status == 204 else "ok"))

    def _answer(self, idx: int, resp: web.StreamResponse) -> web.StreamResponse:
        a = self.attempts[idx]
        self.attempts[idx] = Attempt(a.name, a.delivery_id, a.timestamp, a.signature_ok,
                                     a.body, a.at, resp.status)
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/{name}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server  # aiohttp exposes the bound port only on the server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
