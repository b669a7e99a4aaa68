"""One set of metrics per Prometheus registry.

Each area declares its metrics in a dataclass and a function that makes them on a
registry; :class:`PerRegistry` hands every part of that area the same objects for the
same registry (a name registers only once per registry), keeps registries apart (one per
pipeline, one per test), and gives metrics registered nowhere for ``None``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry

__all__ = ["PerRegistry"]

T = TypeVar("T")


class PerRegistry(Generic[T]):
    """``make(registry)`` called once per registry; the result handed out after that."""

    def __init__(self, make: Callable[[CollectorRegistry | None], T]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._by_registry: weakref.WeakKeyDictionary[CollectorRegistry, T] = (
            weakref.WeakKeyDictionary())
        self._unregistered: T | None = None

    def __call__(self, registry: CollectorRegistry | None) -> T:
        with self._lock:
            if registry is None:
                if self._unregistered is None:
                    self._unregistered = self._make(None)
                return self._unregistered
            m = self._by_registry.get(registry)
            if m is None:
                m = self._by_registry[registry] = self._make(registry)
            return m
