"""Generated site directories: for tests, benchmarks and trying anju out.

Ids are predictable: estates ``e1``, ``e2``…, buildings ``b1``… in each estate,
devices ``{kind}-{n}`` numbered per kind across the site, gateways ``gw-{estate}-{building}``.
Registry params take each kind's :attr:`~anju.devices.spec.ParamSpec.example`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import orjson

from anju.kinds import KINDS

__all__ = ["write_site"]


def write_site(
    root: Path,
    *,
    estates: int = 1,
    buildings: int = 1,
    floors: int = 18,
    per_building: Mapping[str, int] | int = 1,
    gateways: bool = True,
) -> Path:
    """Writes ``site.yaml``, ``devices.csv`` (and ``gateways.csv``) under ``root``.

    ``per_building`` is the number of devices of each kind in every building (an int
    for every kind alike). Returns ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    counts = per_building if isinstance(per_building, Mapping) else dict.fromkeys(
        KINDS, per_building)
    params = {
        kind: ("" if not spec.params else _csv_quote(orjson.dumps(
            {p.name: (int(p.example) if p.type == "int" else p.example) for p in spec.params}
        ).decode()))
        for kind, spec in KINDS.items()
    }
    yaml_lines = ["estates:"]
    rows = ["device,kind,estate,building,floor,zone,params"]
    gw_rows = ["gateway,estate,building"]
    numbers = dict.fromkeys(KINDS, 0)
    for e in range(1, estates + 1):
        yaml_lines += [f"  - id: e{e}", f"    name: estate {e}", "    buildings:"]
        for b in range(1, buildings + 1):
            yaml_lines.append(f"      - {{id: b{b}, floors: {floors}, floor_height_m: 3.0}}")
            gw_rows.append(f"gw-e{e}-b{b},e{e},b{b}")
            for kind, n in counts.items():
                for _ in range(n):
                    numbers[kind] += 1
                    floor = "" if KINDS[kind].params else str(numbers[kind] % floors + 1)
                    rows.append(f"{kind}-{numbers[kind]},{kind},e{e},b{b},{floor},z,"
                                f"{params[kind]}")
    yaml_lines += [
        "teams:",
        "  - {id: property, role: property, estates: ['*'], "
        "webhook: 'http://127.0.0.1:9/hooks', secret_env: ANJU_SAMPLE_SECRET}",
    ]
    (root / "site.yaml").write_text("\n".join(yaml_lines) + "\n", encoding="utf-8")
    (root / "devices.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if gateways:
        (root / "gateways.csv").write_text("\n".join(gw_rows) + "\n", encoding="utf-8")
    return root


def _csv_quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'
