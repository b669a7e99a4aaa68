"""Where the console is and how to sign in: the line ``anju demo`` prints."""

from __future__ import annotations

from anju.devices.registry import Site, Team

__all__ = ["console_hint", "widest_team"]


def widest_team(site: Site) -> Team | None:
    """The team with a token that sees the most estates (a city-wide one first): the
    demo's operator sees the whole city with it."""
    with_token = [t for t in site.teams if t.token()]
    if not with_token:
        return None
    return max(with_token, key=lambda t: (len(site.estates) if "*" in t.estates
                                          else len(t.estates)))


def console_hint(site: Site, api_addr: str) -> str:
    """``Console: http://…/ — sign in with team X's token: …``.

    It prints a token, which anju otherwise never does: only the demo calls it, and the
    demo's tokens are made for its throwaway city and die with it."""
    host, _, port = api_addr.rpartition(":")
    url = f"http://{host or '127.0.0.1'}:{port}/"
    team = widest_team(site)
    if team is None:
        return f"Console: {url} (no team has a token: set a team's token_env to sign in)"
    return f"Console: {url} — sign in with team {team.id}'s token: {team.token()}"
