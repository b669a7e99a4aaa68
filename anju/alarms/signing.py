"""Webhook signatures (CONTRACT.md §4).

``X-Anju-Signature: sha256=<hex>`` is HMAC-SHA256 (RFC 2104) under the team's secret of the
ASCII timestamp (``X-Anju-Timestamp``, ms), a dot, and the exact body bytes. Signing the
timestamp with the body lets a receiver refuse replays of old deliveries.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["signature", "signed_headers", "verify"]


def signature(secret: bytes, timestamp_ms: int, body: bytes) -> str:
    """The header value ``sha256=<hex>`` for a body sent at ``timestamp_ms``."""
    mac = hmac.new(secret, str(timestamp_ms).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: bytes, delivery_id: str, timestamp_ms: int,
                   body: bytes) -> dict[str, str]:
    """Every header of one webhook POST."""
    return {
        "Content-Type": "application/json",
        "X-Anju-Delivery": delivery_id,
        "X-Anju-Timestamp": str(timestamp_ms),
        "X-Anju-Signature": signature(secret, timestamp_ms, body),
    }


def verify(secret: bytes, timestamp: str, body: bytes, header: str, *,
           now_ms: int | None = None, tolerance_ms: int = 5 * 60_000) -> bool:
    """What a receiver checks: the signature (constant-time) and, given ``now_ms``, that the
    timestamp is within ``tolerance_ms`` of it."""
    if not timestamp.isdigit():
        return False
    if now_ms is not None and abs(now_ms - int(timestamp)) > tolerance_ms:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), header)
