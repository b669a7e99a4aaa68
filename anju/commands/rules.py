"""``anju rules``: check rule files, replay recordings (CONTRACT §7)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from anju.cliutil import JsonOpt, SiteOpt, emit_json, fail

app = typer.Typer(no_args_is_help=True)

RulesOpt = Annotated[list[Path] | None, typer.Option(
    "--rules", help="extra rule file(s); a rule with a default's id replaces it")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="override a threshold: RULE.PARAM=VALUE, e.g. smoke.alarm.threshold=0.2")]




def _overrides(sets: list[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in sets or []:
        key, sep, value = s.partition("=")
        rule, dot, param = key.rpartition(".")
        if not sep or not dot or not rule:
            raise typer.BadParameter(f"{s!r}: expected RULE.PARAM=VALUE", param_hint="--set")
        try:
            parsed: Any = float(value)
        except ValueError:
            parsed = value
        out.setdefault(rule, {})[param] = parsed
    return out


def _load(site_dir: Path, rules: list[Path] | None, sets: list[str] | None) -> Any:
    from anju.devices.registry import load_site
    from anju.errors import AnjuError
    from anju.rules.model import load_rules

    try:
        site = load_site(site_dir)
        return site, load_rules(site, rules, overrides=_overrides(sets))
    except AnjuError as exc:
        raise fail(exc) from None


@app.command("eval")
def eval_(
    site: SiteOpt,
    input: Annotated[Path, typer.Option("--input", help="recording, JSON lines")],
    output: Annotated[Path, typer.Option("--output", help="alarm events, JSON lines")],
    rules: RulesOpt = None,
    set_: SetOpt = None,
    deadletter: Annotated[Path | None, typer.Option(
        help="write rejected messages here (JSON lines)")] = None,
    json: JsonOpt = False,
) -> None:
    """Replay a recording through decode → rules → alarms in data time; write alarm events."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from anju.app.replay import replay, write_events

    site_obj, rule_set = _load(site, rules, set_)
    try:
        fh = input.open("rb")
    except OSError as exc:
        raise fail(f"{input}: {exc.strerror}") from None
    dl = None
    if deadletter is not None:
        from anju.devices.deadletter import DeadLetters

        dl = DeadLetters(deadletter, max_bytes=64 * 1024 * 1024)
    size = input.stat().st_size
    console = Console(stderr=True)
    with fh, Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.completed:,} msgs"),
                      TimeElapsedColumn(), console=console, transient=True,
                      disable=json or not console.is_terminal) as prog:
        task = prog.add_task("replay", total=None)
        del size

        def progress(n: int) -> None:
            prog.update(task, completed=n)

        result = replay(site_obj, rule_set, fh, on_progress=progress,
                        on_reject=dl.write if dl is not None else None)
    if dl is not None:
        dl.close()
    write_events(result.events, output)
    summary = result.summary()
    if result.messages and not result.records:
        # nothing in the file was a recording: say so rather than report "no alarms"
        typer.echo(f"error: {input}: no line is a recording record "
                   f"({{\"topic\": …, \"payload\": …}}); first: {result.bad_lines[0]}",
                   err=True)
        if json:
            emit_json(summary)
        raise typer.Exit(1)
    if json:
        emit_json(summary)
        return
    typer.echo(f"{summary['messages']} messages, {summary['readings']} readings accepted, "
               f"{sum(summary['rejected'].values())} rejected, {summary['alarms']} alarm events "
               f"→ {output}")
    for reason, n in summary["rejected"].items():
        typer.echo(f"  rejected {reason}: {n}")
    for problem in result.bad_lines:
        typer.echo(f"    {input}: {problem}")
    for rule, n in summary["by_rule"].items():
        typer.echo(f"  raised {rule}: {n}")


@app.command("check")
def check(
    site: Annotated[Path | None, typer.Option("--site", help="apply this site's overrides")] = None,
    rules: RulesOpt = None,
    set_: SetOpt = None,
    json: JsonOpt = False,
) -> None:
    """Validate rule files (and a site's overrides); list the rules in force."""
    from anju.errors import AnjuError
    from anju.rules.model import load_rules

    try:
        if site is not None:
            _site, rs = _load(site, rules, set_)
        else:
            rs = load_rules(None, rules, overrides=_overrides(set_))
    except AnjuError as exc:
        raise fail(exc) from None
    rows = [{"id": r.id, "kind": r.kind, "type": r.type, "severity": r.severity,
             "roles": list(r.roles), "for_s": r.for_s, "clear_after_s": r.clear_after_s,
             "params": r.params,
             "condition": r.condition.source if r.condition else None} for r in rs.rules]
    if json:
        emit_json({"rules": len(rows), "by_id": {r["id"]: r for r in rows}})
        return
    for r in rows:
        timing = f"for {r['for_s']:g}s, clear {r['clear_after_s']:g}s" \
            if r["type"] == "state" else r["type"]
        params = ", ".join(f"{k}={v:g}" for k, v in r["params"].items())
        typer.echo(f"{r['id']:30} {r['severity']:8} {','.join(r['roles']):14} {timing}")
        typer.echo(f"    {r['condition'] or ''}" + (f"   [{params}]" if params else ""))
    from anju.rules.model import default_rule_files

    known = len([1 for _n, text in default_rule_files() for line in text.splitlines()
                 if line.startswith("- id:")])
    off = f" ({known - len(rows)} of the defaults disabled)" if len(rows) < known else ""
    typer.echo(f"{len(rows)} rules OK{off}")
