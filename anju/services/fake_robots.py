"""Local stand-ins for the DingTalk, WeCom and Feishu robot endpoints, for the tests and
``anju demo --robot``, written from each platform's documentation (docs/alarms.md) and
independent of :mod:`anju.alarms.robots`: they check signatures and the one-hour timestamp
window the way the platforms do, answer HTTP 200 with an error code when they refuse, and
enforce a rate limit the way the platforms do: beyond ``limit`` (20 a minute) a DingTalk
robot is blocked for ``block_s`` (10 minutes), refusing everything until then; WeCom and
Feishu refuse what is over the limit. Time can be scaled down (a 0.6 s "minute", a 3 s
"10 minutes") through ``limit`` and ``block_s``, or driven by an injected ``clock``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

__all__ = ["DemoRobots", "FakeRobots", "Robot", "message_text"]

#: How long each platform blocks a robot past its limit (only DingTalk documents a block).
BLOCK_S = {"dingtalk": 600.0, "wecom": 0.0, "feishu": 0.0}


@dataclass
class Robot:
    platform: str  # dingtalk | wecom | feishu
    token: str  # DingTalk access_token, WeCom key, Feishu hook id
    secret: str | None = None
    limit: tuple[int, float] = (20, 60.0)  # (count, seconds), refused beyond
    inject: list[dict[str, Any]] = field(default_factory=list)  # answers to give first
    received: list[dict[str, Any]] = field(default_factory=list)  # accepted payloads
    refused: list[dict[str, Any]] = field(default_factory=list)  # error answers given
    block_s: float | None = None  # blocked this long past the limit; None: the platform's
    clock: Callable[[], float] = time.monotonic
    blocked_until: float = 0.0
    _sent: deque[float] = field(default_factory=deque)

    def over_limit(self) -> bool:
        """Counts one message; True when it is refused (over the limit, or blocked)."""
        now = self.clock()
        if now < self.blocked_until:
            return True
        count, per_s = self.limit
        while self._sent and self._sent[0] <= now - per_s:
            self._sent.popleft()
        if len(self._sent) >= count:
            block = BLOCK_S.get(self.platform, 0.0) if self.block_s is None else self.block_s
            self.blocked_until = now + block
            return True
        self._sent.append(now)
        return False


def message_text(body: dict[str, Any]) -> str:
    """The text of an accepted payload, whatever the platform and message type."""
    if "card" in body:
        return "\n".join(str(e.get("content", "")) for e in body["card"].get("elements", []))
    kind = body.get("msgtype", "")
    part = body.get(kind, {})
    return str(part.get("text") or part.get("content") or "")


class FakeRobots:
    """One aiohttp server on 127.0.0.1 serving all three platforms' robot URLs."""

    def __init__(self, *robots: Robot) -> None:
        self.robots = {(r.platform, r.token): r for r in robots}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, r: Robot) -> str:
        base = f"http://127.0.0.1:{self.port}"
        return {"dingtalk": f"{base}/robot/send?access_token={r.token}",
                "wecom": f"{base}/cgi-bin/webhook/send?key={r.token}",
                "feishu": f"{base}/open-apis/bot/v2/hook/{r.token}"}[r.platform]

    # DingTalk: sign = urlencode(base64(HmacSHA256(secret, f"{timestamp}\n{secret}"))),
    # timestamp in ms within one hour of the server's clock; errcode 310000 otherwise
    async def _dingtalk(self, req: web.Request) -> web.Response:
        r = self.robots.get(("dingtalk", req.query.get("access_token", "")))
        if r is None:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        if r.secret is not None:
            ts = req.query.get("timestamp", "")
            mac = hmac.new(r.secret.encode(), f"{ts}\n{r.secret}".encode(), hashlib.sha256)
            want = base64.b64encode(mac.digest()).decode()
            # aiohttp has URL-decoded the query already: compare the Base64 itself
            if (not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > 3600_000
                    or not hmac.compare_digest(want, req.query.get("sign", ""))):
                return self._refuse(r, {"errcode": 310000, "errmsg": "sign not match"})
        body = orjson.loads(await req.read())
        if r.over_limit():
            return self._refuse(r, {"errcode": 130101, "errmsg": "send too fast"})
        if body.get("msgtype") != "markdown" or len(body["markdown"]["text"]) > 20000:
            return self._refuse(r, {"errcode": 460101, "errmsg": "message too long"})
        return self._accept(r, body, {"errcode": 0, "errmsg": "ok"})

    # WeCom: the key in the URL is the credential; text ≤ 2048 bytes, markdown ≤ 4096
    async def _wecom(self, req: web.Request) -> web.Response:
        r = self.robots.get(("wecom", req.query.get("key", "")))
        if r is None:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        body = orjson.loads(await req.read())
        if r.over_limit():
            return self._refuse(r, {"errcode": 45009, "errmsg": "api freq out of limit"})
        kind = body.get("msgtype")
        content = body.get(kind, {}).get("content", "")
        cap = {"text": 2048, "markdown": 4096}.get(kind)
        if cap is None or len(content.encode()) > cap:
            return self._refuse(r, {"errcode": 40058, "errmsg": "content exceed max length"})
        return self._accept(r, body, {"errcode": 0, "errmsg": "ok"})

    # Feishu: sign = base64(HmacSHA256(key=f"{timestamp}\n{secret}", msg="")), timestamp in
    # seconds within one hour; code 19021 otherwise; request body ≤ 20 KB
    async def _feishu(self, req: web.Request) -> web.Response:
        r = self.robots.get(("feishu", req.match_info["hook"]))
        if r is None:
            return web.json_response({"code": 19001, "msg": "param invalid: incoming webhook "
                                      "access token invalid", "data": {}})
        raw = await req.read()
        if len(raw) > 20 * 1024:
            return self._refuse(r, {"code": 9499, "msg": "request body too large", "data": {}})
        body = orjson.loads(raw)
        if r.secret is not None:
            ts = str(body.get("timestamp", ""))
            mac = hmac.new(f"{ts}\n{r.secret}".encode(), b"", hashlib.sha256)
            if (not ts.isdigit() or abs(time.time() - int(ts)) > 3600
                    or not hmac.compare_digest(base64.b64encode(mac.digest()).decode(),
                                               str(body.get("sign", "")))):
                return self._refuse(r, {"code": 19021, "msg": "sign match fail or timestamp "
                                        "is not within one hour from current time",
                                        "data": {}})
        if r.over_limit():
            return self._refuse(r, {"code": 11232, "msg": "frequency limited", "data": {}})
        return self._accept(r, body, {"code": 0, "msg": "success", "data": {}})

    def _refuse(self, r: Robot, answer: dict[str, Any]) -> web.Response:
        r.refused.append(answer)
        return web.json_response(answer)  # HTTP 200, as the platforms answer

    def _accept(self, r: Robot, body: dict[str, Any], ok: dict[str, Any]) -> web.Response:
        if r.inject:
            return self._refuse(r, r.inject.pop(0))
        r.received.append(body)
        return web.json_response(ok)

    async def __aenter__(self) -> FakeRobots:
        app = web.Application()
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/open-apis/bot/v2/hook/{hook}", self._feishu)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class DemoRobots:
    """``anju demo --robot KIND``: a fake robot of one platform for each property team of a
    generated city, on one local server, with the platform's own rate limits (a DingTalk
    robot is blocked for 10 minutes past 20 a minute, so a demo storm shows the digests).

    :meth:`add_to` adds the target to the teams (before site.yaml is written),
    :meth:`serving` runs their server, :meth:`env` gives the URL and secret variables it
    names, :meth:`report` what the robots received.
    """

    def __init__(self, kind: str) -> None:
        if kind not in BLOCK_S:
            raise ValueError(f"unknown robot platform {kind!r}: dingtalk, wecom or feishu")
        self.kind = kind
        self._robots: dict[str, Robot] = {}  # team id → its robot
        self._fake: FakeRobots | None = None

    def add_to(self, teams: list[dict[str, Any]]) -> None:
        """Gives every property team (site.yaml dicts) a robot target of this platform."""
        for t in teams:
            if t.get("role") != "property":
                continue
            env = "ANJU_DEMO_ROBOT_" + "".join(c if c.isalnum() else "_"
                                               for c in str(t["id"])).upper()
            secret = None if self.kind == "wecom" else secrets.token_hex(16)
            limit = (5, 1.0) if self.kind == "feishu" else (20, 60.0)
            self._robots[t["id"]] = Robot(self.kind, secrets.token_hex(8), secret, limit=limit)
            target: dict[str, Any] = {"type": self.kind, "url_env": env + "_URL",
                                      "mention": ["13800000000" if self.kind != "feishu"
                                                  else "ou_demo"]}
            if secret is not None:
                target["secret_env"] = env + "_SECRET"
            t.setdefault("targets", []).append(target)

    def env(self) -> dict[str, str]:
        """The variables the targets name (call once started)."""
        assert self._fake is not None, "start first"
        out = {}
        for team, r in self._robots.items():
            env = "ANJU_DEMO_ROBOT_" + "".join(c if c.isalnum() else "_" for c in team).upper()
            out[env + "_URL"] = self._fake.url(r)
            if r.secret is not None:
                out[env + "_SECRET"] = r.secret
        return out

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[DemoRobots]:
        """The robots' server, listening while the block runs (after :meth:`add_to`)."""
        async with FakeRobots(*self._robots.values()) as fake:
            self._fake = fake
            try:
                yield self
            finally:
                self._fake = None

    def report(self) -> dict[str, Any]:
        """Per team: messages accepted (and how many were digests), alarm events named,
        answers refused; ``last``: the titles of the last few messages."""
        teams = {}
        for team, r in self._robots.items():
            texts = [message_text(b) for b in r.received]
            teams[team] = {
                "messages": len(r.received),
                "digests": sum(1 for t in texts if "告警汇总" in t),
                "events": sum(t.count("/#/alarms/") for t in texts),
                "refused": len(r.refused),
                "last": [t.split("\n", 1)[0].lstrip("# ") for t in texts[-5:]],
            }
        return {"platform": self.kind, "teams": teams}
