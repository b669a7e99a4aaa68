"""YAML that remembers lines: every mapping knows its own line and each key's, every
sequence each item's, so a validation error can name the line of the field it is about
(:func:`line_of` on a pydantic error's ``loc``). Duplicate keys are refused."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["KEYS", "LINE", "LineLoader", "Lines", "line_of", "strip_lines"]

# libyaml's parser when present: 10× faster on a city's site.yaml, and it keeps marks.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A SafeLoader that remembers where every key and list item is, for error messages,
    and refuses duplicate keys (YAML 1.2 §3.2.1.1 forbids them; PyYAML keeps the last)."""


class Lines(list[Any]):
    """A YAML sequence that knows the line of each of its items."""

    lines: list[int]


LINE, KEYS = "__line__", "__keys__"  # the mapping's own line; {key: line}


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first on line {keys[key]})", key_node.start_mark)
        keys[key] = key_node.start_mark.line + 1
    mapping = dict(loader.construct_mapping(node, deep=True))
    mapping[LINE] = node.start_mark.line + 1
    mapping[KEYS] = keys
    return mapping


def _construct_sequence(loader: LineLoader, node: yaml.SequenceNode) -> Lines:
    seq = Lines(loader.construct_sequence(node, deep=True))
    seq.lines = [item.start_mark.line + 1 for item in node.value]
    return seq


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
                            _construct_sequence)


def strip_lines(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip_lines(v) for k, v in obj.items() if k not in (LINE, KEYS)}
    if isinstance(obj, list):
        return [strip_lines(v) for v in obj]
    return obj


def line_of(raw: Any, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest key or item on the path ``loc`` (of a pydantic error)."""
    line: int | None = raw.get(LINE) if isinstance(raw, dict) else None
    node = raw
    for part in loc:
        if isinstance(node, dict):
            line = node.get(KEYS, {}).get(part, line)
        elif isinstance(node, Lines) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lines[part]
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line
