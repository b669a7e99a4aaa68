"""Chat robot targets: DingTalk (钉钉) custom robots, WeCom (企业微信) group robots and
Feishu (飞书) custom bots, each signed exactly as its platform defines (docs/alarms.md cites
the platforms' documents).

========  ===================================================  ==========================
platform  signature                                            an answer that failed
========  ===================================================  ==========================
DingTalk  ``sign = urlencode(base64(HMAC-SHA256(key=secret,    HTTP 200, ``errcode`` ≠ 0
          msg=f"{timestamp_ms}\\n{secret}")))`` added to the
          URL with ``timestamp`` (ms)
WeCom     none: the ``key`` in the URL is the credential       HTTP 200, ``errcode`` ≠ 0
Feishu    ``sign = base64(HMAC-SHA256(key=f"{timestamp_s}\\n    HTTP 200, ``code`` ≠ 0
          {secret}", msg=b""))`` in the JSON body with
          ``timestamp`` (s)
========  ===================================================  ==========================

An error code is a :class:`DeliveryError` carrying the platform's code and message (never
the URL: it holds the token), retried per :mod:`anju.alarms.retry`: a bad signature or key
is a refusal (slow retries), the platform's throttling waits out its block.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote_plus, urlsplit

import aiohttp
import orjson

from anju.alarms.errors import DeliveryRefused
from anju.alarms.model import Delivery
from anju.alarms.ratelimit import WindowLimiter
from anju.alarms.robot_digest import render_digests
from anju.alarms.robot_message import Message, render, utf8_len
from anju.alarms.webhook import post, raise_for_status
from anju.config import Settings
from anju.devices.registry import Site, Team
from anju.devices.targets import RobotTarget
from anju.errors import ConfigError, DeliveryError

if TYPE_CHECKING:
    from anju.alarms.delivery import Destination

__all__ = [
    "DingTalkSender",
    "FeishuSender",
    "RobotSender",
    "WeComSender",
    "dingtalk_sign",
    "feishu_sign",
    "robot_destinations",
]

log = logging.getLogger(__name__)


# -- signatures ------------------------------------------------------------------------------
def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` query value, URL-encoded: HMAC-SHA256 keyed by the secret over
    ``"{timestamp_ms}\\n{secret}"``, Base64, then URL-encoded."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(),
                   hashlib.sha256).digest()
    return quote_plus(base64.b64encode(mac).decode("ascii"))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's ``sign`` body field: HMAC-SHA256 keyed by ``"{timestamp_s}\\n{secret}"``
    over the empty message, Base64 (the key and message are the other way round from
    DingTalk's, as Feishu documents it)."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


# -- the common part ---------------------------------------------------------------------------
class RobotSender:
    """What every robot does: render the event, sign, POST, read the error code."""

    kind = "robot"
    limit = 20000  # the rendered text, in units of ``measure``
    measure: Callable[[str], int] = staticmethod(len)

    def __init__(self, team: Team, target: RobotTarget, *, console_url: str,
                 timeout_s: float, estate_names: dict[str, str]) -> None:
        self.team = team
        self.target = target
        self.console_url = console_url
        self.timeout_s = timeout_s
        self.estate_names = estate_names

    def validate(self) -> None:
        where = f"team {self.team.id!r} {self.target.kind} target {self.target.name!r}"
        url = self.target.url()
        if url is None:
            raise ConfigError(f"{where}: its URL is not set (url_env {self.target.url_env!r})")
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: the value of {self.target.url_env} is not an "
                              "http(s) URL")
        if self.target.secret_env and self.target.secret() is None:
            raise ConfigError(f"{where}: its secret is not set "
                              f"(secret_env {self.target.secret_env!r})")

    #: how the platform writes an @ inside the text (None: it cannot)
    mention_template: ClassVar[str | None] = None

    @property
    def mention_fmt(self) -> Callable[[str], str] | None:
        return self.mention_template.format if self.mention_template else None

    def limit_for(self, mentioning: bool) -> int:
        """The size limit of a message (in units of ``measure``), mentioning or not."""
        return self.limit

    def message(self, d: Delivery) -> Message:
        """The message of one delivery's event."""
        ev = orjson.loads(d.body)
        msg = render(ev, console_url=self.console_url, limit=self.limit,
                     measure=self.measure, estate_name=self.estate_names.get(ev["estate"], ""),
                     mentions=self.target.mention, mention=self.mention_fmt)
        if msg.mentions and self.limit_for(True) < self.limit:
            msg = render(ev, console_url=self.console_url, limit=self.limit_for(True),
                         measure=self.measure,
                         estate_name=self.estate_names.get(ev["estate"], ""),
                         mentions=self.target.mention, mention=self.mention_fmt)
        return msg

    def digests(self, ds: Sequence[Delivery], why: str = "") -> list[tuple[list[Delivery],
                                                                        Message]]:
        """Digest messages naming every one of ``ds`` (in sending order), each within the
        platform's size limit (:mod:`anju.alarms.robot_digest`)."""
        evs = [orjson.loads(d.body) for d in ds]
        parts = render_digests(evs, console_url=self.console_url, limit_for=self.limit_for,
                               measure=self.measure, estate_names=self.estate_names,
                               mentions=self.target.mention, mention=self.mention_fmt, why=why)
        return [([ds[i] for i in idx], msg) for idx, msg in parts]

    async def send(self, session: aiohttp.ClientSession, d: Delivery, now_ms: int) -> int:
        """Sends ``d`` as this platform's message; 200, or :class:`DeliveryError`."""
        return await self.post_message(session, self.message(d), now_ms)

    def _url(self) -> str:
        url = self.target.url()
        if url is None:
            raise DeliveryError(f"url env {self.target.url_env!r} unset", retryable=True)
        return url

    def _secret(self) -> str | None:
        if self.target.secret_env is None:
            return None
        secret = self.target.secret()
        if secret is None:  # unset after start: wait for it rather than send unsigned
            raise DeliveryError(f"secret env {self.target.secret_env!r} unset",
                                retryable=True)
        return secret

    async def post_message(self, session: aiohttp.ClientSession, msg: Message,
                           now_ms: int) -> int:
        """Posts a rendered message (one event's, or a digest); 200, or
        :class:`DeliveryError`."""
        raise NotImplementedError

    async def _post_json(self, session: aiohttp.ClientSession, url: str,
                         payload: dict[str, Any]) -> dict[str, Any]:
        ans = await post(session, url, data=orjson.dumps(payload),
                         headers={"Content-Type": "application/json; charset=utf-8"},
                         timeout_s=self.timeout_s)
        raise_for_status(ans)
        try:
            out = orjson.loads(ans.body)
        except orjson.JSONDecodeError as exc:
            raise DeliveryError(f"HTTP {ans.status} with a body that is not JSON: "
                                f"{ans.body[:100]!r}", retryable=True,
                                status=ans.status) from exc
        if not isinstance(out, dict):
            raise DeliveryError(f"HTTP {ans.status} with an unexpected body",
                                retryable=True, status=ans.status)
        return out


