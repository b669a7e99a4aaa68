"""numba for the rule engine's sequential loops, with a cache that always has a home.

``compiled(signature)`` is ``numba.njit(signature, cache=True, nogil=True)``: an explicit
signature compiles once, at import, and an argument of another layout is an error rather
than a second compilation in the middle of traffic. numba keeps its cache in the
package's ``__pycache__``, else in the user's cache directory; a service with a read-only
install and no home (``ProtectSystem=strict``, ``ProtectHome=yes``) has neither, and numba
then refuses to decorate at all. So, unless ``NUMBA_CACHE_DIR`` says where, the cache goes
to the first writable of the package directory, ``$XDG_CACHE_HOME/anju/numba`` (or
``~/.cache/anju/numba``) and ``$TMPDIR/anju-numba-<uid>``; with none writable the loops are
compiled without a cache (~1 s more at start).

numba judges a cached function stale by its own file only, not by the compiled functions
it calls from other files (``kind_pass`` calls those of ``program.py``, ``state.py``, …):
after editing this package, drop the cache (``make compiled`` does, then rebuilds it) or
a test may run the old code. An install or upgrade writes every file anew, so it does not
meet this.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
import numpy as np

__all__ = ["arg", "compiled"]

F = TypeVar("F", bound=Callable[..., Any])


def _writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(d, os.W_OK | os.X_OK)


def _cache_home() -> bool:
    """Points numba's cache at a writable directory if its own choices have none; False
    when there is none at all."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return True
    here = Path(__file__).resolve().parent
    if _writable(here / "__pycache__"):
        return True  # numba's default place
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for d in (Path(xdg) / "anju" / "numba", Path(tempfile.gettempdir()) / f"anju-numba-{uid}"):
        if _writable(d):
            numba.config.CACHE_DIR = str(d)  # type: ignore[attr-defined]
            return True
    return False


_CACHE = _cache_home()


def compiled(signature: str, *, ieee: bool = False) -> Callable[[F], F]:
    """Compiles a loop for ``signature`` at import, cached on disk when possible.

    ``ieee``: ``x / 0`` is ±inf or NaN, as numpy gives it, instead of numba's default
    ZeroDivisionError (the expression interpreter's arithmetic).
    """
    def wrap(fn: F) -> F:
        return cast(F, numba.njit(signature, cache=_CACHE, nogil=True,
                                  error_model="numpy" if ieee else "python")(fn))
    return wrap


def arg(a: Any, dtype: Any) -> np.ndarray:
    """``a`` in the layout the signatures name: C-contiguous and writeable, of ``dtype``
    (a broadcast or a frombuffer column is read-only, a numba type of its own); no copy
    when it already is. (``np.require`` says the same in ~7 µs a call, with several calls
    a kind a batch; the flags check is ~0.3 µs.)"""
    if isinstance(a, np.ndarray) and a.dtype == dtype:
        f = a.flags
        if f.c_contiguous and f.writeable:
            return a
    return np.array(a, dtype, order="C", copy=True)
