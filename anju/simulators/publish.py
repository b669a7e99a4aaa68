"""Publishing traffic to an MQTT broker with paho (QoS 1), paced in data time.

A message whose reading has data time ``ts`` is sent at wall time
``wall_start + (ts − data_start) / speed`` (``speed`` 0: as fast as the broker takes
them), at most ``rate`` messages a second. With broker credentials
(``credentials.csv`` of ``anju devices credentials``) every device — or, with gateway
batches, every gateway — publishes on its own connection under its own name, as the ACL
requires; without, one connection carries everything.

Many connections share one thread: paho's external-loop API (``loop_read`` /
``loop_write`` / ``loop_misc`` on sockets from a ``selectors`` poll), because a thread
per connection (``loop_start``) does not scale to a building's worth of devices.
Publishing is synchronous and meant to run in its own process (``anju simulate run``),
so it never competes with the pipeline's event loop.
"""

from __future__ import annotations

import csv
import os
import resource
import selectors
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from anju.config import redact_url
from anju.errors import ConfigError, ServiceError
from anju.simulators.traffic import Message

__all__ = ["PublishStats", "Publisher", "read_credentials"]

_MAX_UNACKED = 20_000  # paho refuses > 65 535 in flight per client; keep far below in total
_INFLIGHT_PER_CLIENT = 1_000


def read_credentials(path: Path) -> dict[str, str]:
    """username → password from a ``credentials.csv`` (``username,password,role``)."""
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return {row["username"]: row["password"] for row in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error) as exc:
        raise ConfigError(f"credentials {path}: {exc}") from None


@dataclass
class PublishStats:
    published: int = 0  # messages handed to paho
    readings: int = 0
    acked: int = 0  # PUBACKs received
    connections: int = 0
    wall_start_ms: float = 0.0
    data_start_ms: int = 0
    speed: float = 1.0
    behind_ms: float = 0.0  # how far publishing lagged its schedule at worst
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"published": self.published, "readings": self.readings, "acked": self.acked,
                "connections": self.connections, "behind_ms": round(self.behind_ms, 1),
                "wall_start_ms": round(self.wall_start_ms), "data_start_ms": self.data_start_ms,
                "speed": self.speed, "errors": self.errors[:5]}


