"""How often the rules branch may take a batch: its fixed cost a batch, learnt as it runs.

The engine's cost of a batch is a fixed part (a few compiled calls a kind, Python around
them: tens to hundreds of µs) plus a part per reading. Spacing batches saves only the
fixed part: a batch of 4 000 readings costs its readings' share however it is cut. The
pipeline spaced batches by their whole cost, so with gateway traffic (batches of
thousands of readings, ~1 ms) a reading waited up to ~7 ms for its batch to close, for no
CPU saved: in ``anju bench ingest --gateway-batch 100 --live-rate 500`` that wait was most
of the 8.5 ms an alarm took to reach the rules. :class:`BatchCost` fits cost = fixed +
per reading × readings over recent batches (exponentially weighted least squares) and the
pipeline spaces batches by the fixed part alone.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BatchCost"]


@dataclass(slots=True)
class BatchCost:
    """Exponentially weighted moments of (readings, seconds) of recent batches."""

    keep: float = 0.9  # weight of the past at each batch
    n: float = 0.0  # mean readings
    c: float = 0.0  # mean seconds
    nn: float = 0.0  # mean readings²
    nc: float = 0.0  # mean readings × seconds
    seen: int = 0

    def add(self, readings: int, seconds: float) -> None:
        """One batch's size and cost."""
        k = self.keep if self.seen else 0.0
        self.n = k * self.n + (1 - k) * readings
        self.c = k * self.c + (1 - k) * seconds
        self.nn = k * self.nn + (1 - k) * readings * readings
        self.nc = k * self.nc + (1 - k) * readings * seconds
        self.seen += 1

    @property
    def fixed(self) -> float:
        """Seconds a batch costs whatever its size: the fit's intercept, within [0, mean
        cost]. While every recent batch had the same size the two parts cannot be told
        apart, and the whole mean cost counts as fixed (the cautious side)."""
        var = self.nn - self.n * self.n
        if var <= 1e-6 * max(1.0, self.nn):
            return self.c
        per = max(0.0, (self.nc - self.n * self.c) / var)
        return min(self.c, max(0.0, self.c - per * self.n))
