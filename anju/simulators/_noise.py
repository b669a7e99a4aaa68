"""Counter-based random numbers: a value is a pure function of (seed, device, reading, salt).

numpy's Generators are sequential: what a device gets depends on who drew before it. The
simulator needs values that do not depend on how traffic is cut into windows, which
devices share a process, or which other devices exist, so "same seed → same traffic"
holds for any shard. A splitmix64 hash of the keys (Steele, Lea & Flood, "Fast
splittable pseudorandom number generators", OOPSLA 2014) gives that, vectorised.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

__all__ = ["device_key", "hash64", "normal", "uniform"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def device_key(device_id: str) -> int:
    """A stable 63-bit key of a device id (its values must not move when others are added)."""
    return int.from_bytes(hashlib.blake2b(device_id.encode(), digest_size=8).digest()) >> 1


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # uint64 array arithmetic wraps silently, which is what a hash wants (no warnings:
    # these are always ≥ 1-d arrays, never numpy scalars).
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def hash64(*keys: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """splitmix64 over the keys, broadcast together; each key a non-negative int or array."""
    h = np.zeros(1, dtype=np.uint64)
    for k in keys:
        arr = np.atleast_1d(np.asarray(k))
        if arr.dtype.kind == "i":
            arr = arr.astype(np.int64).view(np.uint64)
        h = _mix(h + _GOLDEN + arr.astype(np.uint64))
    return h


def uniform(*keys: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Uniform in [0, 1), one value per broadcast key."""
    return (hash64(*keys) >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def normal(*keys: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Standard normal by Box–Muller from two independent uniforms of the same keys."""
    u1 = uniform(*keys, 0x51ED)
    u2 = uniform(*keys, 0xB0A7)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
