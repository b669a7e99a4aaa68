"""Reloading the registry of a running pipeline (SIGHUP): site.yaml, devices.csv,
gateways.csv, without a restart.

    load and validate (on a thread) ─ error? ─► log, count, keep the running registry
            │
    pause intake; let every decoded batch be stored and judged (they hold old indices)
            │
    new rules, engine (state of unchanged devices carried over), decoder, encoder;
    the shared Site updated in place (the API and the console read it), the alarm stages
    rebuilt; resume intake
            │
    open alarms of removed devices, buildings or estates cleared, with the reason

What a reload cannot change in place is logged as needing a restart: the estates a
partitioned worker subscribes to, and teams' webhook and robot destinations (their
delivery workers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anju.alarms.model import AlarmRecord
from anju.devices.decode import Decoder
from anju.devices.registry import Site, load_site
from anju.errors import AnjuError
from anju.ingest.lineproto import LineEncoder
from anju.ingest.mqtt import topics_for
from anju.rules import RuleEngine, load_rules
from anju.rules.carry import carry_state
from anju.rules.transition import Transition

if TYPE_CHECKING:
    from anju.app.pipeline import Pipeline

__all__ = ["ReloadResult", "reload_registry"]

log = logging.getLogger(__name__)

REMOVED = "removed from the registry"


@dataclass
class ReloadResult:
    ok: bool
    error: str | None = None
    devices: int = 0
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    carried: int = 0
    cleared: int = 0
    restart_needed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["added"], d["removed"] = len(self.added), len(self.removed)
        return d


async def reload_registry(p: Pipeline, root: Path | None = None) -> ReloadResult:
    """Reloads ``p``'s registry from ``root`` (the site's own folder by default)."""
    root = root or p.site.root
    try:
        new, rules = await asyncio.to_thread(_load, root, p)
    except (AnjuError, ValueError, OSError) as exc:
        log.error("reload of %s failed, the running registry stays: %s", root, exc)
        p.metrics.reloads.labels("failed").inc()
        return ReloadResult(ok=False, error=str(exc))
    old = p.site
    result = ReloadResult(ok=True, devices=len(new.devices))
    result.added = [d for d in new.devices.ids if d not in old.devices.index]
    result.removed = [d for d in old.devices.ids if d not in new.devices.index]
    if p.estates is not None and topics_for(p.settings, new) != p.topics:
        result.restart_needed.append("the estates of this partition changed (subscriptions)")
    if _destinations(old) != _destinations(new):
        result.restart_needed.append("teams' webhook or robot destinations changed")

    async def swap() -> None:
        engine = RuleEngine(new, rules, estates=p.estates)
        result.carried = carry_state(p.engine, engine)
        decoder = Decoder(new, on_reject=p._on_reject, estates=p.estates)
        _carry_counts(p.decoder, decoder)
        # the API, the console and the dispatcher hold the Site: it changes in place
        for f in dataclasses.fields(Site):
            setattr(old, f.name, getattr(new, f.name))
        await asyncio.to_thread(p.manager.reload, old)
        p.manager.watch_gateways(decoder.gateway_seen)
        p.engine, p.decoder, p.batcher.decoder = engine, decoder, decoder
        p.last_readings.use(new)  # the saved times, in the new device order
        p.encoder = LineEncoder(old)
        p._rules = rules

    await p.between_batches(swap)
    gone = _orphans(p, set(result.removed))
    if gone:
        now = p.now()
        await p.enqueue_transitions(now, [_cleared(rec, now) for rec in gone])
        result.cleared = len(gone)
    p.metrics.reloads.labels("ok").inc()
    log.info("registry reloaded from %s: %d devices (%d added, %d removed), rule state of "
             "%d carried over, %d open alarms of removed devices cleared", root,
             result.devices, len(result.added), len(result.removed), result.carried,
             result.cleared)
    for what in result.restart_needed:
        log.warning("reload: %s; this takes effect after a restart", what)
    return result


def _carry_counts(old: Decoder, new: Decoder) -> None:
    """Counters since start and what the decoder knows of time and gateways go on."""
    new.messages, new.accepted, new.newest_ts = old.messages, old.accepted, old.newest_ts
    new.rejected.update(old.rejected)
    new.gateway_seen.update(old.gateway_seen)


def _load(root: Path, p: Pipeline) -> tuple[Site, Any]:
    site = load_site(root)
    return site, (p.given_rules if p.given_rules is not None else load_rules(site))


def _destinations(site: Site) -> list[tuple[str, str | None, tuple[Any, ...]]]:
    return sorted((t.id, t.webhook, tuple(map(repr, t.targets))) for t in site.teams)


def _orphans(p: Pipeline, removed: set[str]) -> list[AlarmRecord]:
    """Open alarms (not event alarms, which an operator closes) of a device, building or
    estate the registry no longer has."""
    site = p.site
    buildings = {(b.estate, b.id) for b in site.buildings}
    out = []
    for rec in p.store.list_alarms(open_only=True):
        if rec.is_event:
            continue
        dev = rec.base.device
        if (dev is not None and (dev in removed or dev not in site.devices.index)) \
                or (rec.base.estate, rec.base.building) not in buildings:
            out.append(rec)
    return out


def _cleared(rec: AlarmRecord, now: int) -> Transition:
    b = rec.base
    return Transition(
        rule=rec.rule, event="cleared", kind=b.kind, severity=b.severity,
        roles=(), subject=rec.subject, device=b.device, estate=b.estate, building=b.building,
        floor=b.floor, zone=b.zone, ts=now, started_at=b.started_at, value=None,
        message=f"{b.message}（已从登记中移除 / {REMOVED}）",
        details={"reason": REMOVED})