# -- DingTalk ------------------------------------------------------------------------------------
class DingTalkSender(RobotSender):
    """A DingTalk custom robot (自定义机器人), markdown message, ``at.atMobiles`` for the
    on-duty mobiles of critical alarms (DingTalk needs each ``@mobile`` in the text too)."""

    kind = "dingtalk"
    limit = 20000  # characters of markdown.text

    #: errcodes that mean "slow down": the robot is blocked for 10 minutes past 20 a minute
    THROTTLED: ClassVar[dict[int, float | None]] = {130101: 600.0}  # "send too fast"
    #: errcodes that mean "refused": 310000 sign not match / keyword / IP allow-list,
    #: 300001 unknown access token
    REFUSED: ClassVar[frozenset[int]] = frozenset({310000, 300001})

    mention_template = "@{}"

    async def post_message(self, session: aiohttp.ClientSession, msg: Message,
                           now_ms: int) -> int:
        url = self._url()
        secret = self._secret()
        if secret is not None:
            sep = "&" if "?" in url else "?"
            url += f"{sep}timestamp={now_ms}&sign={dingtalk_sign(secret, now_ms)}"
        out = await self._post_json(session, url, {
            "msgtype": "markdown",
            "markdown": {"title": msg.title, "text": msg.text},
            "at": {"atMobiles": list(msg.mentions), "isAtAll": False},
        })
        _check_code(out, "errcode", "errmsg", self.THROTTLED, self.REFUSED)
        return 200


