"""The registry's files as text: UTF-8, or a :class:`RegistryError` naming the line of
the first byte that is not."""

from __future__ import annotations

from pathlib import Path

from anju.errors import RegistryError

__all__ = ["read_text"]


def read_text(path: Path) -> str:
    """A file's UTF-8 text; a decoding error names the line of the bad byte."""
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(name, None, None, "file not found") from None
    except OSError as exc:
        raise RegistryError(name, None, None, f"unreadable: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RegistryError(name, line, None,
                            f"not UTF-8 (byte {data[exc.start]:#04x}: {exc.reason})") from None
