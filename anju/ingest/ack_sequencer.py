"""PUBACKs in the order the PUBLISHes came (MQTT 5 §4.6), although batches become durable
out of order: the pipeline's tickets, one per batch, each complete when its readings are
stored (or spooled) and its alarm transitions committed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anju.ingest.mqtt import RECEIVE_MAXIMUM

if TYPE_CHECKING:
    from anju.ingest.mqtt import Message, MqttConsumer

__all__ = ["AckSequencer"]


class AckSequencer:
    """Releases acknowledgements in the order messages were received (MQTT 5 §4.6: PUBACKs
    go in the order of the PUBLISHes), although batches become durable out of order.

    A ticket may have several parts (the pipeline's two: readings stored or spooled, and
    the alarm transitions they caused committed); it is complete when every part is
    :meth:`done`. A ticket :meth:`abandon` ed is never acknowledged (the broker redelivers
    its messages on our next connection) and no longer holds back the tickets after it.
    """

    def __init__(self, consumer: MqttConsumer) -> None:
        self.consumer = consumer
        self._next_issue = 0
        self._next_ack = 0
        self._done: dict[int, list[Message]] = {}
        self._waiting: dict[int, list[Message]] = {}
        self._parts: dict[int, int] = {}
        self.abandoned = 0  # messages left unacknowledged (since start)
        self.hold_max = RECEIVE_MAXIMUM // 2
        self._held = 0  # of them, on the current connection
        self._held_gen = -1

    def issue(self, messages: list[Message], parts: int = 1) -> int:
        """A ticket for a batch's messages, in intake order, complete after ``parts``
        calls of :meth:`done`."""
        n = self._next_issue
        self._next_issue += 1
        self._waiting[n] = messages
        self._parts[n] = max(1, parts)
        return n

    def done(self, ticket: int) -> None:
        """One part of the ticket is durable; once all are, acknowledges it and every
        earlier complete ticket."""
        left = self._parts.get(ticket)
        if left is None:
            return  # abandoned, or already complete
        if left > 1:
            self._parts[ticket] = left - 1
            return
        del self._parts[ticket]
        self._release(ticket, self._waiting.pop(ticket))

    def abandon(self, ticket: int) -> tuple[bool, int]:
        """A part of the ticket failed for good: its messages are not acknowledged, so the
        broker redelivers them on our next connection. Every unacknowledged message holds
        a slot of the broker's in-flight window (Receive Maximum) until then, and a full
        window would stop delivery — and alarming — altogether; so past ``hold_max``
        messages held on one connection they are acknowledged after all (their readings are
        lost, counted by the caller). Returns (held, number of messages)."""
        if self._parts.pop(ticket, None) is None:
            return True, 0
        msgs = self._waiting.pop(ticket)
        gen = self.consumer.generation
        if gen != self._held_gen:
            self._held_gen, self._held = gen, 0
        if self._held + len(msgs) > self.hold_max:
            self._release(ticket, msgs)
            return False, len(msgs)
        self._held += len(msgs)
        self.abandoned += len(msgs)
        self._release(ticket, [])
        return True, len(msgs)

    def _release(self, ticket: int, msgs: list[Message]) -> None:
        self._done[ticket] = msgs
        while self._next_ack in self._done:
            msgs = self._done.pop(self._next_ack)
            if msgs:
                self.consumer.ack(msgs)
            self._next_ack += 1

    @property
    def pending(self) -> int:
        """Batches issued and not yet acknowledged."""
        return self._next_issue - self._next_ack
