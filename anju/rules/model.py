"""Rules as data: YAML files validated by pydantic, compiled once against the kind table.

A rule file is a list of rules (or ``{rules: [...]}``). Every threshold a rule uses is a
named parameter in ``params``, so a site overrides it in its ``site.yaml``::

    rules:
      smoke.alarm: {threshold: 0.2, for: 15}

Rule ``type``:
- ``state`` (default): raises when ``condition`` has held for ``for`` seconds (``for_when``
  tiers may shorten it), clears once it has been false for ``clear_after`` seconds;
- ``event``: raises once per reading where ``condition`` holds; closed by acknowledgement;
- ``group``: raises when ≥ ``min_members`` devices of one (estate, building, floor) are in
  one of the ``members`` rules within ``within`` seconds; clears when none is;
- ``offline``: raises when a device's newest reading is older than ``heartbeats`` × its
  kind's heartbeat; its next reading clears it (``kind: "*"`` for every kind);
- ``schedule``: rounds fall due on each device's local clock (every ``every_min`` minutes
  from ``from_hour`` until ``to_hour``, at UTC + ``utc_offset_h``); a round with no reading
  where ``condition`` holds within ``tolerance_min`` of its due time raises once, at the
  end of its tolerance (closed by acknowledgement). The five numbers are the device's
  registry params of those names where it has them, else the rule's ``params``.

A group's members may be of several kinds (every device of a member rule's kind with a
floor belongs to its floor's group); with ``all_members`` every entry of ``members`` must
be among the live alarms (a correlation of different signs, not a count of one). Member
alarms that never clear (event and schedule rules) count for ``within`` after their raise.

``report``: the column of the accountability report that counts the rule's alarms.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anju.errors import RuleError
from anju.kinds import KINDS, kind_rules_file
from anju.rules.expr import Expr, Window, parse_expr

__all__ = ["SCHEDULE_PARAMS", "CompiledRule", "RuleDef", "RuleSet", "load_rules"]

#: What a schedule rule reads, per device (registry params) or from the rule's params.
SCHEDULE_PARAMS = ("every_min", "from_hour", "to_hour", "tolerance_min", "utc_offset_h")

Severity = Literal["critical", "major", "minor", "warning"]


class _ForWhen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: str
    for_: float = Field(alias="for", ge=0)


class RuleDef(BaseModel):
    """One rule as written in YAML."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")
    kind: str
    type: Literal["state", "event", "group", "offline", "schedule"] = "state"
    condition: str = ""
    for_: float = Field(0.0, alias="for", ge=0)
    for_when: list[_ForWhen] = []
    clear_after: float = Field(30.0, ge=0)
    severity: Severity
    roles: list[Literal["property", "fire", "supervisor"]] = Field(min_length=1)
    params: dict[str, float] = {}
    value: str | None = None
    details: dict[str, str] = {}
    enrich: Literal["trajectory"] | None = None
    message: str = ""
    # group rules
    members: list[str] = []
    min_members: int = Field(2, ge=1)
    within: float = Field(120.0, gt=0)
    all_members: bool = False
    # offline rules
    heartbeats: float = Field(3.0, gt=0)
    # a column of the accountability report counting this rule's alarms
    report: str | None = Field(None, pattern=r"^[a-z0-9_]+$")
    doc: str = ""


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its expressions parsed against its kind."""

    order: int
    id: str
    kind: str
    type: str
    condition: Expr | None
    for_s: float
    for_when: tuple[tuple[Expr, float], ...]
    clear_after_s: float
    severity: Severity
    roles: tuple[str, ...]
    params: dict[str, float]
    value: Expr | None
    details: tuple[tuple[str, Expr], ...]
    message: str
    enrich: str | None = None
    members: tuple[str, ...] = ()
    min_members: int = 2
    within_s: float = 120.0
    heartbeats: float = 3.0
    # group rules: the kinds of the member rules ("*" for any), whether every entry of
    # ``member_entries`` must be live, the entry each member rule matched first, and the
    # member rules whose alarms never clear (event, schedule: live for ``within``)
    member_kinds: tuple[str, ...] = ()
    all_members: bool = False
    member_entry: tuple[tuple[str, int], ...] = ()
    momentary: tuple[str, ...] = ()
    report: str | None = None

    @cached_property
    def windows(self) -> tuple[Window, ...]:
        out: list[Window] = []
        for e in (self.condition, self.value, *(x for x, _ in self.for_when),
                  *(x for _, x in self.details)):
            if e is not None:
                out.extend(w for w in e.windows if w not in out)
        return tuple(out)

    @cached_property
    def names(self) -> frozenset[str]:
        """Every column the rule reads (fields, registry params, window keys)."""
        out: frozenset[str] = frozenset()
        for e in (self.condition, self.value, *(x for x, _ in self.for_when),
                  *(x for _, x in self.details)):
            if e is not None:
                out |= e.names
        return out

    @cached_property
    def outputs(self) -> tuple[Expr | None, ...]:
        """The value then each detail: what a transition reports about its reading."""
        return (self.value, *(e for _, e in self.details))


@dataclass
class RuleSet:
    rules: list[CompiledRule]

    def by_kind(self, kind: str) -> list[CompiledRule]:
        return [r for r in self.rules if r.kind == kind
                and r.type in ("state", "event", "schedule")]

    def of_type(self, type_: str) -> list[CompiledRule]:
        return [r for r in self.rules if r.type == type_]

    def get(self, rule_id: str) -> CompiledRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def __len__(self) -> int:
        return len(self.rules)


def _read(path: Path | str, text: str | None = None) -> list[dict[str, Any]]:
    name = str(path)
    try:
        raw = yaml.safe_load(text if text is not None else Path(path).read_text("utf-8"))
    except yaml.YAMLError as exc:
        raise RuleError(name, None, f"invalid YAML: {exc}") from None
    except OSError as exc:
        raise RuleError(name, None, f"cannot read: {exc}") from None
    if isinstance(raw, dict):
        raw = raw.get("rules")
    if not isinstance(raw, list):
        raise RuleError(name, None, "expected a list of rules (or {rules: [...]})")
    return raw


def default_rule_files() -> list[tuple[str, str]]:
    """The packaged default catalogue: (name, text) of each YAML file — the rules of no
    kind in ``anju/rules/catalogue/``, each kind's ``anju/kinds/<kind>/rules.yaml`` —
    ordered by file stem (kind name), so a later file's rule of the same id wins as before."""
    found: list[tuple[str, str, str]] = []
    pkg = resources.files("anju.rules") / "catalogue"
    for p in pkg.iterdir():
        if p.name.endswith(".yaml"):
            found.append((p.name.removesuffix(".yaml"), f"catalogue/{p.name}",
                          p.read_text("utf-8")))
    for kind in KINDS:
        f = kind_rules_file(kind)
        if f.is_file():  # a kind without default rules is still a kind
            found.append((kind, f"kinds/{kind}/rules.yaml", f.read_text("utf-8")))
    return [(name, text) for _stem, name, text in sorted(found)]


