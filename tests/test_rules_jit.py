"""Where the compiled loops keep their cache: numba refuses to decorate a cached function
with nowhere to write, so a read-only install without a home (the systemd unit's
ProtectSystem=strict and ProtectHome=yes) must still start."""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np
import pytest

from anju.rules import jit


def test_a_read_only_package_caches_under_the_users_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    real = jit._writable
    monkeypatch.setattr(jit, "_writable",
                        lambda d: "__pycache__" not in d.parts and real(d))
    assert jit._cache_home()
    assert numba.config.CACHE_DIR == str(tmp_path / "xdg" / "anju" / "numba")


def test_nowhere_to_write_compiles_without_a_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(jit, "_writable", lambda d: False)
    assert not jit._cache_home()
    monkeypatch.setattr(jit, "_CACHE", False)

    @jit.compiled("i8(i8[::1])")
    def total(a: np.ndarray) -> int:  # pragma: no cover  (compiled)
        s = 0
        for x in a:
            s += x
        return s

    assert total(np.arange(5, dtype=np.int64)) == 10
    with pytest.raises(TypeError):  # another layout is refused, never compiled again
        total(np.arange(5.0))


def test_an_operator_given_directory_is_left_to_numba(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(jit, "_writable", lambda d: False)
    assert jit._cache_home()
