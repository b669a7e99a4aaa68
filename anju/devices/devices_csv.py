"""``devices.csv`` (CONTRACT.md §3) → :class:`DeviceTable`: one row per device, its kind,
place and params checked against the kind table and site.yaml. Every bad row is reported
(up to a limit) with its line and column, so a big file is fixed in one pass."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from anju.devices.site import ID_RE, PIPELINE_USER, DeviceTable, Estate
from anju.devices.textfile import read_text
from anju.errors import RegistryError
from anju.kinds import KIND_CODES, KINDS

__all__ = ["load_devices"]

_MAX_ERRORS = 20  # rows reported at once; past that the file is likely not a registry

_DEVICE_COLUMNS = ("device", "kind", "estate", "building", "floor", "zone", "params")
_REQUIRED_COLUMNS = ("device", "kind", "estate", "building")


def load_devices(path: Path, estates: dict[str, Estate]) -> DeviceTable:
    name = str(path)
    fh = io.StringIO(read_text(path), newline="")
    ids: list[str] = []
    index: dict[str, int] = {}
    kinds: list[int] = []
    est: list[int] = []
    bld: list[int] = []
    floors: list[float] = []
    zones: list[str | None] = []
    lines: list[int] = []
    params: dict[str, list[tuple[int, float]]] = {}
    seen_params: dict[tuple[str, str], list[tuple[str, float]]] = {}
    kind_needs_params = {k: any(p.required for p in spec.params) for k, spec in KINDS.items()}
    errors: list[RegistryError] = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise RegistryError(name, 1, None, "empty file: a header is required") from None
        except csv.Error as exc:
            raise RegistryError(name, 1, None, f"malformed CSV: {exc}") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        for j, col in enumerate(header):
            if col not in _DEVICE_COLUMNS:
                raise RegistryError(name, 1, col, f"unknown column (expected {_DEVICE_COLUMNS})")
            if col in header[:j]:
                raise RegistryError(name, 1, col, "column named twice in the header")
        for col in _REQUIRED_COLUMNS:
            if col not in header:
                raise RegistryError(name, 1, col, "required column missing from the header")
        pos = {c: header.index(c) for c in header}
        width = len(header)
        p_floor, p_zone, p_params = pos.get("floor"), pos.get("zone"), pos.get("params")
        line, next_line = 1, reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                raise RegistryError(name, line + 1, None, f"not UTF-8 ({exc.reason})") from None
            except csv.Error as exc:
                raise RegistryError(name, reader.line_num, None, f"malformed CSV: {exc}") from None
            # where the row starts (a quoted field may span lines; line_num is where it ends)
            line, next_line = next_line, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                if len(row) != width:
                    raise RegistryError(name, line, None,
                                        f"{len(row)} columns where the header has {width}")
                dev = row[pos["device"]]
                if not ID_RE.fullmatch(dev):
                    raise RegistryError(name, line, "device",
                                        f"{dev!r} is not an id of [A-Za-z0-9_-]{{1,64}}")
                if dev in index:
                    raise RegistryError(name, line, "device",
                                        f"duplicate device {dev!r} (first on line "
                                        f"{lines[index[dev]]})")
                if dev == PIPELINE_USER:
                    raise RegistryError(name, line, "device",
                                        f"{dev!r} is reserved for the pipeline's broker user")
                kind = row[pos["kind"]]
                if kind not in KINDS:
                    raise RegistryError(name, line, "kind",
                                        f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
                e = estates.get(row[pos["estate"]])
                if e is None:
                    raise RegistryError(name, line, "estate",
                                        f"unknown estate {row[pos['estate']]!r} (not in site.yaml)")
                b = e.buildings.get(row[pos["building"]])
                if b is None:
                    raise RegistryError(name, line, "building",
                                        f"unknown building {row[pos['building']]!r} "
                                        f"in estate {e.id!r}")
                floor = math.nan
                if p_floor is not None and row[p_floor].strip():
                    try:
                        floor = int(row[p_floor])
                    except ValueError:
                        raise RegistryError(name, line, "floor",
                                            f"{row[p_floor]!r} is not an integer") from None
                    # room below for basement plant (a pump room at -1 with no basements
                    # declared) and above for the roof and the lift machine room
                    lo, hi = -b.basements - 10, b.floors + 2
                    if not lo <= floor <= hi:
                        raise RegistryError(name, line, "floor",
                                            f"floor {floor} outside building {b.id!r}: it has "
                                            f"floors 1…{b.floors}; {lo}…{hi} are accepted")
                i = len(ids)
                raw_params = row[p_params].strip() if p_params is not None else ""
                if raw_params:
                    # Devices of one model share their params text: validate each text once.
                    parsed = seen_params.get((kind, raw_params))
                    if parsed is None:
                        parsed = _parse_params(name, line, kind, raw_params)
                        seen_params[(kind, raw_params)] = parsed
                    for key, value in parsed:
                        params.setdefault(key, []).append((i, value))
                elif kind_needs_params[kind]:
                    _parse_params(name, line, kind, raw_params)  # raises: what is missing
                index[dev] = i
                ids.append(dev)
                kinds.append(KIND_CODES[kind])
                est.append(e.index)
                bld.append(b.index)
                floors.append(floor)
                zones.append((row[p_zone] or None) if p_zone is not None else None)
                lines.append(line)
            except RegistryError as exc:
                # keep going: an installer fixes every row of a big file in one pass
                errors.append(exc)
                if len(errors) >= _MAX_ERRORS:
                    break
    if errors:
        raise RegistryError.many(errors)
    n = len(ids)
    param_cols: dict[str, np.ndarray] = {}
    for pname, values in params.items():
        column = np.full(n, np.nan)
        if values:
            idx, vals = zip(*values, strict=True)
            column[list(idx)] = vals
        param_cols[pname] = column
    return DeviceTable(
        ids=ids,
        index=index,
        kind=np.asarray(kinds, dtype=np.int8),
        estate=np.asarray(est, dtype=np.int32),
        building=np.asarray(bld, dtype=np.int32),
        floor=np.asarray(floors, dtype=np.float64),
        zone=zones,
        params=param_cols,
        lines=lines,
    )


def _parse_params(name: str, line: int, kind: str, text: str) -> list[tuple[str, float]]:
    """The ``params`` cell of one device: a JSON object of the kind's declared params."""
    spec = KINDS[kind]
    given: dict[str, Any] = {}
    if text:
        try:
            given = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(name, line, "params", f"invalid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise RegistryError(name, line, "params", "must be a JSON object")
    known = {p.name: p for p in spec.params}
    out: list[tuple[str, float]] = []
    for key, value in given.items():
        p = known.get(key)
        if p is None:
            raise RegistryError(name, line, f"params.{key}",
                                f"unknown parameter for kind {kind!r} "
                                f"(known: {', '.join(known) or 'none'})")
        ok = (type(value) is int) if p.type == "int" else (type(value) in (int, float))
        if not ok or not math.isfinite(value):
            raise RegistryError(name, line, f"params.{key}", f"{value!r} is not a finite {p.type}")
        out.append((key, float(value)))
    for p in spec.params:
        if p.required and p.name not in given:
            raise RegistryError(name, line, f"params.{p.name}",
                                f"required for kind {kind!r} but missing")
    return out