# -- WeCom ---------------------------------------------------------------------------------------
class WeComSender(RobotSender):
    """A WeCom group robot (群机器人). Markdown (4096 bytes); a critical alarm with on-duty
    mobiles goes as text (2048 bytes), the only type with ``mentioned_mobile_list``."""

    kind = "wecom"
    limit = 4096
    text_limit = 2048
    measure = staticmethod(utf8_len)

    THROTTLED: ClassVar[dict[int, float | None]] = {45009: 60.0}  # api freq out of limit
    REFUSED: ClassVar[frozenset[int]] = frozenset({93000})  # invalid webhook URL (key)

    def limit_for(self, mentioning: bool) -> int:
        return self.text_limit if mentioning else self.limit

    async def post_message(self, session: aiohttp.ClientSession, msg: Message,
                           now_ms: int) -> int:
        url = self._url()
        if msg.mentions:
            payload: dict[str, Any] = {"msgtype": "text", "text": {
                "content": _plain(msg.text), "mentioned_mobile_list": list(msg.mentions)}}
        else:
            payload = {"msgtype": "markdown", "markdown": {"content": msg.text}}
        out = await self._post_json(session, url, payload)
        _check_code(out, "errcode", "errmsg", self.THROTTLED, self.REFUSED)
        return 200


def _plain(markdown: str) -> str:
    """Markdown emphasis and headings dropped for a text message (never longer)."""
    return markdown.replace("**", "").replace("### ", "")


# -- Feishu --------------------------------------------------------------------------------------
class FeishuSender(RobotSender):
    """A Feishu custom bot (自定义机器人): an interactive card with one markdown element,
    signed in the body; on-duty open ids are @-ed with ``<at id=…></at>``."""

    kind = "feishu"
    limit = 18 * 1024  # bytes of markdown: the whole request must stay within 20 KB
    measure = staticmethod(utf8_len)

    THROTTLED: ClassVar[dict[int, float | None]] = {11232: 60.0}  # frequency limited
    #: 19021 bad signature or timestamp, 19022 IP not allowed, 19024 keyword missing
    REFUSED: ClassVar[frozenset[int]] = frozenset({19021, 19022, 19024})

    mention_template = "<at id={}></at>"

    async def post_message(self, session: aiohttp.ClientSession, msg: Message,
                           now_ms: int) -> int:
        url = self._url()
        secret = self._secret()
        payload: dict[str, Any] = {}
        if secret is not None:
            ts = now_ms // 1000
            payload.update(timestamp=str(ts), sign=feishu_sign(secret, ts))
        payload.update(msg_type="interactive", card={
            "config": {"wide_screen_mode": True},
            "header": {"title": {"tag": "plain_text", "content": msg.title},
                       "template": msg.colour},
            "elements": [{"tag": "markdown", "content": msg.text}],
        })
        out = await self._post_json(session, url, payload)
        # Feishu answers {"code": 0, "msg": "success"}; older bots {"StatusCode": 0, …}
        key = "code" if "code" in out else "StatusCode"
        _check_code(out, key, "msg" if key == "code" else "StatusMessage",
                    self.THROTTLED, self.REFUSED)
        return 200


def _check_code(out: dict[str, Any], code_key: str, msg_key: str,
                throttled: dict[int, float | None], refused: frozenset[int]) -> None:
    """An HTTP 200 whose body says it failed is a failure, with the platform's reason."""
    code = out.get(code_key, 0)
    if code in (0, None):
        return
    reason = f"{code_key} {code}: {str(out.get(msg_key, ''))[:200]}"
    if isinstance(code, int) and code in refused:
        raise DeliveryRefused(reason, status=200)
    retry_after = throttled.get(code) if isinstance(code, int) else None
    raise DeliveryError(reason, retryable=True, status=200, retry_after_s=retry_after)


_SENDERS: dict[str, type[RobotSender]] = {
    "dingtalk": DingTalkSender, "wecom": WeComSender, "feishu": FeishuSender}


def robot_destinations(site: Site, team: Team, settings: Settings,
                       timeout_s: float) -> list[Destination]:
    """The robot targets of a team, each with its sender and its rate limiter."""
    from anju.alarms.delivery import Destination

    names = {e.id: e.name for e in site.estates.values()}
    out = []
    for t in team.targets:
        sender = _SENDERS[t.kind](team, t, console_url=settings.console_url,
                                  timeout_s=timeout_s, estate_names=names)
        out.append(Destination(f"{team.id}/{t.name}", team, sender,
                               WindowLimiter(t.rate_limits)))
    return out
