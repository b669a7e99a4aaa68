"""Gathers MQTT messages into batches and decodes them into columns.

A batch closes when it holds ``batch_max`` readings or ``batch_linger_ms`` after its first
message arrived, whichever comes first: large enough that every later stage pays its fixed
costs (an HTTP request, a numpy call per rule) once per thousands of readings under load,
and never more than the linger late when traffic is light. Messages are decoded as they are
taken, so the work is spread over the linger rather than done in one burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from anju.devices.batch import Batch, BatchBuilder
from anju.devices.decode import Decoder
from anju.ingest.metrics import IngestMetrics, ingest_metrics
from anju.ingest.mqtt import Message, MqttConsumer

__all__ = ["Batcher"]

_TAKE = 16  # messages decoded at a time (a gateway message holds ~100 readings)
_SLICE_S = 0.002  # decode at most this long before letting other tasks run


class Batcher:
    """Turns the consumer's stream of messages into decoded :class:`Batch` es."""

    def __init__(self, consumer: MqttConsumer, decoder: Decoder, *, batch_max: int,
                 linger_ms: int, metrics: IngestMetrics | None = None,
                 max_messages: int | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.consumer = consumer
        self.decoder = decoder
        self.batch_max = batch_max
        self.linger_s = linger_ms / 1000
        # Rejected messages add no readings; bound the messages of a batch as well.
        self.max_messages = max_messages or batch_max
        self.metrics = metrics or ingest_metrics(None)
        self.clock = clock or (lambda: int(time.time() * 1000))
        # loop time before which a batch does not close (unless full): set by a consumer of
        # batches that wants them no more often than it can afford (Pipeline._pace_rules)
        self.not_before = 0.0
        self._builder = BatchBuilder()

    async def next_batch(self, *, wait: bool = True) -> tuple[Batch, list[Message]]:
        """The next batch and the messages it came from (the messages may hold no valid
        reading). With ``wait=False`` returns at once with whatever is buffered (a drain)."""
        consumer = self.consumer
        if wait and not await consumer.wait(None):
            return self._builder.build(), []  # woken without data: the pipeline is stopping
        loop = asyncio.get_running_loop()
        deadline = max(loop.time() + self.linger_s, self.not_before)
        msgs: list[Message] = []
        readings = 0
        cpu = 0.0
        sliced = time.perf_counter()
        while True:
            room = min(_TAKE, self.max_messages - len(msgs))
            taken = consumer.take(room)
            if taken:
                t0 = time.perf_counter()
                readings += self._decode(taken)
                t1 = time.perf_counter()
                cpu += t1 - t0
                msgs += taken
                if t1 - sliced > _SLICE_S:
                    # A batch of gateway messages takes tens of ms to decode: in slices,
                    # so alarms, webhooks and writes in flight are not held up behind it.
                    await asyncio.sleep(0)
                    sliced = time.perf_counter()
            if readings >= self.batch_max or len(msgs) >= self.max_messages:
                break
            if consumer.buffered:
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or not wait or not await consumer.wait(remaining):
                break
        t0 = time.perf_counter()
        batch = self._builder.build()
        self.metrics.batch_seconds.observe(cpu + time.perf_counter() - t0)
        self.metrics.messages.inc(len(msgs))
        self.metrics.readings.inc(readings)
        return batch, msgs

    def _decode(self, msgs: list[Message]) -> int:
        # The receiving clock of CONTRACT §2, read once per take (≤ a linger late). One
        # call for the take: its gateway batches share the columnar path's fixed cost.
        now = self.clock()
        return self.decoder.decode_many([(m.topic, m.payload) for m in msgs], self._builder,
                                        now, now)
