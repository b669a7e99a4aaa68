"""``gateways.csv`` (optional): which building each gateway speaks for."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from anju.devices.site import ID_RE, PIPELINE_USER, DeviceTable, Estate
from anju.devices.textfile import read_text
from anju.errors import RegistryError

__all__ = ["load_gateways"]


def load_gateways(path: Path, estates: dict[str, Estate],
                   devices: DeviceTable) -> dict[str, tuple[str, str]]:
    """gateways.csv (optional): ``gateway,estate,building``; a gateway id is a broker
    username, so it may not be a device's id nor the pipeline's."""
    if not path.exists():
        return {}
    name = str(path)
    out: dict[str, tuple[str, str]] = {}
    seen: dict[str, int] = {}
    try:
        with io.StringIO(read_text(path), newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
            if header != ["gateway", "estate", "building"]:
                raise RegistryError(name, 1, None, "header must be gateway,estate,building")
            next_line = reader.line_num + 1
            for row in reader:
                line, next_line = next_line, reader.line_num + 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 3:
                    raise RegistryError(name, line, None, f"{len(row)} columns, expected 3")
                gw, estate, building = row
                if not ID_RE.fullmatch(gw):
                    raise RegistryError(name, line, "gateway",
                                        f"{gw!r} is not an id of [A-Za-z0-9_-]{{1,64}}")
                if gw in seen:
                    raise RegistryError(name, line, "gateway",
                                        f"duplicate gateway {gw!r} (first on line {seen[gw]})")
                if gw in devices.index or gw == PIPELINE_USER:
                    raise RegistryError(name, line, "gateway",
                                        f"{gw!r} is already a device's or the pipeline's "
                                        "broker username")
                e = estates.get(estate)
                if e is None:
                    raise RegistryError(name, line, "estate",
                                        f"unknown estate {estate!r} (not in site.yaml)")
                if building not in e.buildings:
                    raise RegistryError(name, line, "building",
                                        f"unknown building {building!r} in estate {e.id!r}")
                seen[gw] = line
                out[gw] = (e.id, building)
    except csv.Error as exc:
        raise RegistryError(name, None, None, f"malformed CSV: {exc}") from None
    return out
