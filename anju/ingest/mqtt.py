"""The MQTT consumer: QoS 1, a persistent session, acknowledgement only once data is durable.

Why a thin wrapper over paho-mqtt rather than aiomqtt (DESIGN.md names aiomqtt): aiomqtt
2.5 has no manual acknowledgement (its paho client acknowledges every QoS 1 message as soon
as it is parsed, before we have stored it), its incoming queue either grows without bound
or *discards* messages when bounded, and it pays a task and a future per message (19k
against paho's 28k msg/s for QoS 1 here, DESIGN.md). Reaching into ``client._client`` for
``manual_ack_set`` would fix only the first. So this module drives paho itself, the way
aiomqtt does — paho's socket callbacks register its socket with the event loop, which calls
``loop_read``/``loop_write``, and ``loop_misc`` once a second — with three differences:
``manual_ack_set(True)``; a readable socket is read until it has no complete message left
(aiomqtt reads one packet per event-loop turn); and acknowledgements go out as one write.

Why not paho's own network thread: the first version ran it so, and two threads competing
for the GIL cost more than the thread gave: every ``recv`` released the GIL and waited to
get it back from the decoding thread (profiled: a third of the consumer's time).

Beside this module: ``loop_socket`` (paho's socket on the event loop), ``paho_fast``
(cheaper received properties, PUBACKs as one write), ``ack_sequencer`` (their order).

- **At least once**: MQTT 5 with a stable client id, ``clean_start=False`` and a session
  expiry, so what is published while we are away is queued by the broker; PUBACK is sent
  only when :meth:`MqttConsumer.ack` is called, i.e. once the readings are stored or
  spooled (anju.ingest.ack_sequencer releases them in the order received, as MQTT 5 §4.6
  requires). Receive Maximum 65535 lets the broker have that many unacknowledged messages
  in flight to us, whatever its ``max_inflight_messages`` for 3.1.1 clients (20 by
  default, which would stall a consumer that acknowledges a whole batch at once).
- **Back-pressure**: when the buffer holds more than ``max_buffered`` messages or
  ``max_buffered_bytes``, the socket is taken off the event loop until the batcher has
  taken half of it; TCP flow control then makes the broker queue for us. Nothing is ever
  discarded.
- **Reconnection**: capped exponential backoff with full jitter (AWS Architecture Blog,
  "Exponential Backoff and Jitter"); acknowledgements of messages received on an earlier
  connection are not sent (the broker redelivers those; a packet id may be reused).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from anju.backoff import Backoff
from anju.config import Settings
from anju.devices.registry import Site
from anju.ingest.loop_socket import LoopSocket
from anju.ingest.metrics import IngestMetrics, ingest_metrics
from anju.ingest.mqtt_reader import PacketReader
from anju.ingest.mqtt_reader import install as install_reader
from anju.ingest.paho_fast import install_fast_properties, send_pubacks

__all__ = ["Message", "MqttConsumer", "client_id", "topics_for"]

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue through a week-long outage
RECEIVE_MAXIMUM = 65535  # MQTT 5 §3.1.2.11.3: the largest value allowed
_SUBSCRIBE_CHUNK = 100  # topic filters per SUBSCRIBE packet
_READ_BURST = 512  # packets read per readable event at most, then other tasks run
_READ_CHUNKS = 8  # socket reads (of mqtt_reader.CHUNK) per readable event, likewise
SESSION_TAKEN_OVER = 0x8E  # MQTT 5 §3.14.2.1: DISCONNECT reason "Session taken over"
_STABLE_S = 60.0  # a connection this old is healthy: failures are news (WARNING) again
_QUICK_DROP_S = 5.0  # a drop this soon after CONNACK, repeated, looks like a takeover
_QUICK_DROPS = 3


@dataclass(slots=True)
class Message:
    """One received PUBLISH, with what is needed to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    gen: int  # connection generation: acks of an older one are not sent


