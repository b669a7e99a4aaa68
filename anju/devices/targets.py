"""Delivery targets of a team in ``site.yaml``: the chat robots beside its signed webhook.

```yaml
teams:
  - id: property-e001
    ...
    webhook: https://…          # the signed webhook (CONTRACT §4), as before: the default
    secret_env: ANJU_SECRET_PROPERTY_E001
    targets:
      - type: dingtalk          # dingtalk | wecom | feishu
        name: duty-group        # optional, unique within the team; default: the type
        url_env: ANJU_DINGTALK_URL_E001      # env var holding the robot's webhook URL
        secret_env: ANJU_DINGTALK_SECRET_E001  # its signing secret (dingtalk, feishu)
        mention: ["13800001111"]  # on-duty mobiles (feishu: open ids) @-ed on critical alarms
        rate_limits: [[20, 60]]   # optional: at most 20 messages in any 60 s
```

Only env var *names* live in the file: a robot's URL carries its access token (DingTalk,
Feishu) or key (WeCom), so it is as secret as the signing secret. The values are read
when a message is sent; the dispatcher refuses to start when one is unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_RATE_LIMITS", "RobotKind", "RobotTarget", "RobotTargetModel",
           "destination_keys"]

RobotKind = Literal["dingtalk", "wecom", "feishu"]

#: Each platform's own limits, kept by delaying (docs/alarms.md cites the sources).
DEFAULT_RATE_LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "dingtalk": ((20, 60.0),),  # 20 a minute per robot; beyond it blocked for 10 minutes
    "wecom": ((20, 60.0),),  # 20 a minute per robot
    "feishu": ((5, 1.0), (100, 60.0)),  # 5 a second and 100 a minute per bot
}

_ENV = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class RobotTargetModel(BaseModel):
    """One ``teams[].targets[]`` item of site.yaml."""

    model_config = ConfigDict(extra="forbid")
    type: RobotKind
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    url_env: str = Field(pattern=_ENV)
    secret_env: str | None = Field(None, pattern=_ENV)
    mention: list[str] = Field(default_factory=list, max_length=50)
    rate_limits: list[tuple[int, float]] | None = None

    @model_validator(mode="after")
    def _check(self) -> RobotTargetModel:
        if self.type == "wecom" and self.secret_env is not None:
            raise ValueError("wecom robots are not signed: the key in the URL (url_env) "
                             "is the credential; remove secret_env")
        for count, per_s in self.rate_limits or ():
            if count < 1 or per_s <= 0:
                raise ValueError(f"rate_limits item [{count}, {per_s}]: need count ≥ 1 "
                                 "and seconds > 0")
        return self


@dataclass(frozen=True, slots=True)
class RobotTarget:
    """A team's chat robot, as the rest of anju sees it."""

    kind: RobotKind
    name: str
    url_env: str
    secret_env: str | None = None
    mention: tuple[str, ...] = ()
    rate_limits: tuple[tuple[int, float], ...] = ()

    @classmethod
    def from_model(cls, m: RobotTargetModel) -> RobotTarget:
        return cls(m.type, m.name or m.type, m.url_env, m.secret_env, tuple(m.mention),
                   tuple(m.rate_limits) if m.rate_limits else DEFAULT_RATE_LIMITS[m.type])

    def url(self) -> str | None:
        """The robot's webhook URL from the environment, or None when unset."""
        return os.environ.get(self.url_env) or None

    def secret(self) -> str | None:
        return (os.environ.get(self.secret_env) or None) if self.secret_env else None


def destination_keys(team_id: str, webhook: bool, targets: tuple[RobotTarget, ...]) -> list[str]:
    """The outbox keys of a team's targets: its id for the webhook (as before robots
    existed, so old outbox rows and delivery ids stay valid), ``team/name`` for a robot."""
    return ([team_id] if webhook else []) + [f"{team_id}/{t.name}" for t in targets]
