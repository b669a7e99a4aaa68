"""Replacing a small state file whole: a crash or a power loss leaves the old file or the
new one, never a part (the pipeline's ``last_readings.npz`` and ``report_monthly.json``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path`` (a name of its own, so two
    writers never share one), syncs it and renames it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
