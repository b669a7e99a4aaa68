"""Delivery targets: what turns one outbox row into one HTTP request, and its answer into
"delivered" or a :class:`DeliveryError`.

:class:`Sender` is the small interface the dispatcher drives; :class:`WebhookSender` is the
signed webhook of CONTRACT.md §4 (every team's default target). The chat robots
(DingTalk, WeCom, Feishu) live in :mod:`anju.alarms.robots`. :func:`post` maps aiohttp's
errors to ours at this one boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp

from anju.alarms.errors import DeliveryRefused
from anju.alarms.model import Delivery
from anju.alarms.retry import classify_status, parse_retry_after
from anju.alarms.signing import signed_headers
from anju.devices.registry import Team
from anju.errors import ConfigError, DeliveryError

__all__ = ["Answer", "Sender", "WebhookSender", "post", "raise_for_status"]


class Sender(Protocol):
    """One delivery target of a team."""

    kind: str  # "webhook", "dingtalk", "wecom", "feishu"

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the missing env var (never a value)."""
        ...

    async def send(self, session: aiohttp.ClientSession, d: Delivery, now_ms: int) -> int:
        """Sends ``d`` once; the HTTP status of a success, else :class:`DeliveryError`."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def post(session: aiohttp.ClientSession, url: str, *, data: bytes,
               headers: dict[str, str], timeout_s: float) -> Answer:
    """One POST, redirects not followed (a moved URL is configuration to fix); aiohttp's
    errors and timeouts become a retryable :class:`DeliveryError`."""
    try:
        async with session.post(url, data=data, headers=headers, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            body = await resp.read()  # drain, so the connection can be reused
            return Answer(resp.status, dict(resp.headers), body)
    except TimeoutError as exc:
        raise DeliveryError(f"timed out after {timeout_s} s", retryable=True) from exc
    except aiohttp.ClientError as exc:
        # str(exc) of a connection error names host and port, never the URL's query (where
        # robots keep their keys)
        raise DeliveryError(f"{type(exc).__name__}: {_strip_query(str(exc))[:200]}",
                            retryable=True) from exc


def _strip_query(text: str) -> str:
    return text.split("?", 1)[0]


def raise_for_status(ans: Answer) -> None:
    """Maps a non-2xx answer to the retry table of :mod:`anju.alarms.retry`."""
    verdict = classify_status(ans.status)
    if verdict == "delivered":
        return
    retry_after = parse_retry_after(ans.headers.get("Retry-After"))
    if verdict == "retry_slow":
        raise DeliveryRefused(f"HTTP {ans.status}", status=ans.status, retry_after_s=retry_after)
    raise DeliveryError(f"HTTP {ans.status}", retryable=True, status=ans.status,
                        retry_after_s=retry_after)


class WebhookSender:
    """The signed webhook of CONTRACT.md §4: the event's JSON as the body, signed per attempt
    with a fresh timestamp under the delivery id fixed at commit."""

    kind = "webhook"

    def __init__(self, team: Team, timeout_s: float) -> None:
        self.team = team
        self.timeout_s = timeout_s

    def validate(self) -> None:
        if self.team.secret() is None:
            raise ConfigError(
                f"team {self.team.id!r} has a webhook but its secret is not set "
                f"(secret_env {self.team.secret_env!r})")

    async def send(self, session: aiohttp.ClientSession, d: Delivery, now_ms: int) -> int:
        secret = self.team.secret()
        if secret is None:  # unset after start: wait for it rather than send unsigned
            raise DeliveryError(f"secret env {self.team.secret_env!r} unset", retryable=True)
        assert self.team.webhook is not None
        ans = await post(session, self.team.webhook, data=d.body,
                         headers=signed_headers(secret, d.delivery_id, now_ms, d.body),
                         timeout_s=self.timeout_s)
        raise_for_status(ans)
        return ans.status

