"""Documents that must stay true: the contract's copy, the README's links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "CONTRACT.md"


@pytest.mark.skipif(not SHARED.exists(), reason="no workspace copy of CONTRACT.md beside")
def test_docs_contract_is_the_contract() -> None:
    copy = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    body = copy.split("-->\n\n", 1)[1]
    assert body == SHARED.read_text(encoding="utf-8")


def test_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in re.findall(r"`((?:docs|anju|grafana|tests)/[^`*\s]+)`", readme):
        if "{" not in path and "#" not in path:  # topics look like paths
            assert (ROOT / path.rstrip("/")).exists(), path
    assert "make demo" in readme and "make test" in readme
