"""The rules → alarms wiring shared by ``anju run`` (and the demo, which runs the pipeline
on a data clock) and ``anju rules eval``: how a decoded batch is judged, how time is
ticked, and how the transitions of either reach the alarm lifecycle.

Each step takes the receiving clock ``now`` from its caller (DESIGN.md "Time"): the live
pipeline passes its clock, a replay data time. The steps stay separate calls because the
pipeline runs them apart — the engine on the event loop, the lifecycle's SQLite commits
on a thread, several batches' transitions in one commit — while a replay runs them one
after the other (:meth:`Evaluation.batch`, :meth:`Evaluation.tick`).
"""

from __future__ import annotations

from anju.alarms import AlarmEvent, AlarmManager
from anju.devices.batch import Batch
from anju.rules.engine import RuleEngine
from anju.rules.transition import Transition

__all__ = ["Evaluation"]


class Evaluation:
    """A rule engine and the alarm lifecycle its transitions go to.

    ``engine`` may be swapped (a registry reload carries its state into a new one); the
    lifecycle stays.
    """

    def __init__(self, engine: RuleEngine, manager: AlarmManager) -> None:
        self.engine = engine
        self.manager = manager

    # -- the steps -------------------------------------------------------------------------
    def judge(self, batch: Batch, now: int) -> list[Transition]:
        """The transitions of a decoded batch, received at ``now``."""
        return self.engine.process(batch, now)

    def clock(self, now: int) -> list[Transition]:
        """The transitions time alone makes at ``now``: durations met, clear delays
        passed, devices gone offline."""
        return self.engine.tick(now)

    def commit(self, now: int, transitions: list[Transition], *,
               tick: bool = False) -> list[AlarmEvent]:
        """Applies ``transitions`` to the lifecycle at ``now``; on a tick, after them, what
        the lifecycle itself has due then (escalations, reminders, maintenance windows,
        its watches). Returns the events committed, in order."""
        events = self.manager.on_transitions(transitions, now_ms=now) if transitions else []
        if tick:
            events += self.manager.tick(now)
        return events

    # -- the steps one after the other (a replay) --------------------------------------------
    def batch(self, batch: Batch, now: int) -> list[AlarmEvent]:
        """Judges a batch received at ``now`` and commits its transitions."""
        return self.commit(now, self.judge(batch, now))

    def tick(self, now: int) -> list[AlarmEvent]:
        """Ticks the clock to ``now``: the engine's transitions, then the lifecycle's."""
        return self.commit(now, self.clock(now), tick=True)