class Publisher:
    """Connections to one broker and the loop that drives them."""

    def __init__(self, mqtt_url: str, *, credentials: dict[str, str] | None = None,
                 client_prefix: str | None = None, qos: int = 1) -> None:
        parts = urlsplit(mqtt_url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"{redact_url(mqtt_url)!r}: expected mqtt://[user:pass@]host[:port]")
        self.host = parts.hostname
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.url_user = unquote(parts.username) if parts.username else None
        self.url_password = unquote(parts.password) if parts.password else None
        self.credentials = credentials
        self.prefix = client_prefix or f"anju-sim-{os.getpid()}"
        self.qos = qos
        self.sel = selectors.DefaultSelector()
        self.clients: dict[str, Any] = {}
        self.stats = PublishStats()
        self._connacks: dict[str, int] = {}
        self._last_misc = 0.0

    # -- connections ------------------------------------------------------------------
    def _client(self, name: str) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        password: str | None
        if self.credentials is not None:
            password = self.credentials.get(name)
            if password is None:
                raise ConfigError(f"no broker credentials for {name!r} in credentials.csv")
            user: str | None = name
            client_id = name
        else:
            user, password = self.url_user, self.url_password
            client_id = f"{self.prefix}-{len(self.clients)}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                        protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        if user is not None:
            c.username_pw_set(user, password)
        if self.tls:
            c.tls_set_context(ssl.create_default_context())
        c.max_inflight_messages_set(_INFLIGHT_PER_CLIENT)
        c.max_queued_messages_set(0)

        def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            self._connacks[name] = int(rc.value if hasattr(rc, "value") else rc)

        def on_publish(_c: Any, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
            self.stats.acked += 1

        c.on_connect = on_connect
        c.on_publish = on_publish
        try:
            c.connect(self.host, self.port, keepalive=60)
        except OSError as exc:
            raise ServiceError("mqtt", f"cannot connect to {self.host}:{self.port}: "
                                       f"{exc}") from exc
        sock = c.socket()
        if sock is not None:
            self.sel.register(sock, selectors.EVENT_READ, c)
        self.clients[name] = c
        self.stats.connections += 1
        return c

    def connect(self, names: Iterable[str], timeout: float = 15.0) -> None:
        """Opens the connections (one per name with credentials, else one) and waits for
        every CONNACK; raises ServiceError naming a refused one."""
        wanted = list(dict.fromkeys(names)) if self.credentials is not None else [""]
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and len(wanted) > soft - 64:
            raise ConfigError(f"{len(wanted)} connections need more open files than this "
                              f"process may have ({soft}): publish --via gateway, spread "
                              f"them over --processes, or raise `ulimit -n`")
        for name in wanted:
            if name not in self.clients:
                self._client(name)
                if len(self.clients) % 200 == 0:
                    self.pump(0)
        deadline = time.monotonic() + timeout
        while len(self._connacks) < len(self.clients):
            if time.monotonic() > deadline:
                missing = [n for n in self.clients if n not in self._connacks][:3]
                raise ServiceError("mqtt", f"no CONNACK within {timeout:g} s for {missing}")
            self.pump(0.05)
        refused = {n: rc for n, rc in self._connacks.items() if rc != 0}
        if refused:
            name, rc = next(iter(refused.items()))
            raise ServiceError("mqtt", f"broker refused {len(refused)} connection(s), e.g. "
                                       f"{name or self.prefix!r} (reason {rc})")

    def pump(self, timeout: float) -> None:
        """One turn of the network loop: reads, writes, keep-alives."""
        for key, _ in self.sel.select(timeout):
            key.data.loop_read()
        for c in self.clients.values():
            if c.want_write():
                c.loop_write()
        now = time.monotonic()
        if now - self._last_misc > 1.0:
            self._last_misc = now
            for c in self.clients.values():
                c.loop_misc()

    # -- publishing -------------------------------------------------------------------
    def run(self, messages: Iterable[Message], *, data_start_ms: int, speed: float = 1.0,
            rate: float | None = None, wall_start: float | None = None,
            max_messages: int | None = None, deadline: float | None = None,
            on_progress: Callable[[PublishStats, int], None] | None = None,
            progress_every_s: float = 0.5) -> PublishStats:
        """Publishes ``messages`` on schedule; returns when all are acknowledged.

        ``wall_start`` (``time.time()`` seconds) is when data time ``data_start_ms`` is
        due (default: now); ``deadline`` (``time.monotonic()``) and ``max_messages``
        bound the run.
        """
        st = self.stats
        st.speed, st.data_start_ms = speed, data_start_ms
        wall0 = time.time() if wall_start is None else wall_start
        st.wall_start_ms = wall0 * 1000
        per_client = self.credentials is not None
        next_progress = 0.0
        min_gap = 1.0 / rate if rate else 0.0
        last_sent = 0.0
        data_ms = data_start_ms
        for m in messages:
            if max_messages is not None and st.published >= max_messages:
                break
            if deadline is not None and time.monotonic() > deadline:
                st.errors.append("stopped at the time limit")
                break
            data_ms = m.ts
            if speed > 0:
                due = wall0 + (m.ts - data_start_ms) / 1000.0 / speed
                while (wait := due - time.time()) > 0:
                    self.pump(min(wait, 0.05))
                st.behind_ms = max(st.behind_ms, -wait * 1000)
            if min_gap:
                while (wait := last_sent + min_gap - time.monotonic()) > 0:
                    self.pump(min(wait, 0.05))
                last_sent = time.monotonic()
            while st.published - st.acked > _MAX_UNACKED:
                self.pump(0.01)
            name = m.topic.rsplit("/", 1)[1] if per_client else ""
            c = self.clients.get(name) or self._client(name)
            info = c.publish(m.topic, m.payload, qos=self.qos)
            if info.rc != 0:
                st.errors.append(f"publish {m.topic}: rc {info.rc}")
                if len(st.errors) > 100:
                    raise ServiceError("mqtt", f"publishing fails: {st.errors[-1]}")
            st.published += 1
            st.readings += m.readings
            if st.published % 256 == 0:
                self.pump(0)
            if on_progress is not None and time.monotonic() >= next_progress:
                next_progress = time.monotonic() + progress_every_s
                on_progress(st, data_ms)
        drain_until = time.monotonic() + 30.0
        while st.acked < st.published and time.monotonic() < drain_until:
            self.pump(0.05)
        if st.acked < st.published:
            st.errors.append(f"{st.published - st.acked} publishes never acknowledged")
        if on_progress is not None:
            on_progress(st, data_ms)
        return st

    def close(self) -> None:
        """Disconnects every client and closes the poller."""
        for c in self.clients.values():
            sock = c.socket()
            if sock is not None:
                try:
                    self.sel.unregister(sock)
                except (KeyError, ValueError):
                    pass
            try:
                c.disconnect()  # paho closes its socket once DISCONNECT is written
                c.loop_write()
            except OSError:
                pass
            if c.socket() is not None:
                c.socket().close()
        self.clients.clear()
        self.sel.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