def topics_for(settings: Settings, site: Site) -> list[str]:
    """The topic filters of this worker's partition: ``anju/#`` for one worker, else
    ``anju/{estate}/#`` for each estate whose index ≡ i (mod N)."""
    part = settings.partition_spec
    if part.count == 1:
        return ["anju/#"]
    return [f"anju/{e.id}/#" for e in site.estates.values() if part.owns(e.index)]


def client_id(settings: Settings) -> str:
    """The stable client id: ``mqtt_client_id``, suffixed with the partition when there
    are several workers (two sessions with one id would keep taking each other over)."""
    part = settings.partition_spec
    if part.count == 1:
        return settings.mqtt_client_id
    return f"{settings.mqtt_client_id}-p{part.index}of{part.count}"


class MqttConsumer:
    """Subscribes with QoS 1 and hands messages to the event loop in batches.

    An async context manager: entering starts the connection task (connecting in the
    background, retrying forever); :meth:`take` and :meth:`wait` give received messages;
    :meth:`ack` acknowledges them; leaving sends what is acknowledged and disconnects,
    keeping the session.
    """

    def __init__(self, settings: Settings, topics: list[str], *,
                 metrics: IngestMetrics | None = None, max_buffered: int = 50_000,
                 max_buffered_bytes: int = 64 << 20, keepalive_s: int = 60,
                 backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.metrics = metrics or ingest_metrics(None)
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        self.keepalive_s = keepalive_s
        self.backoff = backoff or Backoff(base_s=0.5, cap_s=30.0, jitter=1.0, min_s=0.0)
        self.client_id = client_id(settings)
        self._buf: collections.deque[Message] = collections.deque()
        self._buf_bytes = 0
        self._gen = 0
        self._ready = asyncio.Event()
        self._sleeping = False
        self._stopping = False
        self._reading = True
        self._client: mqtt.Client | None = None
        # paho's socket on the event loop (reading only while wanted: not draining, paused)
        self._io = LoopSocket(self._on_readable, lambda: self._reading and not self.paused,
                              self._mark_lost, self._wrap)
        self._reader: PacketReader | None = None  # the current connection's
        self._lost: asyncio.Future[None] | None = None
        self._task_stack: contextlib.AsyncExitStack | None = None  # the task group
        self._task: asyncio.Task[None] | None = None
        # health
        self.state = "starting"
        self.connected = False
        self.subscribed = False  # every SUBSCRIBE of the current connection answered
        self._suback_pending = 0
        self.since_ms = int(time.time() * 1000)
        self.last_error: str | None = None
        self.connections = 0
        self.received = 0
        self.paused = False
        self.refused: dict[str, Any] | None = None  # the broker's CONNACK reason, if refused
        self.takeovers = 0  # disconnections because another client took our session
        self.last_takeover_ms: int | None = None
        self.quick_drops = 0  # consecutive drops right after connecting (MQTT 3.1.1 brokers)
        self._connected_at: float | None = None
        self._taken_over = False  # the current connection ended in a takeover
        self._warned: set[str] = set()  # failure kinds logged at WARNING since last stable

    # -- lifecycle -------------------------------------------------------------------------
    def validate(self) -> None:
        """Raises ValueError for topics or ids the broker would refuse."""
        if not self.topics:
            raise ValueError("no topics: this partition owns no estate")
        if not 1 <= len(self.client_id.encode()) <= 65535:
            raise ValueError("MQTT client id must be 1…65535 bytes")

    async def __aenter__(self) -> Self:
        self.validate()
        self._io.loop = asyncio.get_running_loop()
        self._stopping = False
        self._task_stack = contextlib.AsyncExitStack()
        await self._task_stack.enter_async_context(self._running())
        return self

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        """The connection task, owned by a task group while the consumer is entered."""
        async with asyncio.TaskGroup() as tg:
            self._task = tg.create_task(self._run(), name="mqtt-consumer")
            try:
                yield
            finally:  # disconnected (or failing): stop reconnecting
                self._task.cancel()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close(exc_type, exc, tb)

    async def close(self, exc_type: type[BaseException] | None = None,
                    exc: BaseException | None = None, tb: TracebackType | None = None,
                    timeout_s: float = 2.0) -> None:
        """Sends the acknowledgements queued so far, disconnects (the session stays)."""
        self._stopping = True
        self._reading = False
        client, lost = self._client, self._lost
        if client is not None and self.connected and lost is not None and not lost.done():
            # DISCONNECT goes out after the PUBACKs queued before it; paho closes the
            # socket once it is written and reports the disconnection.
            client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(lost), timeout_s)
        tasks, self._task_stack = self._task_stack, None
        try:
            if tasks is not None:
                await tasks.__aexit__(exc_type, exc, tb)
        finally:
            self._task = None
            if client is not None:
                self._io.drop(client)

    def stop_reading(self) -> None:
        """Stops taking new messages off the socket (before a drain); acks still go out.
        Wakes a :meth:`wait` in progress."""
        self._reading = False
        self._io.reader(False)
        self._ready.set()

    # -- the pipeline's side ---------------------------------------------------------------
    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def generation(self) -> int:
        """The connection generation (one more for each connection lost)."""
        return self._gen

    def take(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` received messages, oldest first (never waits)."""
        buf = self._buf
        n = min(max_messages, len(buf))
        out = [buf.popleft() for _ in range(n)]
        self._buf_bytes -= sum(len(m.payload) for m in out)
        if self.paused and len(buf) <= self.max_buffered // 2 and \
                self._buf_bytes <= self.max_buffered_bytes // 2:
            self.paused = False
            self._io.reader(True)
            if self._reader is not None and self._reader.backlog and self._io.reader_on \
                    and self._io.loop:
                # read but not handled when the buffer filled: no readable event will say
                self._io.loop.call_soon(self._on_readable)
        return out

    def nudge(self) -> None:
        """Wakes a :meth:`wait` in progress without data (work waits between batches)."""
        self._ready.set()

    async def wait(self, timeout_s: float | None = None) -> bool:
        """Waits until a message is buffered (or ``timeout_s`` passes); True if one is."""
        if self._buf:
            return True
        self._sleeping = True
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs what it waits for
            # in a task of its own, two more trips round a busy event loop before the
            # batcher sees the message (0.45 ms of the alarm p50 in the peer run at
            # 5 000 msg/s; 3.12's wait_for is built on timeout)
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            pass
        finally:
            self._sleeping = False
            self._ready.clear()
        return bool(self._buf)

    def ack(self, messages: Iterable[Message]) -> None:
        """Acknowledges messages to the broker (in this order)."""
        client = self._client
        if client is None or not self.connected:
            return  # the broker redelivers them on the next connection
        gen = self._gen
        mids = [m.mid for m in messages if m.qos > 0 and m.gen == gen]
        if mids:
            send_pubacks(client, mids)

    def health(self) -> dict[str, Any]:
        """The broker connection's state, for /healthz."""
        return {
            "ok": self.connected,
            "state": self.state,
            "since_ms": self.since_ms,
            "subscribed": self.subscribed,
            "client_id": self.client_id,
            "reconnects": max(0, self.connections - 1),
            "buffered": len(self._buf),
            "paused": self.paused,
            "last_error": self.last_error,
            "refused": self.refused,
            "takeovers": self.takeovers,
            "last_takeover_ms": self.last_takeover_ms,
            "quick_drops": self.quick_drops,
            "taken_over": self.taken_over,
        }

    @property
    def taken_over(self) -> bool:
        """Another client with our client id is taking the session: a DISCONNECT 0x8E
        within the last minute, or the current connection is one more short one after
        repeated drops right after connecting."""
        now = time.monotonic()
        if self.last_takeover_ms is not None and \
                time.time() * 1000 - self.last_takeover_ms < _STABLE_S * 1000:
            return True
        if self.quick_drops < _QUICK_DROPS:
            return False
        return self._connected_at is None or now - self._connected_at < _QUICK_DROP_S

    # -- the connection --------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        c.manual_ack_set(True)
        opts = self.settings.mqtt
        if opts["username"]:
            c.username_pw_set(opts["username"], opts["password"])
        if opts["tls"]:
            c.tls_set()
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self._io.attach(c)
        return c

    def _report(self, kind: str, message: str) -> None:
        """The first failure of each kind is a WARNING; its repeats (a reconnection loop)
        are INFO, until a connection has been stable again."""
        level = logging.INFO if kind in self._warned else logging.WARNING
        self._warned.add(kind)
        log.log(level, "MQTT: %s", message)

    def _set_state(self, state: str, error: str | None = None) -> None:
        connected = state == "connected"
        if state != self.state:
            self.since_ms = int(time.time() * 1000)
            if state in ("down", "refused", "taken_over"):
                self._report(state, error or self.last_error or "disconnected")
            elif connected:
                log.info("MQTT: connected to %s:%s as %s", self.settings.mqtt["hostname"],
                         self.settings.mqtt["port"], self.client_id)
        self.state = state
        self.connected = connected
        if not connected:
            self.subscribed = False
        if error is not None:
            self.last_error = error
        self.metrics.mqtt_connected.set(1 if connected else 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        opts = self.settings.mqtt
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        while not self._stopping:
            client = self._client = self._make_client()
            lost = self._lost = loop.create_future()
            self._set_state("connecting")
            connect = functools.partial(client.connect, opts["hostname"], opts["port"],
                                        keepalive=self.keepalive_s, clean_start=False,
                                        properties=props)
            try:
                # Name resolution, TCP and TLS handshakes block: on a thread. paho calls
                # our socket callbacks from there; they hop to the loop.
                await loop.run_in_executor(None, connect)
            except (OSError, ValueError) as exc:
                self._io.drop(client)
                self._set_state("down", f"connect to {opts['hostname']}:{opts['port']}: "
                                f"{exc}")
                await asyncio.sleep(self.backoff.next())
                continue
            try:
                while not lost.done():
                    await asyncio.wait([lost], timeout=1.0)
                    if not lost.done() and client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                        self._mark_lost("keepalive: no answer from the broker")
            finally:
                self._gen += 1  # acks of this connection are void from here on
                self._reader = None  # and what it read but did not hand over is dropped
                self._io.drop(client)
                self._set_state(self._ended())
            if not self._stopping:
                await asyncio.sleep(self.backoff.next())

    def _ended(self) -> str:
        """The state a connection leaves us in: why it ended, as far as we can tell."""
        if self._stopping:
            return "stopped"
        if self.refused is not None:
            return "refused"
        lasted = None if self._connected_at is None else time.monotonic() - self._connected_at
        self._connected_at = None
        if lasted is not None and lasted >= _STABLE_S:
            self._warned.clear()
        if self._taken_over:
            self._taken_over = False
            self.quick_drops = 0
            self.last_error = (f"session taken over by another client with the same client id "
                               f"{self.client_id!r} (a second pipeline? give each its own "
                               "ANJU_MQTT_CLIENT_ID or partition)")
            return "taken_over"
        if lasted is not None and lasted < _QUICK_DROP_S:
            self.quick_drops += 1
            if self.quick_drops >= _QUICK_DROPS:
                # Mosquitto 2.0 closes the old connection without a DISCONNECT 0x8E (that
                # needs 2.1); two clients with one id then drop each other in a loop.
                self.last_error = (f"session taken over: disconnected right after "
                                   f"connecting {self.quick_drops} times in a row, as when "
                                   "another client uses the same client id "
                                   f"{self.client_id!r} (a second pipeline? give each its "
                                   "own ANJU_MQTT_CLIENT_ID or partition)")
                return "taken_over"
        elif lasted is not None:
            self.quick_drops = 0
        return "down"

    def _mark_lost(self, why: str) -> None:
        lost = self._lost
        if self._stopping or (lost is not None and lost.done()):
            return  # the first reason stands (a refusal, a takeover), not its aftermath
        self.last_error = why
        if lost is not None and not lost.done():
            lost.set_result(None)

    def _wrap(self, client: mqtt.Client, sock: Any) -> Any:
        """A new connection's socket (on the connecting thread, before CONNECT): our
        reader in front of it (anju.ingest.mqtt_reader), or paho's own if it won't take."""
        wrapped = install_reader(client, sock)
        self._reader = None if wrapped is None else PacketReader(client, wrapped,
                                                                 self._on_publish, self._full)
        return sock if wrapped is None else wrapped

    def _on_readable(self) -> None:
        client = self._client
        if client is None or not self._io.reader_on:
            return  # a call made soon by take() after the connection ended or reading stopped
        reader = self._reader
        for _ in range(_READ_BURST if reader is None else _READ_CHUNKS):
            before = self.received
            if reader is not None:
                n = reader.read()
                rc = mqtt.MQTT_ERR_SUCCESS if n >= 0 else mqtt.MQTT_ERR_CONN_LOST
            else:
                rc = client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self._mark_lost(f"connection lost: {mqtt.error_string(rc)}")
                return
            if self._full():
                # Behind: stop reading until the batcher has taken half (see take()).
                if not self.paused:
                    self.metrics.intake_paused.inc()
                self.paused = True
                self._io.reader(False)
                return
            if (n == 0) if reader is not None else (self.received == before):
                return  # nothing more to read (or a control packet): wait for more

    # paho callbacks ----------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any,
                    reason: ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            # e.g. 0x86 bad user name or password, 0x87 not authorised (Mosquitto 2.0
            # answers a wrong password so), 0x85 client id not valid, 0x8A banned
            self.refused = {"code": int(reason.value), "reason": str(reason)}
            why = (f"broker refused the connection: {reason} (0x{int(reason.value):02X}) "
                   f"for user {self.settings.mqtt['username']!r}")
            self._mark_lost(why)
            self._set_state("refused", why)
            return
        self.refused = None
        self._connected_at = time.monotonic()
        self._taken_over = False
        self.connections += 1
        if self.connections > 1:
            self.metrics.mqtt_reconnects.inc()
        self.backoff.reset()
        self._set_state("connected")
        opts = SubscribeOptions(qos=1)
        self._suback_pending = (len(self.topics) + _SUBSCRIBE_CHUNK - 1) // _SUBSCRIBE_CHUNK
        for i in range(0, len(self.topics), _SUBSCRIBE_CHUNK):
            client.subscribe([(t, opts) for t in self.topics[i:i + _SUBSCRIBE_CHUNK]])

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int,
                      reasons: list[ReasonCode], _props: Properties | None) -> None:
        bad = [str(r) for r in reasons if r.is_failure]
        self._suback_pending -= 1
        if self._suback_pending <= 0 and not bad:
            self.subscribed = True
        if bad:
            self.last_error = f"subscription refused: {', '.join(bad)}"
            log.error("MQTT %s", self.last_error)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason: ReasonCode, _props: Properties | None) -> None:
        def lost() -> None:
            if int(reason.value) == SESSION_TAKEN_OVER and not self._stopping:
                self._taken_over = True
                self.takeovers += 1
                self.last_takeover_ms = int(time.time() * 1000)
            self._mark_lost(f"disconnected: {reason}")
        self._io.in_loop(lost)

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    msg: mqtt.MQTTMessage) -> None:
        # a PUBLISH our reader left to paho (QoS 2, a topic alias, …), or paho's reading
        self._on_publish(msg.topic, cast(bytes, msg.payload), msg.mid, msg.qos)

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> bool:
        """Buffers a message; True once the buffer is full (see _on_readable)."""
        self._buf.append(Message(topic, payload, mid, qos, self._gen))
        self._buf_bytes += len(payload)
        self.received += 1
        if self._sleeping:
            self._sleeping = False
            self._ready.set()
        return self._full()

    def _full(self) -> bool:
        return len(self._buf) >= self.max_buffered or self._buf_bytes >= self.max_buffered_bytes


install_fast_properties()  # on import, before any client decodes a packet