def load_rules(site: Any = None, paths: list[Path] | None = None, *,
               defaults: bool = True, overrides: dict[str, dict[str, Any]] | None = None
               ) -> RuleSet:
    """The default catalogue, plus rule files, with the site's overrides applied.

    Overrides (``site.yaml`` ``rules:``) map a rule id (or a glob such as ``water.*``)
    to parameter values, ``for``, ``clear_after``, ``severity`` or ``enabled: false``.
    """
    sources: list[tuple[str, list[dict[str, Any]]]] = []
    if defaults:
        sources += [(name, _read(name, text)) for name, text in default_rule_files()]
    for p in paths or []:
        sources.append((str(p), _read(p)))
    # (where it was written, {pattern: changes}, {pattern: line}): the site's, then --set
    override_sources: list[tuple[str, dict[str, Any], dict[str, int]]] = []
    if site is not None and getattr(site, "rule_overrides", None):
        override_sources.append((str(Path(site.root) / "site.yaml"), site.rule_overrides,
                                 getattr(site, "rule_override_lines", {})))
    if overrides:
        override_sources.append(("--set", overrides, {}))

    defs: dict[str, tuple[str, RuleDef]] = {}
    for name, items in sources:
        for i, raw in enumerate(items):
            rid = raw.get("id") if isinstance(raw, dict) else None
            try:
                d = RuleDef.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise RuleError(name, rid or f"#{i + 1}",
                                f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
            defs[d.id] = (name, d)  # a later file replaces a rule of the same id

    for where, patterns, lines in override_sources:
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(rid, pattern) for rid in defs):
                hint = difflib.get_close_matches(pattern, list(defs), n=1)
                raise RuleError(_where(where, lines, pattern), pattern,
                                "override names no known rule"
                                + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    compiled: list[CompiledRule] = []
    for name, d in defs.values():
        enabled = True
        for where, patterns, lines in override_sources:
            for pattern, changes in patterns.items():
                if fnmatch.fnmatchcase(d.id, pattern):
                    d, enabled = _apply_override(d, changes, _where(where, lines, pattern),
                                                 enabled)
        if enabled:
            compiled.append(_compile(name, d, len(compiled), defs))
    return RuleSet(compiled)


def _where(where: str, lines: dict[str, int], pattern: str) -> str:
    line = lines.get(pattern)
    return f"{where}:{line}" if line else where


def _apply_override(d: RuleDef, changes: dict[str, Any], file: str, enabled: bool
                    ) -> tuple[RuleDef, bool]:
    if not isinstance(changes, dict):
        raise RuleError(file, d.id, "an override is a mapping of parameter to value")
    data = d.model_dump(by_alias=True)
    params = dict(d.params)
    for key, value in changes.items():
        if key == "enabled":
            enabled = bool(value)
        elif key == "report":
            data[key] = value
        elif key in ("for", "clear_after", "severity", "roles", "within", "min_members",
                     "heartbeats", "message"):
            data[key] = value
        elif key in params:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RuleError(file, d.id, f"override {key!r} must be a number", str(value))
            params[key] = float(value)
        else:
            hint = difflib.get_close_matches(key, list(params), n=1)
            raise RuleError(file, d.id, "unknown parameter to override"
                            + (f" (did you mean {hint[0]!r}?)" if hint else "")
                            + f" (known: {', '.join(sorted(params)) or 'none'})", key)
    data["params"] = params
    try:
        return RuleDef.model_validate(data), enabled
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RuleError(file, d.id, f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def _compile(file: str, d: RuleDef, order: int, defs: dict[str, tuple[str, RuleDef]]
             ) -> CompiledRule:
    def expr(src: str) -> Expr:
        return parse_expr(src, KINDS[d.kind], d.params, file=file, rule=d.id)

    common: dict[str, Any] = {
        "order": order, "id": d.id, "kind": d.kind, "type": d.type, "severity": d.severity,
        "roles": tuple(d.roles), "params": dict(d.params), "message": d.message,
        "clear_after_s": d.clear_after, "for_s": d.for_, "enrich": d.enrich,
        "report": d.report,
    }
    if d.type == "offline":
        if d.kind != "*" and d.kind not in KINDS:
            raise RuleError(file, d.id, "unknown kind", d.kind)
        return CompiledRule(condition=None, for_when=(), value=None, details=(),
                            heartbeats=d.heartbeats, **common)
    if d.kind not in KINDS:
        raise RuleError(file, d.id, f"unknown kind (known: {', '.join(KINDS)})", d.kind)
    if d.type == "group":
        for m in d.members:
            if not any(fnmatch.fnmatchcase(r, m) for r in defs):
                raise RuleError(file, d.id, "member names no known rule", m)
        members = tuple(r for r in defs if any(fnmatch.fnmatchcase(r, m) for m in d.members))
        entry = tuple((r, next(j for j, m in enumerate(d.members) if fnmatch.fnmatchcase(r, m)))
                      for r in members)
        kinds = tuple(dict.fromkeys(defs[r][1].kind for r in members))
        momentary = tuple(r for r in members if defs[r][1].type in ("event", "schedule"))
        return CompiledRule(condition=None, for_when=(), value=None, details=(),
                            members=members, min_members=d.min_members, within_s=d.within,
                            member_kinds=kinds, all_members=d.all_members,
                            member_entry=entry, momentary=momentary, **common)
    if not d.condition:
        raise RuleError(file, d.id, f"a {d.type} rule needs a condition")
    if d.type == "schedule":
        missing = [p for p in SCHEDULE_PARAMS if p not in d.params]
        if missing:
            raise RuleError(file, d.id, "a schedule rule needs the params "
                            + ", ".join(SCHEDULE_PARAMS), missing[0])
    return CompiledRule(
        condition=expr(d.condition),
        for_when=tuple((expr(fw.when), fw.for_) for fw in d.for_when),
        value=expr(d.value) if d.value else None,
        details=tuple((k, expr(v)) for k, v in d.details.items()),
        **common,
    )
