"""The exception tree of anju, drawn once.

    AnjuError
    ├── PayloadError      a message or reading was rejected; ``reason`` is a metric label
    ├── RegistryError     the site registry is invalid; names file, line and field
    ├── RuleError         a rule file is invalid; names file, rule and offending token
    ├── ConfigError       settings are invalid
    ├── ServiceError      a local Mosquitto / InfluxDB failed to start; carries its log tail
    ├── SinkUnavailable   storage is down or slow: retry later (spool meanwhile)
    ├── SinkRejected      storage refused the data for good: drop and count
    └── DeliveryError     a webhook delivery failed; ``retryable`` says what to do

Foreign exceptions (paho-mqtt, aiohttp, sqlite3) are mapped to these at the boundary,
``raise ... from exc``. Messages carry data (device, topic, field, attempt), never secrets.
"""

from __future__ import annotations

__all__ = [
    "AnjuError",
    "ConfigError",
    "DeliveryError",
    "PayloadError",
    "RegistryError",
    "RuleError",
    "ServiceError",
    "SinkRejected",
    "SinkUnavailable",
]


class AnjuError(Exception):
    """Base of every error anju raises on purpose."""


class PayloadError(AnjuError):
    """A message or a reading was rejected; ``reason`` becomes a metric label."""

    def __init__(self, reason: str, detail: str = "", *, field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field
        super().__init__(f"{reason}: {detail}" if detail else reason)


class RegistryError(AnjuError):
    """The site registry is invalid: names the file, the line and the field."""

    def __init__(self, file: str, line: int | None, field: str | None, problem: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.problem = problem
        where = file if line is None else f"{file}:{line}"
        if field:
            where += f" [{field}]"
        self.errors: list[RegistryError] = [self]
        super().__init__(f"{where}: {problem}")

    @classmethod
    def many(cls, errors: list[RegistryError]) -> RegistryError:
        """One error standing for several: the first's file, line and field, every
        problem in the message (one a line)."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        more = "\n".join(f"  {e}" for e in errors[1:])
        agg = cls(first.file, first.line, first.field,
                  f"{first.problem}\n  … and {len(errors) - 1} more:\n{more}")
        agg.errors = list(errors)
        return agg


class RuleError(AnjuError):
    """A rule definition is invalid: names the file, the rule and the offending token."""

    def __init__(self, file: str, rule: str | None, problem: str, token: str | None = None) -> None:
        self.file = file
        self.rule = rule
        self.token = token
        where = file + (f" rule {rule!r}" if rule else "")
        tail = f" (at {token!r})" if token else ""
        super().__init__(f"{where}: {problem}{tail}")


class ConfigError(AnjuError):
    """Settings are invalid."""


class ServiceError(AnjuError):
    """A local service failed to start or stop; ``log_tail`` holds its last log lines."""

    def __init__(self, service: str, problem: str, log_tail: str = "") -> None:
        self.service = service
        self.log_tail = log_tail
        msg = f"{service}: {problem}"
        if log_tail:
            msg += "\n--- last lines of its log ---\n" + log_tail
        super().__init__(msg)


class SinkUnavailable(AnjuError):
    """Storage is unavailable for now (connection refused, 5xx, 429, timeout): retry."""

    def __init__(self, detail: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(detail)


class SinkRejected(AnjuError):
    """Storage rejected the data for good (400, 401/403 …): drop and count, or stop."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(detail)


class DeliveryError(AnjuError):
    """A webhook delivery failed; ``retryable`` says whether to try again."""

    def __init__(
        self, detail: str, *, retryable: bool, status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(detail)
