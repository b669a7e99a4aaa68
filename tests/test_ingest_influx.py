"""The InfluxDB writer against a scripted loopback server: the status table, splitting on
413, partial writes, Retry-After, the v1 and v2 endpoints, and errors mapped to ours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from anju.config import Settings
from anju.errors import ConfigError, SinkRejected, SinkUnavailable
from anju.httputil import parse_retry_after
from anju.ingest.influx import Action, InfluxWriter, classify
from anju.ingest.metrics import ingest_metrics
from anju.services import free_port


@pytest.mark.parametrize(("status", "action"), [
    (204, Action.DONE), (200, Action.DONE), (400, Action.DROP), (422, Action.DROP),
    (413, Action.SPLIT), (401, Action.STOP), (403, Action.STOP), (404, Action.RETRY),
    (408, Action.RETRY), (429, Action.RETRY), (500, Action.RETRY), (503, Action.RETRY),
    (302, Action.RETRY),
])
def test_status_table(status: int, action: Action) -> None:
    assert classify(status) is action


def test_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@dataclass
class _Server:
    respond: Callable[[web.Request, bytes], web.Response]
    requests: list[tuple[web.Request, bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
async def server() -> AsyncIterator[_Server]:
    srv = _Server(lambda req, body: web.Response(status=204))

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        srv.requests.append((request, body))
        return srv.respond(request, body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    srv.url = f"http://127.0.0.1:{port}"
    try:
        yield srv
    finally:
        await runner.cleanup()


def _lines(n: int) -> list[str]:
    return [f"m f={i}i {i}" for i in range(n)]


async def test_v1_request_shape(server: _Server) -> None:
    s = Settings(influx_url=server.url, influx_db="db1", influx_token=SecretStr("tok"))
    async with InfluxWriter(s) as w:
        res = await w.write(_lines(3))
    assert res.stored == 3
    req, body = server.requests[-1]
    assert req.path == "/write" and dict(req.query) == {"db": "db1", "precision": "ms"}
    assert req.headers["Authorization"] == "Token tok"
    assert body == b"m f=0i 0\nm f=1i 1\nm f=2i 2"


async def test_v2_request_shape(server: _Server) -> None:
    s = Settings(influx_url=server.url, influx_api="v2", influx_db="bkt", influx_org="o")
    async with InfluxWriter(s) as w:
        await w.write(_lines(1))
    req, _ = server.requests[-1]
    assert req.path == "/api/v2/write"
    assert dict(req.query) == {"bucket": "bkt", "org": "o", "precision": "ms"}
    with pytest.raises(ConfigError):
        InfluxWriter(Settings(influx_api="v2")).validate()


async def test_413_splits_until_it_fits(server: _Server) -> None:
    server.respond = lambda req, body: web.Response(status=413 if body.count(b"\n") >= 2
                                                    else 204)
    reg = CollectorRegistry()
    async with InfluxWriter(Settings(influx_url=server.url),
                            metrics=ingest_metrics(reg)) as w:
        res = await w.write(_lines(10))
    assert res.stored == 10
    sent = [b for _, b in server.requests if b.count(b"\n") < 2]
    assert sorted(ln for b in sent for ln in b.split(b"\n")) == \
        sorted(ln.encode() for ln in _lines(10))
    assert reg.get_sample_value("anju_influx_points_total", {"outcome": "stored"}) == 10


async def test_400_partial_write_counts_dropped(server: _Server) -> None:
    server.respond = lambda req, body: web.Response(
        status=400, text='{"error":"partial write: field type conflict dropped=2"}')
    async with InfluxWriter(Settings(influx_url=server.url)) as w:
        res = await w.write(_lines(5))
    assert (res.stored, res.dropped) == (3, 2)
    server.respond = lambda req, body: web.Response(status=400, text='{"error":"bad"}')
    async with InfluxWriter(Settings(influx_url=server.url)) as w:
        res = await w.write(_lines(5))
    assert (res.stored, res.dropped) == (0, 5)


async def test_429_and_5xx_are_unavailable_with_retry_after(server: _Server) -> None:
    server.respond = lambda req, body: web.Response(status=429, headers={"Retry-After": "3"})
    async with InfluxWriter(Settings(influx_url=server.url)) as w:
        with pytest.raises(SinkUnavailable) as exc:
            await w.write(_lines(1))
        assert exc.value.retry_after_s == 3.0
        server.respond = lambda req, body: web.Response(status=503, text="overloaded")
        with pytest.raises(SinkUnavailable, match="503"):
            await w.write(_lines(1))


async def test_401_is_rejected_without_leaking_the_token(server: _Server) -> None:
    server.respond = lambda req, body: web.Response(status=401, text='{"error":"auth"}')
    s = Settings(influx_url=server.url, influx_token=SecretStr("very-secret"))
    async with InfluxWriter(s) as w:
        with pytest.raises(SinkRejected) as exc:
            await w.write(_lines(1))
    assert exc.value.status == 401 and "very-secret" not in str(exc.value)


async def test_refused_and_timeout_are_unavailable(server: _Server) -> None:
    async with InfluxWriter(Settings(influx_url=f"http://127.0.0.1:{free_port()}")) as w:
        with pytest.raises(SinkUnavailable):
            await w.write(_lines(1))
        assert await w.ping() is False

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/write", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with InfluxWriter(Settings(influx_url=f"http://127.0.0.1:{port}"),
                                timeout_s=0.2) as w:
            with pytest.raises(SinkUnavailable, match="Timeout"):
                await w.write(_lines(1))
    finally:
        await runner.cleanup()
